// The care team's worklist: from one month's evaluation (Evaluate's records), what to do for whom,
// and what it is worth, sorted so that the most valuable work comes first (docs/worklist.md).
//
// Contract
// - Pure: a function of the records, the engine configuration (fee schedule, unit limits, zone)
//   and `as_of`, the instant the list is made for; no clock, no I/O. Same input, same output.
// - The code thresholds are rule 8's (CodeFamilies(), ChooseCodes()); nothing here restates them.
// - A patient may have several items (e.g. no care plan and near a threshold); a patient blocked
//   (deceased, merged, inactive record, error-level data problems) has only the `blocked` item.
//   Patients with no program (not chronic-eligible) have none.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fhir/datetime.h"
#include "fhir/json.h"
#include "gateway/ccm/engine.h"
#include "gateway/ccm/engine_config.h"

namespace ccm::gateway {

enum class WorkReason {
  kNearThreshold,
  kEligibleNoConsent,
  kConsentedNoActiveCarePlan,
  kCarePlanIncomplete,
  kCarePlanReviewDue,
  kBlocked,
};
// "near-threshold", "eligible-no-consent", "consented-no-active-care-plan",
// "care-plan-incomplete", "care-plan-review-due", "blocked".
std::string_view ToCode(WorkReason r) noexcept;

// The next code within reach of a consented patient's billable time (reason near-threshold).
struct NextThreshold {
  std::string code;                    // the code the added time would earn (base or add-on)
  std::int64_t seconds_logged = 0;     // billable time in the pool the code draws on, exact
  std::int64_t threshold_seconds = 0;  // where `code` starts, in that pool
  std::int64_t seconds_to_next = 0;    // exact: 19:59 logged toward 20:00 needs 1 second
  std::int64_t minutes_to_next = 0;    // seconds_to_next rounded up to whole minutes (1 for 0:01)
  std::optional<Cents> value;          // what the month's expected payment gains; nullopt: no rate
  // Open month only: minutes_to_next spread over the days left (including today), in hundredths
  // of a minute, rounded up.
  std::optional<std::int64_t> hundredths_per_day;
  bool practitioner_time = false;  // the time must be the billing practitioner's own
};

struct WorkItem {
  std::string patient;  // "Patient/<id>"
  WorkReason reason = WorkReason::kBlocked;
  std::string summary;  // one readable sentence: the state and, for a closed month, what was missed
  std::string action;   // what to do (empty for a closed month's near-threshold item)
  // What doing it is worth this month, the sort key: for near-threshold the next code's value; for
  // eligible-no-consent / consented-no-active-care-plan what the month would bill if it were
  // resolved (at least the base code of the program's first family); 0 for the others.
  Cents value = 0;
  std::optional<NextThreshold> next;  // near-threshold only
  std::vector<std::string> details;   // blocked_by codes, missing care-plan elements, issue codes
  std::vector<std::string> evidence;  // "Encounter/…", "Consent/…", "CarePlan/…", "Condition/…"
};

struct Worklist {
  YearMonth month;
  TimePoint as_of;
  bool open = true;   // as_of is before the month's end (in the practice's zone)
  int days_left = 0;  // whole or part days from as_of to the month's end, today included; 0 closed
  std::vector<WorkItem> items;
};

// Items sorted by `value` descending, then seconds_to_next ascending (items without one last),
// reason (enum order), patient.
// Error: the month's range cannot be computed in the practice's zone.
Result<Worklist> BuildWorklist(const std::vector<PatientMonth>& records, YearMonth month,
                               TimePoint as_of, const EngineConfig& config);

// The near-threshold computation alone (exposed for tests): nullopt when the patient has no
// billable time, no program, no consent in effect, or its family is capped at the last add-on
// (e.g. 99439 at its monthly limit), or no further time raises the month's payment.
std::optional<NextThreshold> NextThresholdOf(const PatientMonth& r, const EngineConfig& config);

// The JSON of GET /$ccm-worklist (docs/api.md): {"month", "asOf" (UTC instant), "open",
// "daysLeft", "currency", "items": [...]}; amounts as decimals in `currency`.
fhir::json::Value ToJson(const Worklist& w, const std::string& currency);

}  // namespace ccm::gateway
