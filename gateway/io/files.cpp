#include "gateway/io/files.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ccm::gateway {

namespace {

// Writes all of `text` to `fd`; errno of the failure otherwise.
int WriteAll(int fd, std::string_view text) {
  while (!text.empty()) {
    ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    text.remove_prefix(static_cast<std::size_t>(n));
  }
  return 0;
}

Error WriteError(const std::filesystem::path& path, std::string_view what, int err) {
  return MakeError(Errc::kIo, fmt::format("{}: {}: {}", path.string(), what, std::strerror(err)));
}

}  // namespace

Status WriteFileAtomically(const std::filesystem::path& path, std::string_view text) {
  std::error_code st_ec;
  auto st = std::filesystem::status(path, st_ec);
  if (!st_ec && std::filesystem::exists(st) && !std::filesystem::is_regular_file(st)) {
    // A device or pipe (/dev/null, /dev/stdout, a FIFO): write to it; never rename over it.
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return WriteError(path, "cannot open", errno);
    int err = WriteAll(fd, text);
    if (::close(fd) != 0 && err == 0 && errno != EINTR) err = errno;
    if (err != 0) return WriteError(path, "write failed", err);
    return {};
  }
  std::filesystem::path tmp = path;
  tmp += fmt::format(".tmp{}", ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) return WriteError(path, "cannot create it", errno);
  // fsync before the rename: otherwise a crash soon after can leave the new name on an empty
  // file (delayed allocation), which is worse than the old report. close() reports what a
  // network file system could not write.
  int err = WriteAll(fd, text);
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && err == 0 && errno != EINTR) err = errno;
  if (err == 0 && ::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    ::unlink(tmp.c_str());
    return WriteError(path, "write failed (nothing was replaced)", err);
  }
  // The rename itself is durable once the directory is synced; some file systems cannot sync a
  // directory (EINVAL), and the file is complete either way, so this is best effort.
  std::filesystem::path dir = path.parent_path().empty() ? "." : path.parent_path();
  if (int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return {};
}

Result<FileLock> FileLock::TryLock(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return MakeError(Errc::kIo, fmt::format("{}: cannot open the lock file: {}", path.string(),
                                            std::strerror(errno)));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return MakeError(Errc::kConflict,
                       fmt::format("{} is locked by another process", path.string()));
    }
    return MakeError(Errc::kIo,
                     fmt::format("{}: cannot lock: {}", path.string(), std::strerror(err)));
  }
  return FileLock(fd);
}

FileLock& FileLock::operator=(FileLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the descriptor releases the flock
}

}  // namespace ccm::gateway
