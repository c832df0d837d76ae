// Which of two copies of one resource is the newer (R4 §3.1.0.5: versionId is opaque but servers
// issue it increasing; lastUpdated is an instant). Shared by the ingest store and the CCM facts.
#pragma once

#include <optional>
#include <string>

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

// From a resource's JSON (meta.versionId, meta.lastUpdated; an unreadable lastUpdated is
// ignored). Generic over the JSON value type: anything with operator[](key) and str(), such as
// fhir::json::Value or a view of a RapidJSON value.
template <class V>
VersionStamp StampOfJson(const V& resource) {
  VersionStamp s;
  s.version_id = std::string(resource["meta"]["versionId"].str());
  // Most exported resources have no lastUpdated: skip the parse, whose error path formats a
  // message.
  if (std::string_view lu = resource["meta"]["lastUpdated"].str(); !lu.empty()) {
    if (auto t = fhir::FhirDateTime::ParseInstant(lu)) s.last_updated = t->Earliest();
  }
  return s;
}

}  // namespace ccm::gateway
