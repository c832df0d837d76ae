// Which of two copies of one resource is the newer (R4 §3.1.0.5: versionId is opaque but servers
// issue it increasing; lastUpdated is an instant). Shared by the ingest store and the CCM facts.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "fhir/datatypes.h"
#include "fhir/datetime.h"
#include "fhir/json.h"

namespace ccm::gateway {

struct VersionStamp {
  std::string version_id;
  std::optional<fhir::TimePoint> last_updated;
};

// True when `candidate` should replace `existing`: a greater numeric versionId, else (equal or
// opaque ids) a later lastUpdated, else -- no way to tell -- the one seen last.
bool IsNewer(const VersionStamp& candidate, const VersionStamp& existing);

// From the texts of meta.versionId and meta.lastUpdated (an unreadable lastUpdated is ignored).
inline VersionStamp StampOf(std::string_view version_id, std::string_view last_updated) {
  VersionStamp s;
  s.version_id = std::string(version_id);
  // Most exported resources have no lastUpdated: skip the parse, whose error path formats a
  // message.
  if (!last_updated.empty()) {
    if (auto t = fhir::FhirDateTime::ParseInstant(last_updated)) s.last_updated = t->Earliest();
  }
  return s;
}

// From a resource's JSON. Generic over the JSON value type: anything with operator[](key) and
// str(), such as fhir::json::Value.
template <class V>
VersionStamp StampOfJson(const V& resource) {
  return StampOf(resource["meta"]["versionId"].str(), resource["meta"]["lastUpdated"].str());
}

}  // namespace ccm::gateway
