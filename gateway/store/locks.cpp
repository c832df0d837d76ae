#include "gateway/store/locks.h"

#include <fmt/format.h>
#include <unistd.h>

#include <fstream>
#include <thread>

namespace ccm::gateway {

std::filesystem::path SyncLockPath(const std::filesystem::path& state) {
  std::filesystem::path p = state;
  p += ".sync-lock";
  return p;
}

std::optional<long> SyncLockHolder(const std::filesystem::path& state) {
  std::ifstream in(SyncLockPath(state));
  long pid = 0;
  if (in >> pid && pid > 0) return pid;
  return std::nullopt;
}

Result<FileLock> LockSync(const std::filesystem::path& state, std::chrono::milliseconds wait) {
  std::filesystem::path path = SyncLockPath(state);
  auto deadline = std::chrono::steady_clock::now() + wait;
  // flock has no timed wait; polling every 50 ms costs nothing next to a sync cycle.
  for (;;) {
    Result<FileLock> lock = FileLock::TryLock(path);
    if (lock) {
      // The holder's pid, for the other process's message (best effort: the lock is the flock).
      std::ofstream out(path, std::ios::trunc);
      out << ::getpid() << '\n';
      return lock;
    }
    if (!lock.error().is(Errc::kConflict)) return lock.error();
    if (std::chrono::steady_clock::now() >= deadline) {
      auto holder = SyncLockHolder(state);
      return MakeError(Errc::kConflict,
                       fmt::format("another ccm-gateway process{} is syncing or billing on {} "
                                   "(lock {})",
                                   holder ? fmt::format(" (pid {})", *holder) : "", state.string(),
                                   path.string()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace ccm::gateway
