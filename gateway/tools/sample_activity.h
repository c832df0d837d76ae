// Deterministic generator of synthetic care-management activity for sample patients.
//
// Synthea produces patients, conditions and encounters but no chronic-care-management activity: no
// time-tracked care-coordination encounters, no CCM consents, no CCM care plans. This generator
// adds them for the living patients found in the inputs, one scenario per patient chosen
// round-robin in patient-id order, so a demo practice exercises every billing path (thresholds met
// and missed, practitioner time, complex CCM, overlapping calls, missing or revoked consent, draft
// care plan).
//
// Determinism: the output depends only on the set of patient ids, `month`, `seed` and `time_zone`
// (no clock, no std::random_device); the same inputs give byte-identical files. Documented in
// samples/activity/README.md.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "fhir/issues.h"
#include "fhir/result.h"

namespace ccm::gateway {

struct ActivityOptions {
  std::vector<std::filesystem::path> inputs;  // files or directories holding Patient resources
  int year = 2026;
  unsigned month = 10;
  std::uint64_t seed = 1;
  // Offset used for the generated timestamps (the sample practice is in Kansas: America/Chicago).
  std::string utc_offset = "-05:00";
  std::filesystem::path out_dir;
};

struct ActivitySummary {
  std::size_t patients = 0;  // living patients that got a scenario
  std::size_t encounters = 0;
  std::size_t consents = 0;
  std::size_t care_plans = 0;
  std::vector<std::string> files;  // written, in order
};

// Writes Encounter.ccm.ndjson, Consent.ccm.ndjson, CarePlan.ccm.ndjson and Practitioner.ccm.ndjson
// to options.out_dir (created if needed; files are written to a temporary name and renamed, so a
// failed run leaves no partial file).
Result<ActivitySummary> GenerateActivity(const ActivityOptions& options, fhir::IssueList& issues);

}  // namespace ccm::gateway
