// Configuration of the CCM engine: practice, code mappings, rule switches and the fee schedule.
//
// A config file is a JSON object; every key is optional and falls back to the built-in default
// (docs/configuration.md lists them key by key). Relative file names inside it are resolved
// against the directory of the config file. Errors name the file, the key (a dotted path such as
// `practice.timeZone`) and what is expected. Sections used by other commands (`sources`, `state`,
// `writeBack`, `server`, `logging`) are accepted and left to those commands.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "fhir/datetime.h"
#include "fhir/json.h"
#include "fhir/resources.h"
#include "fhir/result.h"
#include "mappings/code_maps.h"

namespace ccm::gateway {

// Whole cents; amounts are parsed from their decimal text, never through a double.
using Cents = std::int64_t;
// "60.49" for 6049; negative amounts get a leading '-'.
std::string FormatCents(Cents c);
// Exact decimal text ("60.49", "60.5", "60") to cents; error when it has more than 2 decimals.
Result<Cents> ParseCents(std::string_view decimal_text);

// Payment per CPT code for one year and setting (config/fee-schedule-YYYY.json).
struct FeeSchedule {
  int year = 0;
  std::string title;
  std::string source;
  std::string currency = "USD";
  std::map<std::string, Cents, std::less<>> rates;  // CPT code -> amount per unit

  std::optional<Cents> Rate(std::string_view code) const;
  // Parses the fee-schedule JSON; `origin` names the file in errors.
  static Result<FeeSchedule> FromJson(const fhir::json::Value& v, std::string_view origin);
};

// Fee schedules shipped with the gateway (embedded at build time), by year; error lists the years.
Result<FeeSchedule> BuiltInFeeSchedule(int year);
std::vector<int> BuiltInFeeScheduleYears();

struct PracticeConfig {
  std::string time_zone_name = "UTC";
  const date::time_zone* time_zone = nullptr;  // nullptr = UTC
  // Billing practitioners: literal references ("Practitioner/123") and NPIs ("1234567893").
  std::set<std::string, std::less<>> billing_practitioner_refs;
  std::set<std::string, std::less<>> billing_practitioner_npis;
};

struct CodeRef {
  std::string system, code;
};

struct RuleConfig {
  // Condition.verificationStatus codes that stop a Condition from counting (rule 1).
  std::set<fhir::ConditionVerificationStatus> excluded_verification = {
      fhir::ConditionVerificationStatus::kRefuted,
      fhir::ConditionVerificationStatus::kEnteredInError,
      fhir::ConditionVerificationStatus::kProvisional,
      fhir::ConditionVerificationStatus::kDifferential};
  // Encounter codes whose time is the billing practitioner's own (rule 7).
  mappings::CodeSet practitioner_time_codes;
  // Encounter codes that document complex CCM decision making (rule 8).
  mappings::CodeSet complex_ccm_codes;
  // Care plans not revised for this many months are flagged (rule 9); 0 disables the flag.
  int care_plan_review_months = 12;
  // A single care-management encounter longer than this is not counted (implausible; usually a
  // unit error such as "d" for "min"); 0 disables the check.
  int max_encounter_minutes = 240;
  // Most units of a code per patient-month (CMS limits 99439 to two).
  std::map<std::string, int, std::less<>> max_units = {{"99439", 2}};
};

struct EngineConfig {
  std::filesystem::path origin;  // the config file, empty for built-in defaults
  PracticeConfig practice;
  mappings::ChronicConditionMap chronic_conditions;
  mappings::CodeSet activity_codes;
  mappings::CodeSet consent_codes;
  // Claim diagnoses: SNOMED CT (and other) codes -> ICD-10-CM (mappings.diagnosisCodes).
  mappings::CodeTranslation diagnosis_codes;
  RuleConfig rules;
  FeeSchedule fee_schedule;
  bool fee_schedule_configured = false;  // billing.feeSchedule or billing.feeScheduleYear given
};

// Unless the config chose a fee schedule, picks the built-in one for `year` (the service month's
// year), else the newest built-in one before it, else the oldest after it.
Status UseFeeScheduleForYear(EngineConfig& config, int year);

// Built-in defaults: UTC, the shipped mappings, the newest shipped fee schedule.
Result<EngineConfig> DefaultEngineConfig();
// Defaults overridden by the file's keys.
Result<EngineConfig> LoadEngineConfig(const std::filesystem::path& file);
// Same from already parsed JSON; `base_dir` resolves relative file names.
Result<EngineConfig> EngineConfigFromJson(const fhir::json::Value& v, std::string_view origin,
                                          const std::filesystem::path& base_dir);

}  // namespace ccm::gateway
