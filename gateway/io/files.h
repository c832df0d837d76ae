// Writing output files safely (reports, claim files).
#pragma once

#include <filesystem>
#include <string_view>
#include <utility>

#include "fhir/result.h"

namespace ccm::gateway {

// Writes `text` to `path` through a temporary file (`<path>.tmp<pid>`, synced) renamed into place,
// so that a failed run never leaves a partial file where a previous good one was (the temporary
// file is removed). Devices and pipes are written directly. Errors (Errc::kIo) name the path and
// the OS reason ("out.ndjson: write failed (nothing was replaced): No space left on device").
Status WriteFileAtomically(const std::filesystem::path& path, std::string_view text);

// An exclusive advisory lock (flock) on a file, held for the object's lifetime and released by the
// kernel if the process dies, so a crashed holder never leaves it stuck.
class FileLock {
 public:
  // Locks `path` (created when missing) without waiting: Errc::kConflict when another process
  // holds it, Errc::kIo when the file cannot be opened.
  static Result<FileLock> TryLock(const std::filesystem::path& path);
  FileLock(FileLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  FileLock& operator=(FileLock&& other) noexcept;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  ~FileLock();

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace ccm::gateway
