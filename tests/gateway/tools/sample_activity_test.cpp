#include "gateway/tools/sample_activity.h"

#include <gtest/gtest.h>

#include "fhir/reader.h"
#include "fhir/validate.h"
#include "test_util.h"

namespace ccm::gateway {
namespace {

using ccm::testing::ReadFile;
using ccm::testing::SourceDir;
using ccm::testing::TempDir;

ActivityOptions SampleOptions(const std::filesystem::path& out) {
  ActivityOptions o;
  o.inputs = {SourceDir() / "samples/synthea-10pt", SourceDir() / "samples/synthea-g10-2pt"};
  o.year = 2026;
  o.month = 10;
  o.seed = 1;
  o.utc_offset = "-05:00";
  o.out_dir = out;
  return o;
}

TEST(GenerateActivityTest, ReproducesCommittedSamples) {
  TempDir dir;
  fhir::IssueList issues;
  auto s = GenerateActivity(SampleOptions(dir.path()), issues);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_FALSE(issues.has_errors());
  EXPECT_EQ(s->patients, 11u);  // 10 + 1 living patients
  for (const char* f : {"Encounter.ccm.ndjson", "Consent.ccm.ndjson", "CarePlan.ccm.ndjson",
                        "Practitioner.ccm.ndjson"}) {
    EXPECT_EQ(ReadFile(dir / f), ReadFile(SourceDir() / "samples/activity" / f))
        << f << " differs: regenerate with the command in samples/activity/README.md";
  }
}

TEST(GenerateActivityTest, DependsOnSeedAndIsValidFhir) {
  TempDir a, b;
  fhir::IssueList issues;
  auto oa = SampleOptions(a.path());
  auto ob = SampleOptions(b.path());
  ob.seed = 2;
  ASSERT_TRUE(GenerateActivity(oa, issues));
  ASSERT_TRUE(GenerateActivity(ob, issues));
  EXPECT_NE(ReadFile(a / "Encounter.ccm.ndjson"), ReadFile(b / "Encounter.ccm.ndjson"));
  std::size_t n = 0;
  fhir::ResourceReader reader(
      [&](fhir::json::Value&& r, const fhir::SourceLocation& w) {
        ++n;
        fhir::IssueList found = fhir::Validate(r);
        for (const fhir::Issue& i : found)
          ADD_FAILURE() << w.ToString() << ": " << fhir::FormatIssue(i);
        return true;
      },
      [](const fhir::Issue& i) {
        ADD_FAILURE() << fhir::FormatIssue(i);
        return true;
      });
  ASSERT_TRUE(reader.Read(a.path()));
  EXPECT_GT(n, 30u);
}

TEST(GenerateActivityTest, RejectsBadMonthAndMissingInput) {
  TempDir dir;
  fhir::IssueList issues;
  auto o = SampleOptions(dir.path());
  o.month = 13;
  EXPECT_FALSE(GenerateActivity(o, issues));
  o = SampleOptions(dir.path());
  o.inputs = {"/nonexistent/ccm"};
  auto r = GenerateActivity(o, issues);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(Errc::kNotFound));
}

}  // namespace
}  // namespace ccm::gateway
