// Rules 0-9 of docs/ccm-rules.md, one edge at a time, on resources built in the test.
#include "gateway/ccm/engine.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "fhir/json.h"
#include "gateway/ccm/facts.h"
#include "gateway/ccm/report.h"
#include "mappings/code_systems.h"

namespace ccm::gateway {
namespace {

std::string Diabetes(const std::string& id, const std::string& extra = "") {
  return fmt::format(
      R"({{"resourceType":"Condition","id":"{}","clinicalStatus":{{"coding":[{{"system":)"
      R"("http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}}]}},)"
      R"("code":{{"coding":[{{"system":"http://snomed.info/sct","code":"44054006"}}]}},)"
      R"("subject":{{"reference":"Patient/p1"}}{}}})",
      id, extra);
}

std::string Hypertension(const std::string& id = "htn") {
  return fmt::format(
      R"({{"resourceType":"Condition","id":"{}","code":{{"coding":[{{"system":)"
      R"("http://hl7.org/fhir/sid/icd-10-cm","code":"I10"}}]}},"subject":{{"reference":"Patient/p1"}}}})",
      id);
}

struct Enc {
  std::string id;
  std::string start;  // dateTime
  double minutes = 20;
  std::string code = "99490";
  std::string performer = R"({"reference":"Practitioner/rn"})";
  std::string status = "finished";
  std::string extra;
};

std::string Encounter(const Enc& e) {
  return fmt::format(
      R"({{"resourceType":"Encounter","id":"{}","status":"{}","class":{{"system":)"
      R"("http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"VR"}},"type":[{{"coding":)"
      R"([{{"system":"http://www.ama-assn.org/go/cpt","code":"{}"}}]}}],"subject":)"
      R"({{"reference":"Patient/p1"}},"participant":[{{"individual":{}}}],"period":{{"start":"{}"}},)"
      R"("length":{{"value":{},"system":"http://unitsofmeasure.org","code":"min"}}{}}})",
      e.id, e.status, e.code, e.performer, e.start, e.minutes, e.extra);
}

std::string Consent(const std::string& status = "active", const std::string& start = "2025-01-15",
                    const std::string& end = "", const std::string& id = "c1") {
  std::string period = end.empty() ? fmt::format(R"({{"start":"{}"}})", start)
                                   : fmt::format(R"({{"start":"{}","end":"{}"}})", start, end);
  return fmt::format(
      R"({{"resourceType":"Consent","id":"{}","status":"{}","scope":{{"coding":[{{"system":)"
      R"("http://terminology.hl7.org/CodeSystem/consentscope","code":"treatment"}}]}},)"
      R"("category":[{{"coding":[{{"system":"http://loinc.org","code":"59284-0"}}]}}],)"
      R"("patient":{{"reference":"Patient/p1"}},"provision":{{"type":"permit","period":{}}}}})",
      id, status, period);
}

std::string CarePlan(const std::string& status = "active", const std::string& extra = "",
                     const std::string& id = "cp1",
                     const std::string& period = R"({"start":"2025-02-01"})") {
  return fmt::format(R"({{"resourceType":"CarePlan","id":"{}","status":"{}","intent":"plan",)"
                     R"("subject":{{"reference":"Patient/p1"}},"period":{}{}}})",
                     id, status, period, extra);
}

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = DefaultEngineConfig();
    ASSERT_TRUE(c) << c.error().message;
    config_ = std::move(*c);
  }

  void Add(const std::string& json) {
    auto v = fhir::json::Parse(json);
    ASSERT_TRUE(v) << v.error().message << "\n" << json;
    facts_.Add(*v, fhir::SourceLocation{"test.ndjson", ++line_, ""}, config_);
  }

  // The usual billable set-up: two chronic conditions, consent, active plan.
  void Eligible() {
    Add(Diabetes("dm"));
    Add(Hypertension());
    Add(Consent());
    Add(CarePlan());
  }

  PatientMonth Eval(const std::string& month = "2026-10",
                    const std::string& patient = "Patient/p1") {
    auto ym = YearMonth::Parse(month);
    EXPECT_TRUE(ym);
    auto results = Evaluate(facts_, *ym, config_);
    for (auto& r : results) {
      if (r.patient == patient) return r;
    }
    ADD_FAILURE() << "no result for " << patient;
    return {};
  }

  static std::string Codes(const PatientMonth& r) {
    std::string out;
    for (const auto& l : r.billing)
      out += fmt::format("{}{}x{}", out.empty() ? "" : " ", l.code, l.units);
    return out;
  }
  static bool Blocked(const PatientMonth& r, std::string_view why) {
    return std::find(r.blocked_by.begin(), r.blocked_by.end(), why) != r.blocked_by.end();
  }

  EngineConfig config_;
  FactStore facts_;
  std::size_t line_ = 0;
};

// ---- rule 8: thresholds -------------------------------------------------------------------------

TEST_F(EngineTest, StaffThresholdsAtExactly19_20_39_40_60Minutes) {
  const std::pair<double, const char*> cases[] = {
      {19, ""},
      {20, "99490x1"},
      {39, "99490x1"},
      {40, "99490x1 99439x1"},
      {59.99, "99490x1 99439x1"},
      {60, "99490x1 99439x2"},
      {200, "99490x1 99439x2"}};  // 99439: at most two units
  for (const auto& [minutes, codes] : cases) {
    facts_ = FactStore();
    Eligible();
    Add(Encounter({.id = "e1", .start = "2026-10-05T10:00:00Z", .minutes = minutes}));
    PatientMonth r = Eval();
    EXPECT_EQ(Codes(r), codes) << minutes << " min";
    EXPECT_EQ(r.minutes.clinical_staff, static_cast<std::int64_t>(minutes)) << minutes;
    EXPECT_EQ(Blocked(r, "below-threshold"), std::string(codes).empty()) << minutes;
    if (!r.billing.empty()) {
      ASSERT_EQ(r.billing[0].encounters.size(), 1u);
      EXPECT_EQ(r.billing[0].encounters[0], "Encounter/e1");
    }
  }
}

