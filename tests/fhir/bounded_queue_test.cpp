// The one queue of the pipelines (reader, sync's page writer, the access audit): order, bounds,
// closing, batches by cost and age, and many threads at once (also run under ThreadSanitizer).
#include "fhir/bounded_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

namespace ccm {
namespace {

using namespace std::chrono_literals;

TEST(BoundedQueueTest, FirstInFirstOutAndDrainedAfterClose) {
  BoundedQueue<std::string> q(10);
  EXPECT_TRUE(q.Push("a"));
  EXPECT_TRUE(q.Push("b"));
  EXPECT_TRUE(q.Push("c"));
  EXPECT_EQ(q.Pop(), "a");
  q.Close();
  EXPECT_FALSE(q.Push("d")) << "closed: refused";
  std::string e = "e";
  EXPECT_FALSE(q.TryPush(e));
  EXPECT_EQ(e, "e") << "a refused TryPush leaves the item to the caller";
  EXPECT_EQ(q.Pop(), "b") << "what was queued before Close is still handed out";
  EXPECT_EQ(q.TryPop(), "c");
  EXPECT_EQ(q.Pop(), std::nullopt);
  EXPECT_EQ(q.PopBatch(5), std::vector<std::string>{});
}

TEST(BoundedQueueTest, AFullQueueRefusesTryPushAndHoldsPushUntilThereIsRoom) {
  BoundedQueue<int> q(2);
  EXPECT_TRUE(q.Push(1));
  EXPECT_TRUE(q.Push(2));
  int three = 3;
  EXPECT_FALSE(q.TryPush(three));
  std::atomic<bool> pushed{false};
  std::thread producer([&] {
    EXPECT_TRUE(q.Push(3));
    pushed = true;
  });
  EXPECT_EQ(q.Pop(), 1);  // makes room: the producer can finish
  producer.join();
  EXPECT_TRUE(pushed);
  EXPECT_EQ(q.size(), 2u);
  // A producer held by a full queue is released, refused, by Close.
  std::thread refused([&] { EXPECT_FALSE(q.Push(4)); });
  q.Close();
  refused.join();
  EXPECT_EQ(q.PopBatch(10), (std::vector<int>{2, 3}));
}

TEST(BoundedQueueTest, CapacityIsCountedInCostAndAnOversizedItemStillPasses) {
  BoundedQueue<std::string> q(10, [](const std::string& s) { return s.size(); });
  std::string big(25, 'x');
  EXPECT_TRUE(q.TryPush(big)) << "larger than the capacity, but the queue is empty";
  std::string small = "abc";
  EXPECT_FALSE(q.TryPush(small)) << "25 of 10 queued";
  EXPECT_EQ(q.Pop()->size(), 25u);
  EXPECT_TRUE(q.TryPush(small));
  std::string seven(7, 'y');
  EXPECT_TRUE(q.TryPush(seven)) << "3 + 7 = 10 fits";
  std::string one = "z";
  EXPECT_FALSE(q.TryPush(one)) << "11 does not";
}

TEST(BoundedQueueTest, PopWhenReadyWaitsForEnoughCostOrTheOldestItemsAge) {
  BoundedQueue<std::string> q(1000, [](const std::string& s) { return s.size(); });
  // Enough queued: returns at once, however long the delay allowed.
  std::thread producer([&] {
    for (int i = 0; i < 4; ++i) q.Push(std::string(30, 'a'));
  });
  std::vector<std::string> got;
  while (got.size() < 4) {
    std::vector<std::string> batch = q.PopWhenReady(100, std::chrono::hours(1));
    got.insert(got.end(), batch.begin(), batch.end());
  }
  producer.join();
  EXPECT_EQ(got.size(), 4u);
  // Not enough: returns once the oldest item has waited the delay, with everything queued.
  const auto start = std::chrono::steady_clock::now();
  q.Push("x");
  q.Push("y");
  std::vector<std::string> late = q.PopWhenReady(100, 30ms);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 30ms);
  EXPECT_EQ(late, (std::vector<std::string>{"x", "y"}));
  // Closed: returns what is queued without waiting, then nothing.
  q.Push("z");
  q.Close();
  EXPECT_EQ(q.PopWhenReady(100, std::chrono::hours(1)), std::vector<std::string>{"z"});
  EXPECT_TRUE(q.PopWhenReady(100, std::chrono::hours(1)).empty());
}

TEST(BoundedQueueTest, ManyProducersAndConsumersLoseAndDuplicateNothing) {
  constexpr int kProducers = 4, kPerProducer = 5000, kConsumers = 3;
  BoundedQueue<std::uint64_t> q(8);
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&q, p] {
      for (int i = 0; i < kPerProducer; ++i) {
        EXPECT_TRUE(q.Push(static_cast<std::uint64_t>(p) * kPerProducer + i));
      }
    });
  }
  std::vector<std::vector<std::uint64_t>> seen(kConsumers);
  std::vector<std::thread> consumers;
  for (int c = 0; c < kConsumers; ++c) {
    consumers.emplace_back([&q, &seen, c] {
      // Alternate single pops and batches: both take from the same bound.
      for (bool batch = false;; batch = !batch) {
        if (batch) {
          std::vector<std::uint64_t> b = q.PopBatch(3);
          if (b.empty()) return;
          seen[c].insert(seen[c].end(), b.begin(), b.end());
        } else {
          std::optional<std::uint64_t> v = q.Pop();
          if (!v) return;
          seen[c].push_back(*v);
        }
      }
    });
  }
  for (std::thread& t : producers) t.join();
  q.Close();
  for (std::thread& t : consumers) t.join();
  std::vector<int> count(kProducers * kPerProducer, 0);
  for (const auto& s : seen) {
    // One consumer sees each producer's items in the order they were pushed.
    std::vector<std::int64_t> last(kProducers, -1);
    for (std::uint64_t v : s) {
      ++count[v];
      const std::size_t p = v / kPerProducer;
      EXPECT_LT(last[p], static_cast<std::int64_t>(v));
      last[p] = static_cast<std::int64_t>(v);
    }
  }
  for (std::size_t v = 0; v < count.size(); ++v) ASSERT_EQ(count[v], 1) << v;
}

}  // namespace
}  // namespace ccm
