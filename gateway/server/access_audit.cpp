#include "gateway/server/access_audit.h"

#include <iterator>
#include <string>
#include <vector>

namespace ccm::gateway::server {
namespace {
// Rows per transaction: large enough that a burst costs a few commits, small enough that one
// batch never holds the store's write lock long against a sync.
constexpr std::size_t kBatch = 512;
}  // namespace

AccessAudit::AccessAudit(OpenStore open, Options options)
    : open_(std::move(open)), options_(std::move(options)), writer_([this] { Run(); }) {}

AccessAudit::~AccessAudit() {
  {
    std::lock_guard lock(m_);
    stop_ = true;
  }
  wake_.notify_all();
  writer_.join();
}

void AccessAudit::Record(AccessRow row) {
  {
    std::lock_guard lock(m_);
    ++recorded_;
    if (queue_.size() >= options_.max_queued) {
      ++counts_.dropped;
      ++finished_;
      done_.notify_all();
      return;
    }
    queue_.push_back(std::move(row));
  }
  wake_.notify_one();
}

bool AccessAudit::Flush(std::chrono::milliseconds bound) {
  std::unique_lock lock(m_);
  const std::uint64_t target = recorded_;
  return done_.wait_for(lock, bound, [&] { return finished_ >= target; });
}

AccessAudit::Counts AccessAudit::counts() const {
  std::lock_guard lock(m_);
  return counts_;
}

void AccessAudit::Run() {
  std::unique_lock lock(m_);
  for (;;) {
    wake_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and everything is stored
    const bool last_try = stop_;
    const std::size_t n = std::min(queue_.size(), kBatch);
    // Copied, not taken: a batch that fails stays first in the queue, in order.
    std::vector<AccessRow> batch(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
    lock.unlock();
    Status stored = [&]() -> Status {
      if (!store_) {
        CCM_TRY_ASSIGN(store_, open_());
      }
      return store_->AddAccessRecords(batch);
    }();
    if (!stored && options_.on_error) {
      options_.on_error(last_try ? "the access audit could not be stored; " + std::to_string(n) +
                                       " record(s) lost at shutdown: " + stored.error().message
                                 : "the access audit could not be stored (will retry): " +
                                       stored.error().message);
    }
    lock.lock();
    if (stored || last_try) {
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
      finished_ += n;
      (stored ? counts_.written : counts_.dropped) += n;
      done_.notify_all();
      continue;
    }
    ++counts_.failed_batches;
    store_.reset();  // a fresh connection for the next try (the file may have moved back)
    wake_.wait_for(lock, options_.retry, [&] { return stop_; });
  }
}

}  // namespace ccm::gateway::server