TEST_F(EngineTest, MinutesAreSummedInSecondsAndFlooredOnce) {
  Eligible();
  // 9.5 + 10.5 = 20 minutes exactly; flooring each first would give 19.
  Add(Encounter({.id = "a", .start = "2026-10-05T10:00:00Z", .minutes = 9.5}));
  Add(Encounter({.id = "b", .start = "2026-10-06T10:00:00Z", .minutes = 10.5}));
  PatientMonth r = Eval();
  EXPECT_EQ(r.minutes.clinical_staff, 20);
  EXPECT_EQ(Codes(r), "99490x1");
  EXPECT_EQ(r.expected_payment, 6049);
}

TEST_F(EngineTest, ChooseCodesPicksTheBestPayingAllowedFamily) {
  auto codes = [&](Program p, std::int64_t staff, std::int64_t own, bool complex) {
    std::string out;
    for (const auto& l : ChooseCodes(p, {staff, own}, staff + own, complex, config_)) {
      out += fmt::format("{}{}x{}", out.empty() ? "" : " ", l.code, l.units);
    }
    return out;
  };
  // 60 staff minutes: 99490 + 2x99439 ($152.35) beats 99487 ($131.65) even when documented.
  EXPECT_EQ(codes(Program::kCcm, 60, 0, true), "99490x1 99439x2");
  // 90: 99487 + 99489 ($202.17) wins.
  EXPECT_EQ(codes(Program::kCcm, 90, 0, true), "99487x1 99489x1");
  // Not documented as complex: never 99487.
  EXPECT_EQ(codes(Program::kCcm, 90, 0, false), "99490x1 99439x2");
  // 30 practitioner minutes: 99491 ($82.16) beats 99490 + 99439? no: 30 min = 99490 only.
  EXPECT_EQ(codes(Program::kCcm, 0, 30, false), "99491x1");
  // 29 practitioner minutes: not 99491, but counts toward 99490.
  EXPECT_EQ(codes(Program::kCcm, 0, 29, false), "99490x1");
  // 60 practitioner minutes: 99490 + 2x99439 ($152.35) beats 99491 + 99437 ($139.74).
  EXPECT_EQ(codes(Program::kCcm, 0, 60, false), "99490x1 99439x2");
  EXPECT_EQ(codes(Program::kCcm, 0, 120, false), "99491x1 99437x3");
  // PCM: practitioner or staff family, never both, never CCM codes.
  EXPECT_EQ(codes(Program::kPcm, 0, 30, false), "99424x1");
  EXPECT_EQ(codes(Program::kPcm, 30, 0, false), "99426x1");
  EXPECT_EQ(codes(Program::kPcm, 29, 0, false), "");
  EXPECT_EQ(codes(Program::kPcm, 65, 0, false), "99426x1 99427x1");
  EXPECT_EQ(codes(Program::kNone, 100, 100, true), "");
  // A unit limit from the config applies.
  config_.rules.max_units["99427"] = 1;
  EXPECT_EQ(codes(Program::kPcm, 200, 0, false), "99426x1 99427x1");
}

TEST_F(EngineTest, ComplexCcmNeedsAComplexCodedEncounter) {
  Eligible();
  Add(Encounter({.id = "a", .start = "2026-10-05T10:00:00Z", .minutes = 50, .code = "99487"}));
  Add(Encounter({.id = "b", .start = "2026-10-06T10:00:00Z", .minutes = 45}));
  PatientMonth r = Eval();
  EXPECT_EQ(r.minutes.clinical_staff, 95);
  EXPECT_EQ(Codes(r), "99487x1 99489x1");
  EXPECT_EQ(r.expected_payment, 13165 + 7052);
}

// ---- rules 6 and 7: time ------------------------------------------------------------------------

TEST_F(EngineTest, OverlappingTimeOfOnePerformerCountsOnce) {
  Eligible();
  Add(Encounter({.id = "a", .start = "2026-10-05T10:00:00Z", .minutes = 15}));
  Add(Encounter({.id = "b", .start = "2026-10-05T10:07:30Z", .minutes = 15}));
  PatientMonth r = Eval();
  EXPECT_EQ(r.minutes.clinical_staff, 22);  // 10:00 - 10:22:30
  EXPECT_EQ(Codes(r), "99490x1");
  ASSERT_EQ(r.encounters.size(), 2u);
  EXPECT_EQ(r.encounters[0].counted_micros, 15 * 60'000'000LL);
  EXPECT_EQ(r.encounters[1].counted_micros, 7 * 60'000'000LL + 30'000'000LL);
}

TEST_F(EngineTest, OverlappingTimeOfTwoPerformersCountsTwice) {
  Eligible();
  Add(Encounter({.id = "a", .start = "2026-10-05T10:00:00Z", .minutes = 15}));
  Add(Encounter({.id = "b",
                 .start = "2026-10-05T10:00:00Z",
                 .minutes = 15,
                 .performer = R"({"reference":"Practitioner/rn2"})"}));
  EXPECT_EQ(Eval().minutes.clinical_staff, 30);
}

TEST_F(EngineTest, DurationFromPeriodWhenNoLengthAcrossDstChange) {
  Eligible();
  // 2026-11-01 01:30 EDT to 01:30 EST is one hour of real time.
  Add(R"({"resourceType":"Encounter","id":"dst","status":"finished","class":{"code":"VR"},)"
      R"("type":[{"coding":[{"system":"http://www.ama-assn.org/go/cpt","code":"99490"}]}],)"
      R"("subject":{"reference":"Patient/p1"},"period":{"start":"2026-11-01T01:30:00-04:00",)"
      R"("end":"2026-11-01T01:30:00-05:00"}})");
  config_.practice.time_zone = *fhir::LocateZone("America/New_York");
  PatientMonth r = Eval("2026-11");
  EXPECT_EQ(r.minutes.clinical_staff, 60);
}

TEST_F(EngineTest, MonthIsTakenInThePracticeTimeZone) {
  Eligible();
  // 23:30 on Oct 31 in New York is 03:30 on Nov 1 UTC.
  Add(Encounter({.id = "late", .start = "2026-10-31T23:30:00-04:00", .minutes = 25}));
  EXPECT_EQ(Eval("2026-10").minutes.clinical_staff, 0);  // UTC: November
  EXPECT_EQ(Eval("2026-11").minutes.clinical_staff, 25);
  auto tz = fhir::LocateZone("America/New_York");
  ASSERT_TRUE(tz);
  config_.practice.time_zone = *tz;
  EXPECT_EQ(Eval("2026-10").minutes.clinical_staff, 25);
  EXPECT_EQ(Eval("2026-11").minutes.clinical_staff, 0);
}

