// The audit trail of `serve`: every request to a route that answers with patient data is recorded
// in the state store (StateStore::AddAccessRecords, table access_audit) -- who, what, when, and
// the status answered (HIPAA 45 CFR 164.312(b), audit controls). Readable with `ccm-gateway
// audit`.
//
// Contract
// - Record() never blocks on the store: it queues the row (it is called on an I/O thread, after
//   the response was written). One writer thread of its own stores the queue in batches, each
//   batch one transaction on its own state-store connection, so that a burst of requests costs one
//   commit and a sync holding the write lock delays the trail, never a response.
// - A batch that cannot be stored is kept and tried again (after `retry`), and reported through
//   `on_error` (the store's message: no patient data). At most `max_queued` rows wait beside the
//   batch being stored (itself at most 512 rows): beyond that new rows are dropped and counted
//   (the process is not allowed to grow without bound when the store is gone).
// - Flush(bound) waits until every row recorded before the call is stored or dropped. The
//   destructor flushes what is queued (one last try), then stops the writer.
// - Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>

#include "fhir/bounded_queue.h"
#include "fhir/result.h"
#include "gateway/store/state_store.h"

namespace ccm::gateway::server {

class AccessAudit {
 public:
  using OpenStore = std::function<Result<std::unique_ptr<StateStore>>()>;
  struct Options {
    std::size_t max_queued = 100'000;
    std::chrono::milliseconds retry{1'000};
    std::function<void(std::string_view message)> on_error;  // optional
  };
  struct Counts {
    std::uint64_t written = 0, dropped = 0, failed_batches = 0;
  };

  AccessAudit(OpenStore open, Options options);
  ~AccessAudit();
  AccessAudit(const AccessAudit&) = delete;
  AccessAudit& operator=(const AccessAudit&) = delete;

  void Record(AccessRow row);
  // True when everything recorded before the call was stored (or dropped) within `bound`.
  bool Flush(std::chrono::milliseconds bound);
  Counts counts() const;

 private:
  void Run();

  OpenStore open_;
  Options options_;
  mutable std::mutex m_;           // guards what follows, up to the queue
  std::condition_variable done_;   // `finished_` moved
  std::condition_variable retry_;  // stop_ was set (ends the wait before a retry)
  std::uint64_t recorded_ = 0;     // rows ever passed to Record (dropped ones included)
  std::uint64_t finished_ = 0;     // rows stored or dropped
  Counts counts_;
  bool stop_ = false;
  BoundedQueue<AccessRow> queue_;      // at most options_.max_queued rows wait
  std::unique_ptr<StateStore> store_;  // the writer thread's only
  std::thread writer_;                 // last: started once the rest exists
};

}  // namespace ccm::gateway::server
