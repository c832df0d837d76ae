// The advisory locks that order the processes sharing one state file (docs/architecture.md
// "Completeness").
//
// Contract
// - A sync cycle holds the sync lock (<state>.sync-lock) from before its first pull until its
//   cursors and pull status are written: two syncs on one state file (say a scheduled incremental
//   and a manual --full) never interleave, so a full pull's removal of unseen rows cannot drop
//   what a concurrent pull just stored.
// - `bill` holds the sync lock too, without waiting: it refuses to start while a sync runs (it
//   would bill from half-pulled data), and a sync waits while a bill runs.
// - The locks are flock(2) locks: released by the kernel when the holder dies, so a crashed
//   process never leaves one stuck. The holder's pid is written into the file for messages.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>

#include "fhir/result.h"
#include "gateway/io/files.h"

namespace ccm::gateway {

std::filesystem::path SyncLockPath(const std::filesystem::path& state);

// Takes the sync lock, waiting up to `wait` for another holder to finish. Errc::kConflict (the
// message names the holder's pid when known) when it is still held after `wait`; Errc::kIo when
// the lock file cannot be opened.
Result<FileLock> LockSync(const std::filesystem::path& state, std::chrono::milliseconds wait);

// The pid written by the process holding the sync lock, if the file names one.
std::optional<long> SyncLockHolder(const std::filesystem::path& state);

}  // namespace ccm::gateway