TEST_F(EngineTest, OnlyFinishedEncountersWithStartAndDurationCount) {
  Eligible();
  Add(Encounter(
      {.id = "planned", .start = "2026-10-05T10:00:00Z", .minutes = 30, .status = "planned"}));
  Add(Encounter(
      {.id = "eie", .start = "2026-10-06T10:00:00Z", .minutes = 30, .status = "entered-in-error"}));
  Add(R"({"resourceType":"Encounter","id":"nostart","status":"finished","class":{"code":"VR"},)"
      R"("type":[{"coding":[{"system":"http://www.ama-assn.org/go/cpt","code":"99490"}]}],)"
      R"("subject":{"reference":"Patient/p1"},"length":{"value":30,"system":"http://unitsofmeasure.org","code":"min"}})");
  Add(Encounter({.id = "other", .start = "2026-10-07T10:00:00Z", .minutes = 30, .code = "99213"}));
  PatientMonth r = Eval();
  EXPECT_EQ(r.minutes.clinical_staff, 0);
  EXPECT_TRUE(r.billing.empty());
  std::map<std::string, std::string> reason;
  for (const auto& e : r.encounters) reason[e.reference] = e.reason;
  EXPECT_EQ(reason["Encounter/planned"], "not-finished");
  EXPECT_EQ(reason["Encounter/nostart"], "no-start");
  EXPECT_FALSE(reason.contains("Encounter/other"));  // not a care-management encounter
  bool reported = std::any_of(r.issues.begin(), r.issues.end(), [](const fhir::Issue& i) {
    return i.path == "Encounter.period.start" && i.location == "test.ndjson:7";
  });
  EXPECT_TRUE(reported);
}

TEST_F(EngineTest, PractitionerTimeByCodeOrByConfiguredPerformer) {
  Eligible();
  config_.practice.billing_practitioner_npis.insert("9999999991");
  // Coded 99491: the practitioner's time whoever is listed.
  Add(Encounter({.id = "a", .start = "2026-10-05T10:00:00Z", .minutes = 20, .code = "99491"}));
  // Coded 99490 but performed by the billing practitioner (Synthea-style NPI reference).
  Add(Encounter(
      {.id = "b",
       .start = "2026-10-06T10:00:00Z",
       .minutes = 15,
       .performer =
           R"({"reference":"Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999999991"})"}));
  // A nurse's 99490 time.
  Add(Encounter({.id = "c", .start = "2026-10-07T10:00:00Z", .minutes = 10}));
  PatientMonth r = Eval();
  EXPECT_EQ(r.minutes.practitioner, 35);
  EXPECT_EQ(r.minutes.clinical_staff, 10);
  // 35 practitioner minutes -> 99491 ($82.16) vs 45 total minutes -> 99490 + 99439 ($106.42).
  EXPECT_EQ(Codes(r), "99490x1 99439x1");
}

TEST_F(EngineTest, BillingPractitionerResolvedThroughPractitionerResource) {
  Eligible();
  config_.practice.billing_practitioner_npis.insert("9999999991");
  Add(R"({"resourceType":"Practitioner","id":"md","identifier":[{"system":"http://hl7.org/fhir/sid/us-npi","value":"9999999991"}]})");
  Add(Encounter({.id = "a",
                 .start = "2026-10-05T10:00:00Z",
                 .minutes = 30,
                 .performer = R"({"reference":"Practitioner/md"})"}));
  PatientMonth r = Eval();
  EXPECT_EQ(r.minutes.practitioner, 30);
  EXPECT_EQ(Codes(r), "99491x1");
}

// ---- de-duplication --------------------------------------------------------------------------

TEST_F(EngineTest, NewestVersionWinsWhateverTheOrder) {
  const std::string v1 = Encounter({.id = "e",
                                    .start = "2026-10-05T10:00:00Z",
                                    .minutes = 40,
                                    .extra = R"(,"meta":{"versionId":"1"})"});
  const std::string v2 = Encounter({.id = "e",
                                    .start = "2026-10-05T10:00:00Z",
                                    .minutes = 40,
                                    .status = "entered-in-error",
                                    .extra = R"(,"meta":{"versionId":"2"})"});
  for (bool v2_first : {false, true}) {
    facts_ = FactStore();
    Eligible();
    Add(v2_first ? v2 : v1);
    Add(v2_first ? v1 : v2);
    PatientMonth r = Eval();
    EXPECT_EQ(r.minutes.clinical_staff, 0) << v2_first;
    EXPECT_EQ(facts_.counts().duplicates, 1u);
  }
  // A later version that drops the care-management code also replaces the counted one.
  facts_ = FactStore();
  Eligible();
  Add(v1);
  Add(Encounter({.id = "e",
                 .start = "2026-10-05T10:00:00Z",
                 .minutes = 40,
                 .code = "99213",
                 .extra = R"(,"meta":{"versionId":"3"})"}));
  EXPECT_EQ(Eval().minutes.clinical_staff, 0);
}

// ---- rules 1-3: conditions and program --------------------------------------------------------

TEST_F(EngineTest, DistinctCategoriesNotRecords) {
  Add(Diabetes("dm1"));
  Add(Diabetes("dm2"));
  Add(R"({"resourceType":"Condition","id":"dm3","code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"E11.9"}]},"subject":{"reference":"Patient/p1"}})");
  PatientMonth r = Eval();
  ASSERT_EQ(r.chronic_conditions.size(), 1u);
  EXPECT_EQ(r.chronic_conditions[0].conditions,
            (std::vector<std::string>{"Condition/dm1", "Condition/dm2", "Condition/dm3"}));
  EXPECT_EQ(r.program, Program::kPcm);
  Add(Hypertension());
  EXPECT_EQ(Eval().program, Program::kCcm);
}

