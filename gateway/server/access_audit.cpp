#include "gateway/server/access_audit.h"

#include <string>
#include <vector>

namespace ccm::gateway::server {
namespace {
// Rows per transaction: large enough that a burst costs a few commits, small enough that one
// batch never holds the store's write lock long against a sync.
constexpr std::size_t kBatch = 512;
}  // namespace

AccessAudit::AccessAudit(OpenStore open, Options options)
    : open_(std::move(open)),
      options_(std::move(options)),
      queue_(options_.max_queued),
      writer_([this] { Run(); }) {}

AccessAudit::~AccessAudit() {
  {
    std::lock_guard lock(m_);
    stop_ = true;
  }
  retry_.notify_all();
  queue_.Close();  // the writer stores what is queued (one last try), then stops
  writer_.join();
}

void AccessAudit::Record(AccessRow row) {
  std::lock_guard lock(m_);
  ++recorded_;
  // Under m_, so that Flush never sees a row counted but not yet queued or dropped.
  if (!queue_.TryPush(row)) {
    ++counts_.dropped;
    ++finished_;
    done_.notify_all();
  }
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
  // A batch that fails is kept here and tried again before anything queued after it: in order.
  std::vector<AccessRow> batch;
  for (;;) {
    if (batch.empty()) {
      batch = queue_.PopBatch(kBatch);
      if (batch.empty()) return;  // stopping, and everything is stored
    }
    const bool last_try = [&] {
      std::lock_guard lock(m_);
      return stop_;
    }();
    const std::size_t n = batch.size();
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
    std::unique_lock lock(m_);
    if (stored || last_try) {
      finished_ += n;
      (stored ? counts_.written : counts_.dropped) += n;
      done_.notify_all();
      batch.clear();
      continue;
    }
    ++counts_.failed_batches;
    store_.reset();  // a fresh connection for the next try (the file may have moved back)
    retry_.wait_for(lock, options_.retry, [&] { return stop_; });
  }
}

}  // namespace ccm::gateway::server
