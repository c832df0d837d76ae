#include "gateway/files.h"

#include <fmt/format.h>
#include <unistd.h>

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

}  // namespace ccm::gateway
