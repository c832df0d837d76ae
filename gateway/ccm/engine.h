// The CCM engine: per patient and calendar month, eligibility, consent, care plan, care-management
// minutes, billable CPT codes and expected payment -- each with the evidence behind it.
//
// The rules are numbered as in docs/ccm-rules.md, which cites the CMS/CPT source of each. The
// engine is a pure function of the facts and the configuration: same input, same output.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fhir/issues.h"
#include "fhir/result.h"
#include "gateway/ccm/engine_config.h"
#include "gateway/ccm/facts.h"

namespace ccm::gateway {

struct YearMonth {
  int year = 0;
  unsigned month = 0;  // 1-12

  // "YYYY-MM" (years 1900-9999); error names the expected form.
  static Result<YearMonth> Parse(std::string_view text);
  std::string ToString() const;
  auto operator<=>(const YearMonth&) const = default;
};

enum class Program { kNone, kCcm, kPcm };
enum class ConsentState { kNone, kActive, kRevoked };
enum class CarePlanState { kMissing, kActive, kDraft };
std::string_view ToCode(Program p) noexcept;  // "CCM", "PCM", "" for none
std::string_view ToCode(ConsentState c) noexcept;
std::string_view ToCode(CarePlanState c) noexcept;

struct CountedCondition {
  std::string category;                 // e.g. "diabetes"
  std::string display;                  // e.g. "Diabetes"
  std::vector<std::string> conditions;  // "Condition/<id>", sorted
};

// One care-management encounter of the month, counted or not, and why.
struct EncounterEvidence {
  std::string reference;  // "Encounter/<id>"
  std::string code;       // the care-management code found on it
  std::optional<TimePoint> start;
  std::int64_t micros = 0;           // its own duration
  std::int64_t counted_micros = 0;   // after removing overlap with the same performer's time
  std::int64_t billable_micros = 0;  // the same among billable encounters only
  bool practitioner = false;         // whose time (rule 7)
  std::string performer;             // "Practitioner/…", "npi:…", or "" when none is given
  bool counted = false;              // in `minutes`
  bool billable = false;             // in `billableMinutes` (after consent start, before death)
  std::string reason;                // why not counted / not billable: "not-finished", "no-start",
                                     // "no-duration", "implausible-duration", "after-death",
                                     // "before-consent"
};

struct BillingLine {
  std::string code;
  int units = 0;
  std::optional<Cents> amount;          // units x rate; nullopt when the code has no rate
  bool practitioner_time = false;       // drawn on the billing practitioner's own time only
  std::vector<std::string> encounters;  // the encounters whose time this line draws on
};

struct Minutes {
  std::int64_t clinical_staff = 0;
  std::int64_t practitioner = 0;
};

struct PatientMonth {
  std::string patient;  // "Patient/<id>"
  YearMonth month;
  bool deceased = false;
  // Merged records (Patient.link, docs/ccm-rules.md "Merged and inactive records"): this record
  // was merged into `replaced_by` ("" when the link names no Patient), or is not in active use;
  // either blocks billing. `merged_from`: records merged into this one (directly or through a
  // chain of replaced-by links), sorted; the ledger holds a month already billed under one.
  bool merged = false;
  std::string replaced_by;
  bool inactive = false;
  std::vector<std::string> merged_from;
  Program program = Program::kNone;
  std::vector<CountedCondition> chronic_conditions;
  ConsentState consent = ConsentState::kNone;
  std::optional<TimePoint> consent_from;  // earliest start of a consent in effect in the month
  CarePlanState care_plan = CarePlanState::kMissing;
  Minutes minutes;           // all qualifying time of the month (rule 6)
  Minutes billable_minutes;  // the part on or after consent start
  std::vector<BillingLine> billing;
  // Complex decision making documented on a billable encounter (rule 8: 99487/99489 allowed).
  bool complex_documented = false;
  std::vector<std::string> blocked_by;
  Cents expected_payment = 0;
  std::vector<std::string> notes;  // informational codes, see docs/ccm-rules.md
  // Rule 9.
  std::string care_plan_reference;
  std::vector<std::string> care_plan_gaps;
  bool care_plan_stale = false;
  std::optional<TimePoint> care_plan_last_revised;
  // Evidence.
  std::vector<std::string> consents;    // "Consent/<id>" considered
  std::vector<std::string> care_plans;  // "CarePlan/<id>" considered
  std::vector<EncounterEvidence> encounters;
  std::vector<fhir::Issue> issues;  // data problems in this patient's resources
};

struct EvaluationSummary {
  std::size_t patients = 0;
  std::size_t eligible = 0;  // program CCM or PCM
  std::size_t consented = 0;
  std::size_t billable = 0;  // at least one code
  Minutes minutes;
  Cents expected_payment = 0;
};

// A code family of rule 8 (docs/ccm-rules.md "Codes"): `base` once at `threshold_minutes`, plus one
// unit of `add_on` per further full `step_minutes` (capped by RuleConfig::max_units). The families
// of one program are mutually exclusive in a month. `practitioner_time`: drawn on the billing
// practitioner's own time only; otherwise on the summed time of both pools. `complex`: allowed only
// when complex decision making is documented.
struct CodeFamily {
  Program program = Program::kNone;
  std::string_view base;
  std::int64_t threshold_minutes = 0;
  std::string_view add_on;
  std::int64_t step_minutes = 0;
  bool practitioner_time = false;
  bool complex = false;
};
// Every family, the one table the engine's code choice reads; in tie-break order (staff codes
// before practitioner codes).
std::span<const CodeFamily> CodeFamilies() noexcept;

// Evaluates every patient with clinical data in `facts` for `month`, sorted by patient reference.
std::vector<PatientMonth> Evaluate(const FactStore& facts, YearMonth month,
                                   const EngineConfig& config);
// Issues not attributable to any patient (e.g. a resource whose subject cannot be resolved).
std::vector<fhir::Issue> UnattributedIssues(const FactStore& facts);
EvaluationSummary Summarize(const std::vector<PatientMonth>& results);

// Rule 8 on its own (exposed for tests): the best allowed code combination under `config`'s fee
// schedule and unit limits, for billable minutes per pool and `combined` (the whole minutes of
// the summed time of both pools, which the staff codes may use). Lines carry no encounters.
std::vector<BillingLine> ChooseCodes(Program program, Minutes billable, std::int64_t combined,
                                     bool complex_documented, const EngineConfig& config);

}  // namespace ccm::gateway
