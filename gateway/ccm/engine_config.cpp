#include "gateway/ccm/engine_config.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <sstream>

#include "gateway/base/config_keys.h"
#include "gateway/ccm/embedded_config.h"
#include "mappings/code_systems.h"

namespace ccm::gateway {
namespace {

using fhir::json::Value;
using namespace config;  // NOLINT(google-build-using-namespace): the key readers

Status ApplyPractice(const Value& root, std::string_view origin, PracticeConfig& practice) {
  CCM_TRY_ASSIGN(const Value* s, Section(root, "practice", origin, ""));
  if (s == nullptr) return {};
  CCM_TRY(CheckKeys(*s, origin, "practice", {"name", "timeZone", "billingPractitioners"}));
  CCM_TRY(StringKey(*s, "name", origin, "practice"));  // informational, but must be a string
  CCM_TRY_ASSIGN(auto tz, StringKey(*s, "timeZone", origin, "practice"));
  if (tz) {
    auto zone = fhir::LocateZone(*tz);
    if (!zone) {
      return ConfigError(origin, "practice.timeZone",
                         fmt::format("unknown IANA time zone \"{}\" (expected a name such as "
                                     "\"America/New_York\" or \"UTC\")",
                                     *tz));
    }
    practice.time_zone_name = *tz;
    practice.time_zone = *tz == "UTC" ? nullptr : *zone;
  }
  CCM_TRY_ASSIGN(auto billers, StringListKey(*s, "billingPractitioners", origin, "practice"));
  for (std::size_t i = 0; i < billers.size(); ++i) {
    const std::string& b = billers[i];
    bool npi = b.size() == 10 && std::all_of(b.begin(), b.end(), [](char c) {
                 return std::isdigit(static_cast<unsigned char>(c)) != 0;
               });
    if (npi) {
      practice.billing_practitioner_npis.insert(b);
    } else if (b.starts_with("Practitioner/") || b.starts_with("PractitionerRole/")) {
      practice.billing_practitioner_refs.insert(b);
    } else {
      return ConfigError(origin, fmt::format("practice.billingPractitioners[{}]", i),
                         fmt::format("\"{}\" is neither a 10-digit NPI nor a reference such as "
                                     "\"Practitioner/123\"",
                                     b));
    }
  }
  return {};
}

Status ApplyMappings(const Value& root, std::string_view origin, const std::filesystem::path& base,
                     EngineConfig& config) {
  CCM_TRY_ASSIGN(const Value* s, Section(root, "mappings", origin, ""));
  if (s == nullptr) return {};
  CCM_TRY(CheckKeys(*s, origin, "mappings",
                    {"chronicConditions", "replaceDefaultChronicConditions", "activityCodes",
                     "consentCodes", "diagnosisCodes"}));
  CCM_TRY_ASSIGN(auto files, StringListKey(*s, "chronicConditions", origin, "mappings"));
  CCM_TRY_ASSIGN(auto replace, BoolKey(*s, "replaceDefaultChronicConditions", origin, "mappings"));
  if (replace.value_or(false) && files.empty()) {
    return ConfigError(origin, "mappings.replaceDefaultChronicConditions",
                       "true needs mappings.chronicConditions to list at least one ConceptMap "
                       "file (otherwise no condition could ever count)");
  }
  if (!files.empty()) {
    std::vector<std::filesystem::path> paths;
    for (const auto& f : files) paths.push_back(Resolve(base, f));
    // One loader for both modes: the same parsing and the same error wording.
    auto loaded = mappings::LoadChronicConditionMaps(
        paths, replace.value_or(false) ? mappings::ChronicConditionMap()
                                       : std::move(config.chronic_conditions));
    if (!loaded) return ConfigError(origin, "mappings.chronicConditions", loaded.error().message);
    config.chronic_conditions = std::move(*loaded);
  }
  for (auto [key, target] : {std::pair{"activityCodes", &config.activity_codes},
                             std::pair{"consentCodes", &config.consent_codes}}) {
    CCM_TRY_ASSIGN(auto file, StringKey(*s, key, origin, "mappings"));
    if (!file) continue;
    auto set = mappings::LoadCodeSet(Resolve(base, *file));
    if (!set) return ConfigError(origin, Join("mappings", key), set.error().message);
    if (set->empty()) {
      return ConfigError(origin, Join("mappings", key), "the ValueSet has no codes");
    }
    *target = std::move(*set);
  }
  // Further ConceptMaps to ICD-10-CM for claim diagnoses, added to the built-in one.
  CCM_TRY_ASSIGN(auto dx_files, StringListKey(*s, "diagnosisCodes", origin, "mappings"));
  for (std::size_t i = 0; i < dx_files.size(); ++i) {
    std::string key = fmt::format("mappings.diagnosisCodes[{}]", i);
    std::filesystem::path p = Resolve(base, dx_files[i]);
    auto v = ReadJsonFile(p, "ConceptMap");
    if (!v) return ConfigError(origin, key, v.error().message);
    if ((*v)["resourceType"].str() != "ConceptMap") {
      return ConfigError(origin, key, fmt::format("{} is not a ConceptMap", p.string()));
    }
    if (Status added = config.diagnosis_codes.AddConceptMap(*v, p.string()); !added) {
      return ConfigError(origin, key, added.error().message);
    }
  }
  return {};
}

Status ApplyRules(const Value& root, std::string_view origin, RuleConfig& rules) {
  CCM_TRY_ASSIGN(const Value* s, Section(root, "rules", origin, ""));
  if (s == nullptr) return {};
  CCM_TRY(CheckKeys(*s, origin, "rules",
                    {"excludedVerificationStatuses", "practitionerTimeCodes", "complexCcmCodes",
                     "carePlanReviewMonths", "maxUnits", "maxEncounterMinutes"}));
  if (s->find("excludedVerificationStatuses") != nullptr) {
    CCM_TRY_ASSIGN(auto codes, StringListKey(*s, "excludedVerificationStatuses", origin, "rules"));
    rules.excluded_verification.clear();
    for (std::size_t i = 0; i < codes.size(); ++i) {
      auto status = fhir::ParseConditionVerificationStatus(codes[i]);
      if (!status) {
        return ConfigError(origin, fmt::format("rules.excludedVerificationStatuses[{}]", i),
                           fmt::format("\"{}\" is not a condition-ver-status code (unconfirmed, "
                                       "provisional, differential, confirmed, refuted, "
                                       "entered-in-error)",
                                       codes[i]));
      }
      rules.excluded_verification.insert(*status);
    }
  }
  CCM_TRY_ASSIGN(auto practitioner, CodeListKey(*s, "practitionerTimeCodes", origin, "rules"));
  if (practitioner) rules.practitioner_time_codes = std::move(*practitioner);
  CCM_TRY_ASSIGN(auto complex, CodeListKey(*s, "complexCcmCodes", origin, "rules"));
  if (complex) rules.complex_ccm_codes = std::move(*complex);
  CCM_TRY_ASSIGN(auto months, IntKey(*s, "carePlanReviewMonths", origin, "rules", 0, 120));
  if (months) rules.care_plan_review_months = static_cast<int>(*months);
  CCM_TRY_ASSIGN(auto longest, IntKey(*s, "maxEncounterMinutes", origin, "rules", 0, 24 * 60));
  if (longest) rules.max_encounter_minutes = static_cast<int>(*longest);
  if (const Value* mu = s->find("maxUnits")) {
    if (!mu->is_object()) {
      return ConfigError(origin, "rules.maxUnits", R"(expected an object such as {"99439": 2})");
    }
    for (const auto& m : mu->object()) {
      static constexpr std::string_view kCodes[] = {"99490", "99439", "99491", "99437", "99487",
                                                    "99489", "99424", "99425", "99426", "99427"};
      if (std::find(std::begin(kCodes), std::end(kCodes), m.key) == std::end(kCodes)) {
        return ConfigError(origin, fmt::format("rules.maxUnits.{}", m.key),
                           "not a CCM/PCM code (expected one of 99490, 99439, 99491, 99437, "
                           "99487, 99489, 99424, 99425, 99426, 99427)");
      }
      CCM_TRY_ASSIGN(auto n, IntKey(*mu, m.key, origin, "rules.maxUnits", 1, 100));
      rules.max_units[m.key] = static_cast<int>(*n);
    }
  }
  return {};
}

Status ApplyBilling(const Value& root, std::string_view origin, const std::filesystem::path& base,
                    EngineConfig& config) {
  CCM_TRY_ASSIGN(const Value* s, Section(root, "billing", origin, ""));
  if (s == nullptr) return {};
  // `payers`, `provider` and `identifierSystem` belong to the bill command (writeback_config.h);
  // they are accepted here.
  CCM_TRY(CheckKeys(*s, origin, "billing",
                    {"feeScheduleYear", "feeSchedule", "payers", "provider", "identifierSystem"}));
  CCM_TRY_ASSIGN(auto file, StringKey(*s, "feeSchedule", origin, "billing"));
  CCM_TRY_ASSIGN(auto year, IntKey(*s, "feeScheduleYear", origin, "billing", 2000, 2100));
  if (file && year) {
    return ConfigError(origin, "billing.feeSchedule",
                       "set either billing.feeSchedule (a file) or billing.feeScheduleYear (a "
                       "shipped schedule), not both");
  }
  if (file) {
    std::filesystem::path p = Resolve(base, *file);
    auto v = ReadJsonFile(p, "fee schedule");
    if (!v) return ConfigError(origin, "billing.feeSchedule", v.error().message);
    auto fees = FeeSchedule::FromJson(*v, p.string());
    if (!fees) return ConfigError(origin, "billing.feeSchedule", fees.error().message);
    config.fee_schedule = std::move(*fees);
    config.fee_schedule_configured = true;
  } else if (year) {
    auto fees = BuiltInFeeSchedule(static_cast<int>(*year));
    if (!fees) return ConfigError(origin, "billing.feeScheduleYear", fees.error().message);
    config.fee_schedule = std::move(*fees);
    config.fee_schedule_configured = true;
  }
  return {};
}

}  // namespace

std::string FormatCents(Cents c) {
  std::string sign = c < 0 ? "-" : "";
  std::uint64_t a =
      c < 0 ? static_cast<std::uint64_t>(-(c + 1)) + 1 : static_cast<std::uint64_t>(c);
  return fmt::format("{}{}.{:02}", sign, a / 100, a % 100);
}

Result<Cents> ParseCents(std::string_view text) {
  if (!fhir::json::IsJsonNumber(text) || text.find_first_of("eE") != std::string_view::npos ||
      text.starts_with('-')) {
    return MakeError(Errc::kInvalidArgument,
                     fmt::format("\"{}\" is not an amount (expected e.g. 60.49)", text));
  }
  std::size_t dot = text.find('.');
  std::string_view whole = text.substr(0, dot);
  std::string_view frac = dot == std::string_view::npos ? "" : text.substr(dot + 1);
  if (frac.size() > 2) {
    return MakeError(Errc::kInvalidArgument,
                     fmt::format("\"{}\" has more than 2 decimals (expected whole cents)", text));
  }
  if (whole.size() > 12) {
    return MakeError(Errc::kInvalidArgument, fmt::format("\"{}\" is too large", text));
  }
  Cents c = 0;
  for (char ch : whole) c = c * 10 + (ch - '0');
  c *= 100;
  if (!frac.empty()) c += (frac[0] - '0') * 10 + (frac.size() > 1 ? frac[1] - '0' : 0);
  return c;
}

std::optional<Cents> FeeSchedule::Rate(std::string_view code) const {
  auto it = rates.find(code);
  if (it == rates.end()) return std::nullopt;
  return it->second;
}

Result<FeeSchedule> FeeSchedule::FromJson(const Value& v, std::string_view origin) {
  if (!v.is_object()) return ConfigError(origin, "(top level)", "expected a JSON object");
  CCM_TRY(
      CheckKeys(v, origin, "",
                {"year", "title", "source", "locality", "setting", "currency", "rates", "notes"}));
  FeeSchedule fs;
  CCM_TRY_ASSIGN(auto year, IntKey(v, "year", origin, "", 2000, 2100));
  if (!year) return ConfigError(origin, "year", "required: the calendar year of the schedule");
  fs.year = static_cast<int>(*year);
  CCM_TRY_ASSIGN(auto title, StringKey(v, "title", origin, ""));
  fs.title = title.value_or("");
  CCM_TRY_ASSIGN(auto source, StringKey(v, "source", origin, ""));
  fs.source = source.value_or("");
  CCM_TRY_ASSIGN(auto currency, StringKey(v, "currency", origin, ""));
  fs.currency = currency.value_or("USD");
  const Value& rates = v["rates"];
  if (!rates.is_object() || rates.size() == 0) {
    return ConfigError(origin, "rates",
                       R"(required: an object of CPT code -> amount, e.g. {"99490": 60.49})");
  }
  for (const auto& m : rates.object()) {
    std::string key = fmt::format("rates.{}", m.key);
    if (!m.value.is_number()) return ConfigError(origin, key, "expected an amount such as 60.49");
    auto cents = ParseCents(m.value.number_text());
    if (!cents) return ConfigError(origin, key, cents.error().message);
    fs.rates.emplace(m.key, *cents);
  }
  return fs;
}

std::vector<int> BuiltInFeeScheduleYears() {
  std::vector<int> years;
  for (const auto& f : EmbeddedConfigFiles()) {
    int y = 0;
    if (std::sscanf(f.name.data(), "fee-schedule-%d.json", &y) == 1) years.push_back(y);
  }
  std::sort(years.begin(), years.end());
  return years;
}

Result<FeeSchedule> BuiltInFeeSchedule(int year) {
  std::string name = fmt::format("fee-schedule-{}.json", year);
  for (const auto& f : EmbeddedConfigFiles()) {
    if (f.name != name) continue;
    auto v = fhir::json::Parse(f.text);
    if (!v)
      return MakeError(Errc::kInternal, fmt::format("built-in {}: {}", name, v.error().message));
    return FeeSchedule::FromJson(*v, fmt::format("built-in config/{}", name));
  }
  std::string years;
  for (int y : BuiltInFeeScheduleYears())
    years += fmt::format("{}{}", years.empty() ? "" : ", ", y);
  return MakeError(Errc::kNotFound,
                   fmt::format("no fee schedule for {} is built in (built in: {}); set "
                               "billing.feeSchedule to a file instead",
                               year, years));
}

Status UseFeeScheduleForYear(EngineConfig& config, int year) {
  if (config.fee_schedule_configured) return {};
  std::vector<int> years = BuiltInFeeScheduleYears();
  if (years.empty()) return MakeError(Errc::kInternal, "no fee schedule is built in");
  int chosen = years.front();
  for (int y : years) {
    if (y <= year) chosen = y;
  }
  if (chosen == config.fee_schedule.year) return {};
  CCM_TRY_ASSIGN(config.fee_schedule, BuiltInFeeSchedule(chosen));
  return {};
}

Result<EngineConfig> DefaultEngineConfig() {
  EngineConfig c;
  CCM_TRY_ASSIGN(c.chronic_conditions, mappings::DefaultChronicConditionMap());
  CCM_TRY_ASSIGN(c.activity_codes, mappings::DefaultActivityCodes());
  CCM_TRY_ASSIGN(c.consent_codes, mappings::DefaultConsentCodes());
  CCM_TRY_ASSIGN(c.diagnosis_codes, mappings::DefaultDiagnosisTranslation());
  for (const char* code : {"99491", "99437", "99424", "99425"}) {
    c.rules.practitioner_time_codes.Add(mappings::kCpt, code);
  }
  for (const char* code : {"99487", "99489"}) c.rules.complex_ccm_codes.Add(mappings::kCpt, code);
  std::vector<int> years = BuiltInFeeScheduleYears();
  if (years.empty()) return MakeError(Errc::kInternal, "no fee schedule is built in");
  CCM_TRY_ASSIGN(c.fee_schedule, BuiltInFeeSchedule(years.back()));
  return c;
}

Result<EngineConfig> EngineConfigFromJson(const Value& v, std::string_view origin,
                                          const std::filesystem::path& base_dir) {
  if (!v.is_object()) return ConfigError(origin, "(top level)", "expected a JSON object");
  // Every section some command reads, and only those: a section nothing reads yet (`server`,
  // before there is a server) is an unknown key like a typo.
  CCM_TRY(CheckKeys(v, origin, "",
                    {"practice", "mappings", "rules", "billing", "sources", "state", "sync",
                     "writeBack", "logging", "server", "program"}));
  CCM_TRY(LoggingFromJson(v, origin));  // used by sync and bill; checked here too
  CCM_TRY_ASSIGN(EngineConfig c, DefaultEngineConfig());
  c.origin = std::filesystem::path(origin);
  CCM_TRY(ApplyPractice(v, origin, c.practice));
  CCM_TRY(ApplyMappings(v, origin, base_dir, c));
  CCM_TRY(ApplyRules(v, origin, c.rules));
  CCM_TRY(ApplyBilling(v, origin, base_dir, c));
  return c;
}

Result<EngineConfig> LoadEngineConfig(const std::filesystem::path& file) {
  CCM_TRY_ASSIGN(Value v, ReadJsonFile(file, "config"));
  return EngineConfigFromJson(v, file.string(), file.parent_path());
}

}  // namespace ccm::gateway
