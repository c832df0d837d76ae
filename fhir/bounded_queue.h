// A first-in, first-out queue between threads, bounded by a capacity counted in an item's cost
// (1 per item, or what a cost function says: bytes, for pages of a search). The one queue of the
// gateway's pipelines: the reader's parse tasks, sync's pages on their way to the store, and the
// access audit's rows on their way to it.
//
// Contract
// - Push(item) waits while the queue is full and returns false, dropping the item, once Close()
//   was called. An item costlier than the whole capacity is admitted into an empty queue, so a
//   producer never waits forever.
// - TryPush(item) never waits: false (the item untouched) when the queue is full or closed; the
//   caller decides what a dropped item means.
// - Pop() waits for an item; nullopt once the queue is closed and empty (consumers drain what was
//   queued before Close()). TryPop() never waits.
// - PopBatch(n) waits for an item and takes up to n, oldest first; empty once closed and empty.
// - PopWhenReady(min_cost, max_delay) waits until at least `min_cost` is queued, the oldest item
//   has waited `max_delay`, or the queue is closed, then takes everything queued, oldest first;
//   empty once closed and empty. (Batches for a store: large ones, but never held long.)
// - Close() wakes every waiter and is idempotent. Thread-safe; neither copyable nor movable.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

namespace ccm {

template <class T>
class BoundedQueue {
 public:
  using Clock = std::chrono::steady_clock;
  using CostFn = std::function<std::size_t(const T&)>;

  explicit BoundedQueue(std::size_t capacity, CostFn cost = nullptr)
      : capacity_(capacity), cost_fn_(std::move(cost)) {}
  BoundedQueue(const BoundedQueue&) = delete;
  BoundedQueue& operator=(const BoundedQueue&) = delete;

  bool Push(T item) {
    const std::size_t cost = CostOf(item);
    {
      std::unique_lock lock(m_);
      space_.wait(lock, [&] { return closed_ || Fits(cost); });
      if (closed_) return false;
      Add(std::move(item), cost);
    }
    ready_.notify_one();
    return true;
  }

  bool TryPush(T& item) {
    const std::size_t cost = CostOf(item);
    {
      std::lock_guard lock(m_);
      if (closed_ || !Fits(cost)) return false;
      Add(std::move(item), cost);
    }
    ready_.notify_one();
    return true;
  }

  std::optional<T> Pop() {
    std::unique_lock lock(m_);
    ready_.wait(lock, [&] { return closed_ || !items_.empty(); });
    return TakeOne(lock);
  }

  std::optional<T> TryPop() {
    std::unique_lock lock(m_);
    return TakeOne(lock);
  }

  std::vector<T> PopBatch(std::size_t max_items) {
    std::unique_lock lock(m_);
    ready_.wait(lock, [&] { return closed_ || !items_.empty(); });
    return Take(lock, max_items);
  }

  std::vector<T> PopWhenReady(std::size_t min_cost, Clock::duration max_delay) {
    std::unique_lock lock(m_);
    for (;;) {
      if (items_.empty()) {
        if (closed_) return {};
        ready_.wait(lock);
        continue;
      }
      const Clock::time_point due = items_.front().queued + max_delay;
      if (closed_ || queued_cost_ >= min_cost || Clock::now() >= due) break;
      ready_.wait_until(lock, due);
    }
    return Take(lock, items_.size());
  }

  void Close() {
    {
      std::lock_guard lock(m_);
      closed_ = true;
    }
    ready_.notify_all();
    space_.notify_all();
  }

  std::size_t size() const {
    std::lock_guard lock(m_);
    return items_.size();
  }

 private:
  struct Entry {
    T item;
    std::size_t cost;
    Clock::time_point queued;
  };

  std::size_t CostOf(const T& item) const { return cost_fn_ ? cost_fn_(item) : 1; }
  bool Fits(std::size_t cost) const { return items_.empty() || queued_cost_ + cost <= capacity_; }
  void Add(T&& item, std::size_t cost) {
    items_.push_back(Entry{std::move(item), cost, Clock::now()});
    queued_cost_ += cost;
  }

  std::optional<T> TakeOne(std::unique_lock<std::mutex>& lock) {
    if (items_.empty()) return std::nullopt;
    std::optional<T> out(std::move(items_.front().item));
    queued_cost_ -= items_.front().cost;
    items_.pop_front();
    lock.unlock();
    space_.notify_all();
    return out;
  }

  std::vector<T> Take(std::unique_lock<std::mutex>& lock, std::size_t max_items) {
    std::vector<T> out;
    const std::size_t n = std::min(max_items, items_.size());
    out.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      out.push_back(std::move(items_.front().item));
      queued_cost_ -= items_.front().cost;
      items_.pop_front();
    }
    lock.unlock();
    if (n > 0) space_.notify_all();
    return out;
  }

  const std::size_t capacity_;
  const CostFn cost_fn_;
  mutable std::mutex m_;
  std::condition_variable ready_;  // an item was queued, or closed
  std::condition_variable space_;  // an item was taken, or closed
  std::deque<Entry> items_;
  std::size_t queued_cost_ = 0;
  bool closed_ = false;
};

}  // namespace ccm
