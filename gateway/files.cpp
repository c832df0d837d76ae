#include "gateway/files.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fstream>

namespace ccm::gateway {

Status WriteFileAtomically(const std::filesystem::path& path, std::string_view text) {
  std::error_code st_ec;
  auto st = std::filesystem::status(path, st_ec);
  if (!st_ec && std::filesystem::exists(st) && !std::filesystem::is_regular_file(st)) {
    // A device or pipe (/dev/null, /dev/stdout, a FIFO): write to it; never rename over it.
    std::ofstream out(path, std::ios::binary);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.flush();
    if (!out) return MakeError(Errc::kIo, fmt::format("{}: write failed", path.string()));
    return {};
  }
  std::filesystem::path tmp = path;
  tmp += fmt::format(".tmp{}", ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return MakeError(Errc::kIo, fmt::format("{}: cannot create", tmp.string()));
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.flush();
    if (!out) {
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
      return MakeError(Errc::kIo, fmt::format("{}: write failed", tmp.string()));
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    return MakeError(Errc::kIo, fmt::format("{}: cannot write: {}", path.string(), ec.message()));
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
