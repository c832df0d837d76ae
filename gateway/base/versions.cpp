#include "gateway/base/versions.h"

#include <charconv>
#include <cstdint>

namespace ccm::gateway {
namespace {

// versionId as a number when it is all digits (as HAPI, Medplum and most EHRs issue them).
std::optional<std::uint64_t> NumericVersion(std::string_view v) {
  std::uint64_t n = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || end != v.data() + v.size()) return std::nullopt;
  return n;
}

}  // namespace

bool IsNewer(const VersionStamp& candidate, const VersionStamp& existing) {
  const std::string& cv = candidate.version_id;
  const std::string& ev = existing.version_id;
  if (!cv.empty() && !ev.empty()) {
    auto cn = NumericVersion(cv);
    auto en = NumericVersion(ev);
    if (cn && en && *cn != *en) return *cn > *en;
    // Equal or opaque ids: lastUpdated decides (the same version seen twice with different
    // instants keeps the later one, whatever the input order).
  }
  if (candidate.last_updated && existing.last_updated &&
      *candidate.last_updated != *existing.last_updated) {
    return *candidate.last_updated > *existing.last_updated;
  }
  return true;  // no way to tell: the last seen wins
}

}  // namespace ccm::gateway
