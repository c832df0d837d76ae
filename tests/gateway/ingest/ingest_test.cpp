#include "gateway/ingest/ingest.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "fhir/validate.h"
#include "test_util.h"

namespace ccm::gateway {
namespace {

using ccm::testing::SharedData;
using ccm::testing::TempDir;
using ccm::testing::WriteFile;
using fhir::json::Parse;

fhir::json::Value J(std::string_view text) { return Parse(text).value(); }

IngestOptions Validating() {
  IngestOptions o;
  o.validate = [](const fhir::json::Value& r) { return fhir::Validate(r); };
  return o;
}

TEST(IngestTest, NewerVersionByVersionIdThenLastUpdated) {
  auto v1 = J(R"({"resourceType":"Patient","id":"a","meta":{"versionId":"9"}})");
  auto v10 = J(R"({"resourceType":"Patient","id":"a","meta":{"versionId":"10"}})");
  EXPECT_TRUE(IsNewerVersion(v10, v1));  // numerically, not as text ("10" < "9")
  EXPECT_FALSE(IsNewerVersion(v1, v10));
  // 09:30Z is later than 10:00+02:00 (= 08:00Z), although it sorts earlier as text.
  auto early = J(
      R"({"resourceType":"Patient","id":"a","meta":{"lastUpdated":"2026-01-01T10:00:00+02:00"}})");
  auto late =
      J(R"({"resourceType":"Patient","id":"a","meta":{"lastUpdated":"2026-01-01T09:30:00Z"}})");
  EXPECT_TRUE(IsNewerVersion(late, early));
  EXPECT_FALSE(IsNewerVersion(early, late));
  auto bare = J(R"({"resourceType":"Patient","id":"a"})");
  EXPECT_TRUE(IsNewerVersion(bare, early));  // cannot tell: the last seen wins
}

TEST(IngestTest, DuplicatesAcrossFilesKeepTheNewest) {
  TempDir dir;
  WriteFile(dir / "a.ndjson",
            R"({"resourceType":"Patient","id":"p","meta":{"versionId":"2"},"gender":"female"})"
            "\n");
  WriteFile(dir / "b.ndjson",
            R"({"resourceType":"Patient","id":"p","meta":{"versionId":"1"},"gender":"male"})"
            "\n"
            R"({"resourceType":"Patient","id":"q","gender":"male"})"
            "\n");
  ResourceStore store;
  auto report = Ingest({dir.path()}, Validating(), store);
  ASSERT_TRUE(report);
  EXPECT_EQ(store.size(), 2u);
  const StoredResource* p = store.Find("Patient", "p");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->resource["gender"].str(), "female");
  EXPECT_EQ(p->where.line, 1u);
  EXPECT_NE(p->where.file.find("a.ndjson"), std::string::npos);
  EXPECT_EQ(report->per_type.at("Patient").duplicates, 1u);
  EXPECT_EQ(report->skipped(), 0u);
}

TEST(IngestTest, InvalidResourcesAreSkippedAndExplained) {
  TempDir dir;
  WriteFile(dir / "enc.ndjson",
            R"({"resourceType":"Encounter","id":"ok","status":"finished","class":{"code":"AMB"}})"
            "\n"
            R"({"resourceType":"Encounter","id":"bad","status":"completed","class":{"code":"AMB"}})"
            "\n"
            R"({"resourceType":"Encounter","id":"bad2","status":"finished","class":{"code":"AMB"},)"
            R"("period":{"start":"2026-10-05T10:00:00Z","end":"2026-10-05T09:00:00Z"}})"
            "\n");
  ResourceStore store;
  auto report = Ingest({dir / "enc.ndjson"}, Validating(), store);
  ASSERT_TRUE(report);
  EXPECT_EQ(store.size(), 1u);
  EXPECT_EQ(report->invalid, 2u);
  EXPECT_EQ(report->skipped(), 2u);
  bool status_issue = false, period_issue = false;
  for (const fhir::Issue& i : report->issues) {
    std::string line = fhir::FormatIssue(i);
    if (line.find("enc.ndjson:2") != std::string::npos && i.path == "Encounter.status")
      status_issue = true;
    if (line.find("enc.ndjson:3") != std::string::npos && i.path.starts_with("Encounter.period")) {
      period_issue = true;
    }
  }
  EXPECT_TRUE(status_issue);
  EXPECT_TRUE(period_issue);
}

TEST(IngestTest, IdentityOnlyModeStillCountsDuplicates) {
  TempDir dir;
  WriteFile(dir / "a.ndjson",
            R"({"resourceType":"Patient","id":"p","meta":{"versionId":"1"},"gender":"male"})"
            "\n"
            R"({"resourceType":"Patient","id":"p","meta":{"versionId":"2"},"gender":"female"})"
            "\n");
  ResourceStore store;
  IngestOptions o = Validating();
  o.keep_resources = false;
  auto report = Ingest({dir.path()}, o, store);
  ASSERT_TRUE(report);
  EXPECT_EQ(report->per_type.at("Patient").duplicates, 1u);
  const StoredResource* p = store.Find("Patient", "p");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->resource["meta"]["versionId"].str(), "2");
  EXPECT_EQ(p->resource.find("gender"), nullptr);
}