TEST_F(EngineTest, ConditionStatusOnsetAndAbatement) {
  auto program_with = [&](const std::string& extra) {
    facts_ = FactStore();
    Add(Hypertension());
    Add(Diabetes("dm", extra));
    return Eval().program;
  };
  EXPECT_EQ(program_with(""), Program::kCcm);
  EXPECT_EQ(program_with(R"(,"onsetDateTime":"2026-10-31")"), Program::kCcm);
  EXPECT_EQ(program_with(R"(,"onsetDateTime":"2026-11-01")"), Program::kPcm);
  EXPECT_EQ(program_with(R"(,"abatementDateTime":"2026-10-02")"), Program::kCcm);
  EXPECT_EQ(program_with(R"(,"abatementDateTime":"2026-09-30")"), Program::kPcm);
  EXPECT_EQ(program_with(R"(,"abatementString":"in childhood")"), Program::kPcm);
  for (const char* v : {"refuted", "entered-in-error", "provisional", "differential"}) {
    EXPECT_EQ(
        program_with(fmt::format(
            R"(,"verificationStatus":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/condition-ver-status","code":"{}"}}]}})",
            v)),
        Program::kPcm)
        << v;
  }
  EXPECT_EQ(
      program_with(
          R"(,"verificationStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-ver-status","code":"confirmed"}]})"),
      Program::kCcm);
  // A resolved clinical status without an abatement date never counts.
  facts_ = FactStore();
  Add(Hypertension());
  Add(R"({"resourceType":"Condition","id":"dm","clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"resolved"}]},"code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006"}]},"subject":{"reference":"Patient/p1"}})");
  EXPECT_EQ(Eval().program, Program::kPcm);
}

TEST_F(EngineTest, SocialFindingsAndAcuteProblemsAreNeverChronic) {
  for (const char* code : {"160903007", "73595000", "10509002", "195662009"}) {
    Add(fmt::format(
        R"({{"resourceType":"Condition","id":"x{}","code":{{"coding":[{{"system":"http://snomed.info/sct","code":"{}"}}]}},"subject":{{"reference":"Patient/p1"}}}})",
        code, code));
  }
  PatientMonth r = Eval();
  EXPECT_EQ(r.program, Program::kNone);
  EXPECT_TRUE(Blocked(r, "not-eligible"));
}

// ---- rule 0: deceased -------------------------------------------------------------------------

TEST_F(EngineTest, DeceasedBeforeTheMonthIsNotEligible) {
  Eligible();
  Add(R"({"resourceType":"Patient","id":"p1","deceasedDateTime":"1990-05-01"})");
  Add(Encounter({.id = "e", .start = "2026-10-05T10:00:00Z", .minutes = 30}));
  PatientMonth r = Eval();
  EXPECT_TRUE(r.deceased);
  EXPECT_TRUE(Blocked(r, "deceased"));
  EXPECT_TRUE(r.billing.empty());
}

TEST_F(EngineTest, TimeAfterDeathNeverCounts) {
  Eligible();
  Add(R"({"resourceType":"Patient","id":"p1","deceasedDateTime":"2026-10-10T12:00:00Z"})");
  Add(Encounter({.id = "before", .start = "2026-10-05T10:00:00Z", .minutes = 20}));
  Add(Encounter({.id = "after", .start = "2026-10-12T10:00:00Z", .minutes = 20}));
  PatientMonth r = Eval();
  EXPECT_FALSE(r.deceased);
  EXPECT_EQ(r.minutes.clinical_staff, 20);
  EXPECT_EQ(Codes(r), "99490x1");
  EXPECT_EQ(r.encounters[1].reason, "after-death");
  facts_ = FactStore();
  Eligible();
  Add(R"({"resourceType":"Patient","id":"p1","deceasedBoolean":true})");
  EXPECT_TRUE(Blocked(Eval(), "deceased"));
}

// ---- merged and inactive records (docs/ccm-rules.md "Merged and inactive records") -----------

// The same resource about another patient.
std::string For(std::string json, const std::string& patient) {
  for (std::size_t at; (at = json.find("Patient/p1")) != std::string::npos;) {
    json.replace(at, 10, patient);
  }
  return json;
}

TEST_F(EngineTest, AMergedRecordIsNeverBilledAndNamesItsSurvivor) {
  Eligible();
  Add(Encounter({.id = "e", .start = "2026-10-05T10:00:00Z", .minutes = 30}));
  Add(R"({"resourceType":"Patient","id":"p1","active":false,
          "link":[{"other":{"reference":"Patient/p2"},"type":"replaced-by"}]})");
  Add(For(Diabetes("dm2"), "Patient/p2"));
  PatientMonth r = Eval();
  EXPECT_TRUE(r.merged);
  EXPECT_EQ(r.replaced_by, "Patient/p2");
  EXPECT_TRUE(Blocked(r, "merged"));
  EXPECT_TRUE(Blocked(r, "inactive-record"));
  EXPECT_TRUE(r.billing.empty());
  EXPECT_EQ(r.minutes.clinical_staff, 30);  // the evidence is still reported
  auto json = ToJson(r, config_);
  EXPECT_EQ(json["replacedBy"].str(), "Patient/p2");
  EXPECT_EQ(json["blockedBy"][0].str(), "merged");
  // The survivor knows which record was merged into it (the ledger holds its months).
  PatientMonth survivor = Eval("2026-10", "Patient/p2");
  EXPECT_EQ(survivor.merged_from, std::vector<std::string>{"Patient/p1"});
  EXPECT_EQ(ToJson(survivor, config_)["mergedFrom"][0].str(), "Patient/p1");
  EXPECT_FALSE(survivor.merged);
}

TEST_F(EngineTest, MergesAreFollowedThroughChainsAndReplacesLinks) {
  Add(R"({"resourceType":"Patient","id":"a","link":[{"other":{"reference":"Patient/b"},"type":"replaced-by"}]})");
  Add(R"({"resourceType":"Patient","id":"b","link":[{"other":{"reference":"Patient/c"},"type":"replaced-by"}]})");
  Add(R"({"resourceType":"Patient","id":"c","link":[{"other":{"reference":"Patient/d"},"type":"replaces"},
          {"other":{"reference":"Patient/x"},"type":"seealso"}]})");
  // A loop (a data error) ends; it does not hang.
  Add(R"({"resourceType":"Patient","id":"l1","link":[{"other":{"reference":"Patient/l2"},"type":"replaced-by"}]})");
  Add(R"({"resourceType":"Patient","id":"l2","link":[{"other":{"reference":"Patient/l1"},"type":"replaced-by"}]})");
  for (const char* p : {"Patient/a", "Patient/b", "Patient/c", "Patient/l1"}) {
    Add(For(Hypertension(fmt::format("htn-{}", p + 8)), p));
  }
  EXPECT_EQ(Eval("2026-10", "Patient/c").merged_from,
            (std::vector<std::string>{"Patient/a", "Patient/b", "Patient/d"}));
  EXPECT_EQ(Eval("2026-10", "Patient/b").merged_from, std::vector<std::string>{"Patient/a"});
  EXPECT_TRUE(Eval("2026-10", "Patient/b").merged);
  EXPECT_TRUE(Eval("2026-10", "Patient/a").merged);
  EXPECT_FALSE(Eval("2026-10", "Patient/c").merged);  // replaces and seealso do not block
  EXPECT_EQ(Eval("2026-10", "Patient/l1").merged_from, std::vector<std::string>{"Patient/l2"});
}

