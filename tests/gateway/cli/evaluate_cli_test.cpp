// `ccm-gateway evaluate` as a user runs it: the real binary on the bundled samples and on
// hand-made inputs, plus the pipeline's projection against a full parse.
#include <sys/wait.h>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <set>
#include <string>

#include "fhir/json.h"
#include "fhir/reader.h"
#include "gateway/ccm/engine.h"
#include "gateway/ccm/report.h"
#include "gateway/ingest/collect.h"
#include "test_util.h"

namespace ccm::gateway {
namespace {

using ccm::testing::BinaryPath;
using ccm::testing::ReadFile;
using ccm::testing::SourceDir;
using ccm::testing::TempDir;
using ccm::testing::WriteFile;
using fhir::json::Value;

using CliRun = ccm::testing::GatewayRun;

CliRun Evaluate(const std::string& args) {
  return ccm::testing::RunGatewayBinary("evaluate " + args, /*separate_stderr=*/true);
}

std::string Samples() {
  auto s = SourceDir() / "samples";
  return fmt::format("{} {} {}", (s / "synthea-10pt").string(), (s / "synthea-g10-2pt").string(),
                     (s / "activity").string());
}

std::string SampleConfig() { return (SourceDir() / "config" / "sample-practice.json").string(); }

std::vector<Value> Lines(const std::string& ndjson) {
  std::vector<Value> out;
  std::size_t pos = 0;
  while (pos < ndjson.size()) {
    std::size_t nl = ndjson.find('\n', pos);
    auto v = fhir::json::Parse(ndjson.substr(pos, nl - pos));
    EXPECT_TRUE(v) << ndjson.substr(pos, nl - pos);
    if (v) out.push_back(std::move(*v));
    pos = nl == std::string::npos ? ndjson.size() : nl + 1;
  }
  return out;
}

std::string Codes(const Value& record) {
  std::string out;
  for (const Value& l : record["billing"].array()) {
    out +=
        fmt::format("{}{}x{}", out.empty() ? "" : " ", l["code"].str(), l["units"].number_text());
  }
  return out;
}

bool Has(const Value& array, std::string_view s) {
  for (const Value& v : array.array()) {
    if (v.str() == s) return true;
  }
  return false;
}

// The committed golden output: reviewed by hand against samples/activity/README.md when it
// changes (regenerate with the command in the failure message).
TEST(EvaluateCliTest, SamplesMatchTheReviewedGoldenReport) {
  CliRun r =
      Evaluate(fmt::format("--month 2026-10 --config {} --input {}", SampleConfig(), Samples()));
  ASSERT_EQ(r.status, 0) << r.err;
  auto golden = SourceDir() / "tests" / "gateway" / "golden" / "evaluate-2026-10.ndjson";
  EXPECT_EQ(r.out, ReadFile(golden))
      << "regenerate: build/ccm-gateway evaluate --month 2026-10 --config "
         "config/sample-practice.json --input samples/synthea-10pt samples/synthea-g10-2pt "
         "samples/activity --out "
      << golden.string() << " -- and review the difference";
  EXPECT_NE(r.err.find("15 patient(s)"), std::string::npos) << r.err;
}

// Each sample scenario's documented outcome (samples/activity/README.md), derived here from the
// scenario's minutes and the patient's program -- independently of the golden file.
TEST(EvaluateCliTest, EverySampleScenarioBillsWhatItsRulesSay) {
  // Scenario tag per patient from the generated encounters, consents and care plans.
  std::map<std::string, std::string> scenario;
  fhir::ResourceReader reader(
      [&](Value&& r, const fhir::SourceLocation&) {
        std::string_view subject = r["subject"]["reference"].str();
        if (subject.empty()) subject = r["patient"]["reference"].str();
        for (const Value& t : r["meta"]["tag"].array()) {
          if (t["system"].str() == "urn:ccm-gateway:sample-scenario" && !subject.empty()) {
            scenario[std::string(subject)] = std::string(t["code"].str());
          }
        }
        return true;
      },
      [](const fhir::Issue&) { return true; });
  ASSERT_TRUE(reader.Read(SourceDir() / "samples" / "activity"));
  ASSERT_GE(scenario.size(), 8u);

  CliRun r =
      Evaluate(fmt::format("--month 2026-10 --config {} --input {}", SampleConfig(), Samples()));
  ASSERT_EQ(r.status, 0) << r.err;
  std::set<std::string> seen_scenarios;
  std::size_t billed_ccm = 0;
  for (const Value& rec : Lines(r.out)) {
    auto it = scenario.find(std::string(rec["patient"].str()));
    if (it == scenario.end()) continue;
    const std::string& s = it->second;
    const std::string_view program = rec["program"].str();
    SCOPED_TRACE(fmt::format("{} {} program={}", rec["patient"].str(), s, program));
    seen_scenarios.insert(s);
    if (program.empty()) {
      EXPECT_TRUE(Has(rec["blockedBy"], "not-eligible"));
      EXPECT_EQ(Codes(rec), "");
      continue;
    }
    const bool ccm = program == "CCM";
    std::string expected;
    if (s == "ccm-staff-45min") {
      expected = ccm ? "99490x1 99439x1" : "99426x1";
    } else if (s == "ccm-staff-19min") {
      EXPECT_TRUE(Has(rec["blockedBy"], "below-threshold"));
    } else if (s == "ccm-practitioner-35min") {
      EXPECT_EQ(rec["minutes"]["practitioner"].number_text(), "35");
      expected = ccm ? "99491x1" : "99424x1";
    } else if (s == "complex-ccm-95min") {
      // 95 min: 99487 + 99489 ($202.17) beats 99490 + 2 x 99439 ($152.35).
      expected = ccm ? "99487x1 99489x1" : "99426x1 99427x2";
    } else if (s == "ccm-consent-revoked") {
      // Revoked on the 14th: the opt-out takes effect at the end of the month.
      EXPECT_EQ(rec["consent"].str(), "active");
      expected = ccm ? "99490x1" : "";
    } else if (s == "ccm-overlapping-calls") {
      EXPECT_EQ(rec["minutes"]["clinicalStaff"].number_text(), "22");  // 15 + 15 - 7.5, floored
      expected = ccm ? "99490x1" : "";
    } else if (s == "ccm-no-consent") {
      EXPECT_TRUE(Has(rec["blockedBy"], "no-consent"));
    } else if (s == "ccm-draft-plan") {
      EXPECT_EQ(rec["carePlan"].str(), "draft");
      EXPECT_TRUE(Has(rec["blockedBy"], "no-active-care-plan"));
    }
    EXPECT_EQ(Codes(rec), expected);
    if (ccm && !expected.empty()) ++billed_ccm;
    // Every billed unit traces to billable encounters of this patient.
    for (const Value& line : rec["billing"].array()) {
      ASSERT_GT(line["encounters"].size(), 0u);
      for (const Value& e : line["encounters"].array()) {
        bool found = false;
        for (const Value& ev : rec["evidence"]["encounters"].array()) {
          found = found || (ev["reference"].str() == e.str() && ev["billable"].as_bool());
        }
        EXPECT_TRUE(found) << e.str();
      }
    }
  }
  EXPECT_EQ(seen_scenarios.size(), 8u);
  EXPECT_GE(billed_ccm, 4u);  // the demo practice bills several CCM paths
}

TEST(EvaluateCliTest, ThreadsAndFormatsAgree) {
  std::string base =
      fmt::format("--month 2026-10 --config {} --input {}", SampleConfig(), Samples());
  CliRun one = Evaluate(base + " --threads 1");
  CliRun two = Evaluate(base + " --threads 2 --format ndjson");
  ASSERT_EQ(one.status, 0);
  EXPECT_EQ(one.out, two.out);
  std::size_t records = Lines(one.out).size();

  CliRun csv = Evaluate(base + " --format csv");
  ASSERT_EQ(csv.status, 0);
  EXPECT_TRUE(csv.out.starts_with("patient,month,program,"));
  EXPECT_EQ(static_cast<std::size_t>(std::count(csv.out.begin(), csv.out.end(), '\n')),
            records + 1);

  CliRun table = Evaluate(base + " --format table");
  ASSERT_EQ(table.status, 0);
  EXPECT_NE(table.out.find("expected revenue"), std::string::npos);
  EXPECT_NE(table.out.find("eligible"), std::string::npos);

  TempDir tmp;
  CliRun to_file = Evaluate(base + " --out " + (tmp / "report.ndjson").string());
  ASSERT_EQ(to_file.status, 0);
  EXPECT_EQ(to_file.out, "");
  EXPECT_EQ(ReadFile(tmp / "report.ndjson"), one.out);

  // --out naming a device writes to it and never replaces it with a file.
  CliRun to_null = Evaluate(base + " --out /dev/null");
  EXPECT_EQ(to_null.status, 0);
  EXPECT_TRUE(std::filesystem::is_character_file("/dev/null"));
}

TEST(EvaluateCliTest, ProjectedParallelReadEqualsFullSequentialRead) {
  auto config = DefaultEngineConfig();
  ASSERT_TRUE(config);
  std::vector<std::filesystem::path> inputs = {SourceDir() / "samples"};
  FactStore projected;
  ASSERT_TRUE(CollectFacts(inputs, *config, projected, 2));
  FactStore full;
  fhir::ResourceReader reader(
      [&](Value&& r, const fhir::SourceLocation& where) {
        full.Add(r, where, *config);
        return true;
      },
      [](const fhir::Issue&) { return true; });
  ASSERT_TRUE(reader.Read(inputs[0]));
  auto month = YearMonth::Parse("2026-10");
  EXPECT_EQ(ToNdjson(gateway::Evaluate(projected, *month, *config), *config),
            ToNdjson(gateway::Evaluate(full, *month, *config), *config));
  EXPECT_EQ(projected.counts().kept, full.counts().kept);
}

TEST(EvaluateCliTest, PartialConfigOverridesOnlyItsKeys) {
  TempDir tmp;
  WriteFile(tmp / "c.json", R"({"practice": {"timeZone": "America/New_York"}})");
  CliRun r = Evaluate(
      fmt::format("--month 2026-10 --config {} --input {}", (tmp / "c.json").string(), Samples()));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("America/New_York"), std::string::npos);
  EXPECT_NE(r.err.find("fee schedule 2025"), std::string::npos);
}

TEST(EvaluateCliTest, ShippedConfigsLoad) {
  for (const char* name : {"example.json", "sample-practice.json"}) {
    auto c = LoadEngineConfig(SourceDir() / "config" / name);
    EXPECT_TRUE(c) << name << ": " << (c ? "" : c.error().message);
  }
}

TEST(EvaluateCliTest, ConfigErrorsNameFileKeyAndExpectation) {
  TempDir tmp;
  struct Case {
    std::string json, expected;
  };
  const Case cases[] = {
      {R"({"practice": {"timeZone": "America/NewYork"}})", "practice.timeZone: unknown IANA"},
      {R"({"practice": {"timezone": "UTC"}})", "practice.timezone: unknown key"},
      {R"({"practice": {"billingPractitioners": ["Dr Who"]}})", "practice.billingPractitioners[0]"},
      {R"({"billing": {"feeScheduleYear": 1999}})", "billing.feeScheduleYear"},
      {R"({"billing": {"feeScheduleYear": 2019}})", "no fee schedule for 2019"},
      {R"({"rules": {"carePlanReviewMonths": "12"}})",
       "rules.carePlanReviewMonths: expected a whole"},
      {R"({"mappings": {"chronicConditions": ["missing.json"]}})", "missing.json"},
      {R"({"practice": {"timeZone": "UTC",}, })", ""},  // trailing commas are accepted
      {R"({"practice": )", "c.json: line 1"},
      {R"({"practice": {"name": 7}})", "practice.name: expected a non-empty string"},
      {R"({"rules": {"maxUnits": {"99940": 1}}})", "rules.maxUnits.99940: not a CCM/PCM code"},
      {R"({"servr": {"port": 8080}})", "servr: unknown key"},
      {R"({"logging": {"serverDiagnostics": 1}})", "logging.serverDiagnostics: expected true"},
      {R"({"logging": {"serverDiagnostics": true}})", ""},
  };
  for (const auto& c : cases) {
    WriteFile(tmp / "c.json", c.json);
    CliRun r = Evaluate(fmt::format("--month 2026-10 --config {} --input {}",
                                    (tmp / "c.json").string(), Samples()));
    if (c.expected.empty()) {
      EXPECT_EQ(r.status, 0) << c.json << "\n" << r.err;
      continue;
    }
    EXPECT_EQ(r.status, 2) << c.json;
    EXPECT_NE(r.err.find((tmp / "c.json").string()), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(c.expected), std::string::npos) << c.json << "\n" << r.err;
    EXPECT_EQ(r.out, "");  // nothing half-written
  }
}

TEST(EvaluateCliTest, UsageAndInputErrors) {
  EXPECT_EQ(Evaluate("--input x").status, 2);  // --month missing
  CliRun bad_month = Evaluate(fmt::format("--month 2026-13 --input {}", Samples()));
  EXPECT_EQ(bad_month.status, 2);
  EXPECT_NE(bad_month.err.find("YYYY-MM"), std::string::npos);
  EXPECT_EQ(Evaluate(fmt::format("--month 2026-10 --format xml --input {}", Samples())).status, 2);
  EXPECT_EQ(Evaluate("--month 2026-10 --input /nonexistent/dir").status, 3);
}

TEST(EvaluateCliTest, BadLinesAreReportedAndTheRestIsEvaluated) {
  TempDir tmp;
  std::string good = ReadFile(SourceDir() / "samples" / "activity" / "Encounter.ccm.ndjson");
  WriteFile(tmp / "in" / "Encounter.ndjson", "{\"resourceType\":\"Encounter\",\n" + good);
  CliRun r = Evaluate(fmt::format("--month 2026-10 --input {}", (tmp / "in").string()));
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("Encounter.ndjson:1"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("invalid JSON"), std::string::npos) << r.err;
  EXPECT_GT(Lines(r.out).size(), 5u);  // the other patients are still evaluated
}

// Lines, entries and files that are not FHIR resources are named where they are, with the fix,
// skipped and never counted -- also a report of evaluate fed back as input, on the fast path
// (resourceType first, as bulk exports write it) and off it, on one thread and on several.
TEST(EvaluateCliTest, WhatIsNotAResourceIsNamedSkippedAndNotCounted) {
  TempDir tmp;
  CliRun clean = Evaluate(fmt::format("--month 2026-10 --config {} --input {} --out {}",
                                      SampleConfig(), Samples(), (tmp / "report.ndjson").string()));
  ASSERT_EQ(clean.status, 0) << clean.err;
  std::string report = ReadFile(tmp / "report.ndjson");
  std::size_t records = Lines(report).size();
  ASSERT_EQ(records, 15u);
  WriteFile(tmp / "in" / "fed-back.ndjson", report);
  WriteFile(tmp / "in" / "Typos.ndjson",
            "{\"resourceType\":\"patient\",\"id\":\"x1\"}\n"
            "{\"resourceType\":\"Encounters\",\"id\":\"x2\",\"subject\":{\"reference\":"
            "\"Patient/x1\"}}\n"
            "{\"id\":\"x3\",\"resourceType\":\"Procedures\"}\n");
  WriteFile(tmp / "in" / "bundle.json",
            R"({"resourceType":"Bundle","type":"collection","entry":[{"resource":)"
            R"({"resourceType":"Conditions","id":"c"}}]})");
  std::string in = (tmp / "in").string();
  for (int threads : {1, 4}) {
    CliRun r = Evaluate(fmt::format("--month 2026-10 --config {} --threads {} --input {} {}",
                                    SampleConfig(), threads, Samples(), in));
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_EQ(r.out, report) << "nothing of the bad input is evaluated";
    EXPECT_NE(r.err.find(in + "/Typos.ndjson:1: resourceType: \"patient\" is not an R4 resource "
                              "type (type names are case-sensitive); did you mean Patient?; line "
                              "skipped"),
              std::string::npos)
        << r.err;
    EXPECT_NE(r.err.find(in + "/Typos.ndjson:2: resourceType: \"Encounters\" is not an R4 "
                              "resource type; did you mean Encounter?"),
              std::string::npos)
        << r.err;
    EXPECT_NE(r.err.find(in + "/Typos.ndjson:3: resourceType: \"Procedures\""), std::string::npos)
        << r.err;
    EXPECT_NE(r.err.find(in + "/bundle.json:1: Bundle.entry[0].resource.resourceType: "
                              "\"Conditions\" is not an R4 resource type; did you mean Condition?"),
              std::string::npos)
        << r.err;
    for (std::size_t line = 1; line <= records; ++line) {
      EXPECT_NE(r.err.find(fmt::format("{}/fed-back.ndjson:{}: resourceType: missing: this looks "
                                       "like a ccm-gateway report record",
                                       in, line)),
                std::string::npos)
          << r.err;
    }
    // Counted as unreadable lines/entries, not as resources.
    std::size_t resources = clean.err.find(" resource(s) from ");
    ASSERT_NE(resources, std::string::npos) << clean.err;
    std::string count = clean.err.substr(clean.err.rfind(' ', resources - 1) + 1,
                                         resources - clean.err.rfind(' ', resources - 1) - 1);
    EXPECT_NE(r.err.find(fmt::format(" {} resource(s) from ", count)), std::string::npos)
        << count << "\n"
        << r.err;
    EXPECT_NE(r.err.find(fmt::format("{} unreadable line(s)/entr(ies)", records + 4)),
              std::string::npos)
        << r.err;
  }
}

}  // namespace
}  // namespace ccm::gateway