TEST(IngestTest, StrictStopsAtTheFirstError) {
  TempDir dir;
  WriteFile(dir / "x.ndjson",
            "{\"resourceType\":\"Patient\",\"id\":\"a\"}\nnot json\n"
            "{\"resourceType\":\"Patient\",\"id\":\"b\"}\n");
  ResourceStore store;
  IngestOptions o = Validating();
  o.strict = true;
  auto report = Ingest({dir.path()}, o, store);
  ASSERT_TRUE(report);
  EXPECT_TRUE(report->stopped_early);
  EXPECT_EQ(store.size(), 1u);
}

TEST(IngestTest, SyntheaSamplesIngestCleanly) {
  ResourceStore store;
  auto report =
      Ingest({SharedData() / "fhir/synthea-bulk-10pt", SharedData() / "fhir/synthea-g10-2pt"},
             Validating(), store);
  ASSERT_TRUE(report);
  for (const fhir::Issue& i : report->issues) {
    EXPECT_FALSE(i.is_error()) << fhir::FormatIssue(i);
  }
  EXPECT_EQ(report->skipped(), 0u);
  EXPECT_EQ(report->per_type.at("Patient").read, 15u);
  EXPECT_EQ(report->per_type.at("Encounter").read, 1215u + 189u);
  std::size_t encounters = 0;
  store.ForEach("Encounter", [&](const StoredResource&) { ++encounters; });
  EXPECT_EQ(encounters, 1215u + 189u);
}

// A large export that is wrong on every line: the problems are counted exactly, but only the first
// of each kind are stored, so memory does not grow with the number of problems.
TEST(IngestTest, AnExportInvalidOnEveryLineKeepsBoundedIssuesAndExactTotals) {
  constexpr std::size_t kLines = 200'000;
  TempDir dir;
  std::string text;
  text.reserve(kLines * 90);
  for (std::size_t i = 0; i < kLines; ++i) {
    if (i % 4 == 3) {
      text += fmt::format("{{\"resourceType\":\"encounter\",\"id\":\"t{}\"}}\n", i);
    } else {
      text += fmt::format(
          "{{\"resourceType\":\"Encounter\",\"id\":\"e{}\",\"status\":\"completed\","
          "\"class\":{{\"code\":\"AMB\"}}}}\n",
          i);
    }
  }
  WriteFile(dir / "big.ndjson", text);
  std::size_t per_invalid = fhir::Validate(J(R"({"resourceType":"Encounter","id":"e","status":)"
                                             R"("completed","class":{"code":"AMB"}})"))
                                .error_count();
  ASSERT_GE(per_invalid, 1u);
  const std::size_t invalid = kLines / 4 * 3, mistyped = kLines / 4;

  ResourceStore store;
  IngestOptions o = Validating();
  o.keep_resources = false;
  auto report = Ingest({dir / "big.ndjson"}, o, store);
  ASSERT_TRUE(report);
  EXPECT_EQ(report->invalid, invalid);
  EXPECT_EQ(report->read.skipped, mistyped);
  EXPECT_EQ(report->skipped(), kLines);
  // Each invalid Encounter: its validation errors and the "skipped" note; each mistyped line one.
  EXPECT_EQ(report->issues.error_count(), invalid * (per_invalid + 1) + mistyped);
  EXPECT_EQ(report->issues.total(), report->issues.error_count());
  const std::size_t kinds = per_invalid + 2;
  EXPECT_LE(report->issues.size(), kinds * fhir::IssueLimits{}.per_kind);
  EXPECT_EQ(report->issues.size() + report->issues.omitted_count(), report->issues.total());
  EXPECT_EQ(store.size(), 0u);

  // The same through the binary: exit 1, one "... and K more like this" per kind, short output.
  auto r = ccm::testing::RunGatewayBinary("check --input " + (dir / "big.ndjson").string(), false);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find(fmt::format("... and {} more like this", mistyped - 100)),
            std::string::npos);
  EXPECT_LT(std::count(r.out.begin(), r.out.end(), '\n'), 2000);
  EXPECT_NE(r.out.find(fmt::format("{} error(s)", report->issues.error_count())), std::string::npos)
      << r.out.substr(r.out.size() - 400);
}

}  // namespace
}  // namespace ccm::gateway