TEST_F(EngineTest, AnInactiveRecordOrALinkWithoutASurvivorBlocksToo) {
  Eligible();
  Add(Encounter({.id = "e", .start = "2026-10-05T10:00:00Z", .minutes = 30}));
  Add(R"({"resourceType":"Patient","id":"p1","active":false})");
  PatientMonth r = Eval();
  EXPECT_FALSE(r.merged);
  EXPECT_EQ(r.blocked_by, std::vector<std::string>{"inactive-record"});
  EXPECT_FALSE(ToJson(r, config_).find("replacedBy"));
  // An unreadable active is read the safe way.
  Add(R"({"resourceType":"Patient","id":"p1","meta":{"versionId":"2"},"active":"no"})");
  EXPECT_TRUE(Blocked(Eval(), "inactive-record"));
  // Merged, but the link names no Patient (an identifier only): still never billed.
  Add(R"({"resourceType":"Patient","id":"p1","meta":{"versionId":"3"},"active":true,
          "link":[{"other":{"identifier":{"system":"urn:mrn","value":"9"}},"type":"replaced-by"}]})");
  r = Eval();
  EXPECT_TRUE(r.merged);
  EXPECT_EQ(r.replaced_by, "");
  EXPECT_EQ(r.blocked_by, std::vector<std::string>{"merged"});
  EXPECT_TRUE(ToJson(r, config_)["replacedBy"].is_null());
  // active true and no replaced-by link: billed as before.
  Add(R"({"resourceType":"Patient","id":"p1","meta":{"versionId":"4"},"active":true,
          "link":[{"other":{"reference":"Patient/p9"},"type":"refer"}]})");
  EXPECT_EQ(Codes(Eval()), "99490x1");
}

TEST_F(EngineTest, TheNdjsonFastPathReadsTheLinkAndActiveToo) {
  Eligible();
  Add(Encounter({.id = "e", .start = "2026-10-05T10:00:00Z", .minutes = 30}));
  std::string line =
      R"({"resourceType":"Patient","id":"p1","name":[{"family":"X"}],"active":false,)"
      R"("link":[{"other":{"reference":"Patient/p2"},"type":"replaced-by"}]})";
  std::size_t size = line.size();
  // The fast path parses in place and reads ahead (SIMD): a padded, NUL-terminated buffer.
  line.append(fhir::json::kInsituPadding + 1, '\0');
  std::string scratch;
  auto e = ExtractFactFromLine(line.data(), size, fhir::SourceLocation{"p.ndjson", 1, ""}, config_,
                               &scratch);
  ASSERT_TRUE(e) << e.error().message;
  facts_.Add(std::move(*e));
  PatientMonth r = Eval();
  EXPECT_EQ(r.replaced_by, "Patient/p2");
  EXPECT_EQ(r.blocked_by, (std::vector<std::string>{"merged", "inactive-record"}));
}

// ---- rule 4: consent --------------------------------------------------------------------------

TEST_F(EngineTest, ConsentMidMonthBillsOnlyTimeAfterIt) {
  Add(Diabetes("dm"));
  Add(Hypertension());
  Add(CarePlan());
  Add(Consent("active", "2026-10-15"));
  Add(Encounter({.id = "a", .start = "2026-10-10T10:00:00Z", .minutes = 20}));
  Add(Encounter({.id = "b", .start = "2026-10-20T10:00:00Z", .minutes = 25}));
  PatientMonth r = Eval();
  EXPECT_EQ(r.consent, ConsentState::kActive);
  EXPECT_EQ(r.minutes.clinical_staff, 45);
  EXPECT_EQ(r.billable_minutes.clinical_staff, 25);
  EXPECT_EQ(Codes(r), "99490x1");
  ASSERT_EQ(r.billing[0].encounters.size(), 1u);
  EXPECT_EQ(r.billing[0].encounters[0], "Encounter/b");
  EXPECT_EQ(r.encounters[0].reason, "before-consent");
}

TEST_F(EngineTest, RevocationTakesEffectAtTheEndOfTheMonth) {
  Add(Diabetes("dm"));
  Add(Hypertension());
  Add(CarePlan());
  Add(Consent("inactive", "2025-01-15", "2026-10-14"));
  Add(Encounter({.id = "a", .start = "2026-10-03T10:00:00Z", .minutes = 25}));
  Add(Encounter({.id = "b", .start = "2026-11-03T10:00:00Z", .minutes = 25}));
  EXPECT_EQ(Eval("2026-10").consent, ConsentState::kActive);
  EXPECT_EQ(Codes(Eval("2026-10")), "99490x1");
  PatientMonth nov = Eval("2026-11");
  EXPECT_EQ(nov.consent, ConsentState::kRevoked);
  EXPECT_TRUE(Blocked(nov, "consent-revoked"));
  EXPECT_TRUE(nov.billing.empty());
}

TEST_F(EngineTest, ConsentStates) {
  auto state = [&](const std::string& consent) {
    facts_ = FactStore();
    Add(Diabetes("dm"));
    if (!consent.empty()) Add(consent);
    return Eval().consent;
  };
  EXPECT_EQ(state(""), ConsentState::kNone);
  EXPECT_EQ(state(Consent("active")), ConsentState::kActive);
  EXPECT_EQ(state(Consent("draft")), ConsentState::kNone);
  EXPECT_EQ(state(Consent("proposed")), ConsentState::kNone);
  EXPECT_EQ(state(Consent("rejected")), ConsentState::kRevoked);
  EXPECT_EQ(state(Consent("inactive")), ConsentState::kRevoked);  // revoked at an unknown date
  EXPECT_EQ(state(Consent("active", "2025-01-01", "2026-09-30")), ConsentState::kRevoked);
  EXPECT_EQ(state(Consent("active", "2026-11-02")), ConsentState::kNone);  // starts later
  // Another category (not the CCM consent code) does not count.
  std::string other = Consent("active");
  other.replace(other.find("59284-0"), 7, "64292-6");
  EXPECT_EQ(state(other), ConsentState::kNone);
}

