// The practice's CCM program in one month: the enrolment funnel, revenue billed and at stake, and
// a projection under published assumptions beside the practice's observed rates
// (GET /$ccm-program, docs/api.md; the formula and each assumption's source: docs/worklist.md).
//
// Contract
// - Pure: a function of one month's records, its worklist and the assumptions; no clock, no I/O.
// - Shares are exact ratios kept as basis points (1/10,000); money is whole cents.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fhir/json.h"
#include "fhir/result.h"
#include "gateway/ccm/engine.h"
#include "gateway/ccm/worklist.h"

namespace ccm::gateway {

// `program.assumptions` in the config (docs/configuration.md). Defaults: the CCM vendors' profit
// calculators' figures -- about 68 % of Medicare patients have two or more chronic conditions
// (CMS Chronic Conditions Chart Book), about 40 % of those enrol, about $46.67 net per
// patient-month.
struct ProgramAssumptions {
  std::int64_t qualify_bp = 6800;      // qualifyShare: chronic-eligible / population
  std::int64_t enrol_bp = 4000;        // enrolShare: consented / eligible
  Cents net_per_patient_month = 4667;  // netPerPatientMonth
};

// The `program` section (nullptr: absent, the defaults); errors name the key path
// (`program.assumptions.enrolShare`). Shares are decimals in [0, 1] with at most 4 decimals.
Result<ProgramAssumptions> ProgramAssumptionsFromJson(const fhir::json::Value* program,
                                                      std::string_view origin);

struct ProgramPicture {
  YearMonth month;
  // The funnel: patients with data -> chronic-eligible (not deceased) -> consent in effect ->
  // billed (at least one code).
  std::size_t population = 0, eligible_ccm = 0, eligible_pcm = 0, consented = 0, billable = 0;
  Cents billed = 0;    // the month's expected payment
  Cents at_stake = 0;  // sum of near-threshold items' valueOfNext (in a closed month: missed)
  std::size_t near_threshold = 0;
  ProgramAssumptions assumed;
  // Observed rates; 0 when the denominator is 0.
  std::int64_t observed_qualify_bp = 0;      // (eligible CCM + PCM) / population
  std::int64_t observed_enrol_bp = 0;        // consented / eligible
  Cents observed_net_per_patient_month = 0;  // billed / billable, rounded down
  // population x qualify x enrol x net, per month, with the assumptions and with the observed
  // rates (rounded down to the cent).
  Cents projected_assumed = 0, projected_observed = 0;
};

// `records` of one month (Evaluate's) and the worklist built from them.
ProgramPicture BuildProgram(const std::vector<PatientMonth>& records, const Worklist& worklist,
                            const ProgramAssumptions& assumptions);
// The JSON of GET /$ccm-program (docs/api.md).
fhir::json::Value ToJson(const ProgramPicture& p, const std::string& currency);

}  // namespace ccm::gateway
