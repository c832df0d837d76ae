// IssueList keeps exact totals while storing only the first issues of each kind.
#include "fhir/issues.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ccm::fhir {
namespace {

Issue BadLine(std::size_t line, std::size_t column) {
  return Issue{
      Severity::kError, IssueCode::kStructure, "",
      fmt::format("invalid JSON: line 1, column {}: Missing a comma; line skipped", column),
      fmt::format("big.ndjson:{}", line)};
}

TEST(IssueListTest, KindsIgnoreIndicesDigitsAndQuotedValues) {
  Issue a{Severity::kError, IssueCode::kCodeInvalid, "Encounter.type[0].coding[3].code",
          "The value 'foo' is not in value set 12", "a.ndjson:1"};
  Issue b{Severity::kError, IssueCode::kCodeInvalid, "Encounter.type[2].coding[0].code",
          "The value 'barbaz' is not in value set 345", "b.ndjson:9"};
  EXPECT_EQ(IssueKind(a), IssueKind(b));
  Issue other_path = b;
  other_path.path = "Encounter.status";
  EXPECT_NE(IssueKind(a), IssueKind(other_path));
  Issue other_severity = b;
  other_severity.severity = Severity::kWarning;
  EXPECT_NE(IssueKind(a), IssueKind(other_severity));
  Issue other_code = b;
  other_code.code = IssueCode::kValue;
  EXPECT_NE(IssueKind(a), IssueKind(other_code));
  Issue other_text = b;
  other_text.message = "The value 'foo' is too long";
  EXPECT_NE(IssueKind(a), IssueKind(other_text));
}

TEST(IssueListTest, KeepsTheFirstOfEachKindAndCountsAllExactly) {
  IssueList list(IssueLimits{.per_kind = 3, .kinds = 10});
  for (std::size_t i = 1; i <= 1000; ++i) list.Add(BadLine(i, i % 50));
  list.Add(Severity::kWarning, IssueCode::kNotSupported, "Patient.foo", "unknown element 'foo'",
           "p.ndjson:1");
  for (std::size_t i = 1; i <= 5; ++i) {
    list.Add(Severity::kWarning, IssueCode::kNotSupported, "Patient.bar",
             fmt::format("unknown element 'bar{}'", i), "p.ndjson:2");
  }
  EXPECT_EQ(list.total(), 1006u);
  EXPECT_EQ(list.error_count(), 1000u);
  EXPECT_EQ(list.warning_count(), 6u);
  EXPECT_TRUE(list.has_errors());
  ASSERT_EQ(list.size(), 3u + 1u + 3u);
  EXPECT_EQ(list.omitted_count(), 999u);
  EXPECT_EQ(list.items()[0].location, "big.ndjson:1");
  EXPECT_EQ(list.items()[2].location, "big.ndjson:3");
  auto omitted = list.omitted();
  ASSERT_EQ(omitted.size(), 2u);
  EXPECT_EQ(omitted[0].after, 2u);
  EXPECT_EQ(omitted[0].count, 997u);
  EXPECT_EQ(omitted[1].after, 6u);
  EXPECT_EQ(omitted[1].count, 2u);

  std::vector<std::string> lines = FormatIssueLines(list);
  ASSERT_EQ(lines.size(), 9u);
  EXPECT_EQ(lines[3], "... and 997 more like this");
  EXPECT_EQ(lines[4], "p.ndjson:1: warning: Patient.foo: unknown element 'foo'");
  EXPECT_EQ(lines[8], "... and 2 more like this");
}

TEST(IssueListTest, KindsBeyondTheLimitAreOnlyCounted) {
  IssueList list(IssueLimits{.per_kind = 1, .kinds = 2});
  for (int i = 0; i < 10; ++i) {
    list.Add(Severity::kWarning, IssueCode::kStructure, fmt::format("Patient.x{}", i), "unknown");
  }
  list.Add(Severity::kFatal, IssueCode::kInvalid, "Patient.y", "bad");
  EXPECT_EQ(list.size(), 2u);
  EXPECT_EQ(list.total(), 11u);
  EXPECT_EQ(list.error_count(), 1u);
  auto omitted = list.omitted();
  ASSERT_EQ(omitted.size(), 1u);
  EXPECT_EQ(omitted[0].after, OmittedIssues::kOtherKinds);
  EXPECT_EQ(omitted[0].count, 9u);
  EXPECT_EQ(omitted[0].severity, Severity::kFatal);
  EXPECT_EQ(FormatIssueLines(list).back(), "... and 9 more issue(s) of other kinds (not listed)");
}

TEST(IssueListTest, AppendCarriesOmittedCountsAndSmallListsComputeNoKind) {
  IssueList small;  // default limits: nothing is left out of a short list
  for (int i = 0; i < 50; ++i) small.Add(BadLine(1, 2));
  EXPECT_EQ(small.size(), 50u);
  EXPECT_TRUE(small.omitted().empty());

  IssueList big(IssueLimits{.per_kind = 2, .kinds = 10});
  for (std::size_t i = 1; i <= 20; ++i) big.Add(BadLine(i, 3));
  IssueList all(IssueLimits{.per_kind = 5, .kinds = 10});
  all.Append(big);
  EXPECT_EQ(all.total(), 20u);
  EXPECT_EQ(all.error_count(), 20u);
  EXPECT_EQ(all.size(), 5u);
  ASSERT_EQ(all.omitted().size(), 1u);
  EXPECT_EQ(all.omitted()[0].count, 15u);

  IssueList unlimited(IssueLimits::Unlimited());
  unlimited.Append(big);
  EXPECT_EQ(unlimited.size(), 20u) << "omitted issues come back as copies of their kind";
}

TEST(IssueListTest, OperationOutcomeSaysHowManyWereLeftOut) {
  IssueList list(IssueLimits{.per_kind = 2, .kinds = 10});
  for (std::size_t i = 1; i <= 7; ++i) list.Add(BadLine(i, 4));
  json::Value oo = ToOperationOutcome(list);
  ASSERT_EQ(oo["issue"].size(), 3u);
  EXPECT_EQ(oo["issue"][2]["severity"].str(), "error");
  EXPECT_EQ(oo["issue"][2]["code"].str(), "structure");
  EXPECT_EQ(oo["issue"][2]["diagnostics"].str(), "... and 5 more like this");
}

}  // namespace
}  // namespace ccm::fhir