// ---- rules 5 and 9: care plan -------------------------------------------------------------------

TEST_F(EngineTest, DraftPlanDoesNotUnlockBilling) {
  Add(Diabetes("dm"));
  Add(Hypertension());
  Add(Consent());
  Add(CarePlan("draft"));
  Add(Encounter({.id = "a", .start = "2026-10-03T10:00:00Z", .minutes = 30}));
  PatientMonth r = Eval();
  EXPECT_EQ(r.care_plan, CarePlanState::kDraft);
  EXPECT_TRUE(Blocked(r, "no-active-care-plan"));
  EXPECT_FALSE(Blocked(r, "below-threshold"));
  EXPECT_TRUE(r.billing.empty());
  EXPECT_EQ(r.expected_payment, 0);
}

TEST_F(EngineTest, CarePlanCompletenessAndReview) {
  Add(Diabetes("dm"));
  Add(CarePlan(
      "active",
      R"(,"meta":{"lastUpdated":"2024-01-01T00:00:00Z"},"addresses":[{"reference":"Condition/dm"}],)"
      R"("goal":[{"reference":"Goal/g"}],"activity":[{"reference":{"reference":"MedicationRequest/m"}},)"
      R"({"detail":{"code":{"coding":[{"system":"urn:ccm-gateway:care-plan-element","code":"community-resources"}]},"status":"in-progress"}}])"));
  PatientMonth r = Eval();
  EXPECT_EQ(r.care_plan, CarePlanState::kActive);
  EXPECT_EQ(r.care_plan_reference, "CarePlan/cp1");
  EXPECT_EQ(r.care_plan_gaps, (std::vector<std::string>{"care-coordination", "review-schedule",
                                                        "symptom-management", "expected-outcome"}));
  EXPECT_TRUE(r.care_plan_stale);  // not revised in the 12 months before the end of October 2026
  config_.rules.care_plan_review_months = 36;
  EXPECT_FALSE(Eval().care_plan_stale);
}

TEST_F(EngineTest, CompletedPlanStillCountsForTheMonthsItCovered) {
  Add(Diabetes("dm"));
  Add(CarePlan("completed", "", "cp2", R"({"start":"2025-01-01","end":"2026-10-20"})"));
  EXPECT_EQ(Eval("2026-10").care_plan, CarePlanState::kActive);
  EXPECT_EQ(Eval("2026-11").care_plan, CarePlanState::kMissing);
}

// ---- robustness -----------------------------------------------------------------------------

TEST_F(EngineTest, UnknownModifierExtensionLeavesTheResourceOut) {
  Eligible();
  Add(Encounter({.id = "m",
                 .start = "2026-10-03T10:00:00Z",
                 .minutes = 30,
                 .extra = R"(,"modifierExtension":[{"url":"urn:x","valueBoolean":true}])"}));
  PatientMonth r = Eval();
  EXPECT_EQ(r.minutes.clinical_staff, 0);
  bool reported = std::any_of(r.issues.begin(), r.issues.end(), [](const fhir::Issue& i) {
    return i.path == "Encounter.modifierExtension";
  });
  EXPECT_TRUE(reported);
}

TEST_F(EngineTest, EveryPatientWithClinicalDataIsReported) {
  Add(R"({"resourceType":"Patient","id":"only-demographics"})");
  Add(Encounter({.id = "w", .start = "2026-10-03T10:00:00Z", .minutes = 30, .code = "99213"}));
  auto results = Evaluate(facts_, *YearMonth::Parse("2026-10"), config_);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].patient, "Patient/p1");
  EXPECT_EQ(results[0].program, Program::kNone);
  EXPECT_TRUE(Blocked(results[0], "not-eligible"));
  EXPECT_TRUE(Blocked(results[0], "no-consent"));
}

// ---- fixes found in review ---------------------------------------------------------------------

TEST_F(EngineTest, MixedPoolsAreFlooredOnceFromTheSummedSeconds) {
  Eligible();
  Add(Encounter({.id = "a", .start = "2026-10-05T10:00:00Z", .minutes = 10.5}));
  Add(Encounter({.id = "b", .start = "2026-10-06T10:00:00Z", .minutes = 9.5, .code = "99491"}));
  PatientMonth r = Eval();
  EXPECT_EQ(r.minutes.clinical_staff, 10);
  EXPECT_EQ(r.minutes.practitioner, 9);
  EXPECT_EQ(Codes(r), "99490x1");  // 1200 s of care management in all
}

TEST_F(EngineTest, SamePerformersOverlapCountsOnceAcrossPools) {
  Eligible();
  Add(Encounter({.id = "a", .start = "2026-10-05T10:00:00Z", .minutes = 20, .code = "99491"}));
  Add(Encounter({.id = "b", .start = "2026-10-05T10:00:00Z", .minutes = 20}));
  PatientMonth r = Eval();
  EXPECT_EQ(r.minutes.clinical_staff + r.minutes.practitioner, 20);
  EXPECT_EQ(Codes(r), "99490x1");
}

TEST_F(EngineTest, TimeIsCutOffAtDeath) {
  Eligible();
  Add(R"({"resourceType":"Patient","id":"p1","deceasedDateTime":"2026-10-10T12:00:00Z"})");
  Add(Encounter({.id = "a", .start = "2026-10-10T11:45:00Z", .minutes = 25}));
  PatientMonth r = Eval();
  EXPECT_EQ(r.minutes.clinical_staff, 15);
  EXPECT_TRUE(r.billing.empty());
  EXPECT_EQ(std::count(r.notes.begin(), r.notes.end(), "died-this-month"), 1);
  PatientMonth before = Eval("2026-09");  // died after that month: no note
  EXPECT_EQ(std::count(before.notes.begin(), before.notes.end(), "died-this-month"), 0);
}

TEST_F(EngineTest, UnreadableValuesAreReadTheSafeWay) {
  // A deceasedDateTime without a time-zone offset is invalid: dead, date unknown.
  Eligible();
  Add(R"({"resourceType":"Patient","id":"p1","deceasedDateTime":"1990-05-01T00:00:00"})");
  EXPECT_TRUE(Blocked(Eval(), "deceased"));
  // A verification status under the STU3 system could say "refuted": the condition is not counted.
  facts_ = FactStore();
  Add(Hypertension());
  Add(Diabetes(
      "dm",
      R"(,"verificationStatus":{"coding":[{"system":"http://hl7.org/fhir/condition-ver-status","code":"refuted"}]})"));
  EXPECT_EQ(Eval().program, Program::kPcm);
  // A consent end that is not a date: no longer in effect.
  facts_ = FactStore();
  Add(Diabetes("dm"));
  Add(Consent("active", "2025-01-15", "2026-09-31"));
  EXPECT_EQ(Eval().consent, ConsentState::kRevoked);
  // An abatement date that is not a date: abated at an unknown date, so not counted.
  facts_ = FactStore();
  Add(Hypertension());
  Add(Diabetes("dm", R"(,"abatementDateTime":"2020-13-01")"));
  EXPECT_EQ(Eval().program, Program::kPcm);
  // A provision.period.start that is not a date: dateTime does not stand in for it.
  facts_ = FactStore();
  Add(Diabetes("dm"));
  std::string bad_start = Consent("active", "2026-10-32");
  bad_start.replace(bad_start.find("\"patient\""), 0, R"("dateTime":"2025-01-01",)");
  Add(bad_start);
  EXPECT_EQ(Eval().consent, ConsentState::kNone);
  // A provision type that is not permit/deny is not a permit.
  facts_ = FactStore();
  Add(Diabetes("dm"));
  std::string odd = Consent("active");
  odd.replace(odd.find("\"permit\""), 8, "\"Permit\"");
  Add(odd);
  EXPECT_NE(Eval().consent, ConsentState::kActive);
}

TEST_F(EngineTest, OnlyPerformingParticipantsAreWhoseTimeItIs) {
  Eligible();
  config_.practice.billing_practitioner_refs.insert("Practitioner/md");
  Add(Encounter(
      {.id = "a",
       .start = "2026-10-05T10:00:00Z",
       .minutes = 30,
       .performer =
           R"({"reference":"Practitioner/rn"}},{"type":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"REF"}]}],"individual":{"reference":"Practitioner/md"})"}));
  PatientMonth r = Eval();
  EXPECT_EQ(r.minutes.practitioner, 0);
  EXPECT_EQ(r.minutes.clinical_staff, 30);
  EXPECT_EQ(r.encounters[0].performer, "Practitioner/rn");
}

TEST_F(EngineTest, BilledUnitsTraceToTheirBillableTime) {
  Add(Diabetes("dm"));
  Add(Hypertension());
  Add(CarePlan());
  Add(Consent("active", "2026-10-15T10:10:00Z"));
  Add(Encounter({.id = "a", .start = "2026-10-15T10:00:00Z", .minutes = 20}));
  Add(Encounter({.id = "b", .start = "2026-10-15T10:10:00Z", .minutes = 20}));
  PatientMonth r = Eval();
  EXPECT_EQ(r.minutes.clinical_staff, 30);           // union of both
  EXPECT_EQ(r.billable_minutes.clinical_staff, 20);  // b alone
  ASSERT_EQ(Codes(r), "99490x1");
  EXPECT_EQ(r.billing[0].encounters, std::vector<std::string>{"Encounter/b"});
  EXPECT_EQ(r.encounters[1].billable_micros, 20 * 60'000'000LL);
  EXPECT_EQ(r.encounters[1].counted_micros, 10 * 60'000'000LL);
}

TEST_F(EngineTest, ImplausiblyLongEncountersAreNotCounted) {
  Eligible();
  Add(R"({"resourceType":"Encounter","id":"day","status":"finished","class":{"code":"VR"},)"
      R"("type":[{"coding":[{"system":"http://www.ama-assn.org/go/cpt","code":"99491"}]}],)"
      R"("subject":{"reference":"Patient/p1"},"period":{"start":"2026-10-05T10:00:00Z"},)"
      R"("length":{"value":1,"system":"http://unitsofmeasure.org","code":"d"}})");
  PatientMonth r = Eval();
  EXPECT_EQ(r.minutes.practitioner, 0);
  EXPECT_EQ(r.encounters[0].reason, "implausible-duration");
  config_.rules.max_encounter_minutes = 0;  // check disabled
  EXPECT_EQ(Eval().minutes.practitioner, 1440);
}

TEST_F(EngineTest, SameVersionIdLaterLastUpdatedWinsInAnyOrder) {
  const std::string older =
      Encounter({.id = "e",
                 .start = "2026-10-05T10:00:00Z",
                 .minutes = 40,
                 .status = "entered-in-error",
                 .extra = R"(,"meta":{"versionId":"2","lastUpdated":"2026-10-06T00:00:00Z"})"});
  const std::string newer =
      Encounter({.id = "e",
                 .start = "2026-10-05T10:00:00Z",
                 .minutes = 40,
                 .extra = R"(,"meta":{"versionId":"2","lastUpdated":"2026-10-07T00:00:00Z"})"});
  for (bool newer_first : {false, true}) {
    facts_ = FactStore();
    Eligible();
    Add(newer_first ? newer : older);
    Add(newer_first ? older : newer);
    EXPECT_EQ(Eval().minutes.clinical_staff, 40) << newer_first;
  }
}

TEST_F(EngineTest, DateOnlyValuesAreDaysInThePracticeZone) {
  auto tz = fhir::LocateZone("America/New_York");
  ASSERT_TRUE(tz);
  config_.practice.time_zone = *tz;  // before Add: facts are read in the practice's zone
  Add(Diabetes("dm"));
  Add(Hypertension());
  Add(CarePlan());
  Add(Consent("active", "2026-10-15"));  // from 04:00Z (midnight in New York)
  Add(Encounter({.id = "a", .start = "2026-10-15T03:30:00Z", .minutes = 25}));  // Oct 14, 23:30
  Add(Encounter({.id = "b", .start = "2026-10-15T04:30:00Z", .minutes = 25}));
  PatientMonth r = Eval();
  EXPECT_EQ(r.billable_minutes.clinical_staff, 25);
  EXPECT_EQ(r.encounters[0].reason, "before-consent");
}

TEST_F(EngineTest, ProposalsAndRevokedPlansDoNotUnlockBilling) {
  Add(Diabetes("dm"));
  std::string proposal = CarePlan("active");
  proposal.replace(proposal.find("\"plan\""), 6, "\"proposal\"");
  Add(proposal);
  EXPECT_EQ(Eval().care_plan, CarePlanState::kMissing);
  facts_ = FactStore();
  Add(Diabetes("dm"));
  Add(CarePlan("revoked"));
  EXPECT_EQ(Eval().care_plan, CarePlanState::kMissing);
}

TEST_F(EngineTest, PractitionerFamilyThresholdsAndMissingFees) {
  auto codes = [&](std::int64_t own) {
    std::string out;
    for (const auto& l : ChooseCodes(Program::kCcm, {0, own}, own, false, config_)) {
      out += fmt::format("{}{}x{}", out.empty() ? "" : " ", l.code, l.units);
    }
    return out;
  };
  // Staff codes may use the practitioner's time; the better-paying family wins.
  EXPECT_EQ(codes(59), "99490x1 99439x1");  // $106.42 vs 99491 $82.16
  EXPECT_EQ(codes(89), "99490x1 99439x2");  // $152.35 vs 99491+99437 $139.74
  EXPECT_EQ(codes(90), "99491x1 99437x2");  // $197.32
  // Without a rate the line is still chosen on time, its amount unknown, and noted.
  config_.fee_schedule.rates.erase("99490");
  config_.fee_schedule.rates.erase("99439");
  config_.fee_schedule.rates.erase("99491");
  config_.fee_schedule.rates.erase("99437");
  Eligible();
  Add(Encounter({.id = "a", .start = "2026-10-05T10:00:00Z", .minutes = 25}));
  PatientMonth r = Eval();
  ASSERT_EQ(Codes(r), "99490x1");
  EXPECT_FALSE(r.billing[0].amount.has_value());
  EXPECT_EQ(r.expected_payment, 0);
  EXPECT_EQ(std::count(r.notes.begin(), r.notes.end(), "no-fee-for-99490"), 1);
}

TEST_F(EngineTest, CodeInServiceTypeAndPerformerThroughPractitionerRole) {
  Eligible();
  config_.practice.billing_practitioner_npis.insert("9999999991");
  Add(R"({"resourceType":"Practitioner","id":"md","identifier":[{"system":"http://hl7.org/fhir/sid/us-npi","value":"9999999991"}]})");
  Add(R"({"resourceType":"PractitionerRole","id":"md-role","practitioner":{"reference":"Practitioner/md"}})");
  Add(R"({"resourceType":"Encounter","id":"s","status":"finished","class":{"code":"VR"},)"
      R"("serviceType":{"coding":[{"system":"http://www.ama-assn.org/go/cpt","code":"99490"}]},)"
      R"("subject":{"reference":"Patient/p1"},"participant":[{"individual":{"reference":"PractitionerRole/md-role"}}],)"
      R"("period":{"start":"2026-10-05T10:00:00Z","end":"2026-10-05T10:31:00Z"}})");
  PatientMonth r = Eval();
  EXPECT_EQ(r.minutes.practitioner, 31);
  EXPECT_EQ(Codes(r), "99491x1");
}

TEST_F(EngineTest, PeriodOnsetAndAbatementAndStatusesWithoutDates) {
  auto program_with = [&](const std::string& extra) {
    facts_ = FactStore();
    Add(Hypertension());
    Add(Diabetes("dm", extra));
    return Eval().program;
  };
  EXPECT_EQ(program_with(R"(,"onsetPeriod":{"start":"2026-11-02"})"), Program::kPcm);
  EXPECT_EQ(program_with(R"(,"abatementPeriod":{"start":"2026-01-01","end":"2026-02-01"})"),
            Program::kPcm);
  EXPECT_EQ(program_with(
                R"(,"abatementAge":{"value":40,"system":"http://unitsofmeasure.org","code":"a"})"),
            Program::kPcm);
  EXPECT_EQ(program_with(R"(,"abatementBoolean":false)"), Program::kCcm);
  EXPECT_EQ(program_with(R"(,"abatementDateTime":"2026-11-15")"), Program::kCcm);
  // ICD-10-CM without the dot is the same category as with it.
  facts_ = FactStore();
  Add(Diabetes("dm"));
  Add(R"({"resourceType":"Condition","id":"x","code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"E119"}]},"subject":{"reference":"Patient/p1"}})");
  EXPECT_EQ(Eval().chronic_conditions.size(), 1u);
}

TEST_F(EngineTest, CarePlanPeriodAndStatusDecideTheMonth) {
  auto plan_state = [&](const std::string& status, const std::string& period) {
    facts_ = FactStore();
    Add(Diabetes("dm"));
    Add(CarePlan(status, "", "cp", period));
    return Eval().care_plan;
  };
  EXPECT_EQ(plan_state("active", R"({"start":"2026-10-31"})"), CarePlanState::kActive);
  EXPECT_EQ(plan_state("active", R"({"start":"2026-11-01"})"), CarePlanState::kMissing);
  EXPECT_EQ(plan_state("active", R"({"start":"2025-01-01","end":"2026-09-30"})"),
            CarePlanState::kMissing);
  EXPECT_EQ(plan_state("on-hold", R"({"start":"2025-01-01"})"), CarePlanState::kMissing);
  EXPECT_EQ(plan_state("draft", R"({"start":"2025-01-01"})"), CarePlanState::kDraft);
  // An active plan beside a draft one: active wins.
  facts_ = FactStore();
  Add(Diabetes("dm"));
  Add(CarePlan("draft", "", "cp-draft"));
  Add(CarePlan("active", "", "cp-active"));
  PatientMonth r = Eval();
  EXPECT_EQ(r.care_plan, CarePlanState::kActive);
  EXPECT_EQ(r.care_plan_reference, "CarePlan/cp-active");
}

TEST(YearMonthTest, ParsesOnlyYyyyMm) {
  EXPECT_EQ(YearMonth::Parse("2026-10")->ToString(), "2026-10");
  for (const char* bad : {"2026-13", "2026-00", "2026-1", "26-10", "2026/10", "2026-10-01", ""}) {
    EXPECT_FALSE(YearMonth::Parse(bad)) << bad;
  }
}

}  // namespace
}  // namespace ccm::gateway
