// The application layer called as a function, the way the HTTP service will call it: the
// workflows answer with structs, and what they answer is what the command line prints.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "gateway/app/evaluate_month.h"
#include "gateway/app/ledger_query.h"
#include "gateway/app/workflow.h"
#include "gateway/config/gateway_config.h"
#include "gateway/store/sqlite_state_store.h"
#include "test_util.h"

namespace ccm::gateway::app {
namespace {

using ccm::testing::ReadFile;
using ccm::testing::SampleInputs;
using ccm::testing::SourceDir;
using ccm::testing::TempDir;
using ccm::testing::WriteFile;

EvaluateMonthRequest SampleRequest(unsigned threads) {
  auto config = LoadGatewayConfig(SourceDir() / "config" / "sample-practice.json");
  EXPECT_TRUE(config) << config.error().message;
  EvaluateMonthRequest request;
  request.inputs = SampleInputs();
  request.month = *YearMonth::Parse("2026-10");
  if (config) request.engine = config->engine;
  request.threads = threads;
  return request;
}

// The reviewed golden report (tests/gateway/golden), which the CLI test also holds `evaluate`'s
// stdout to: the function and the command give the same bytes.
TEST(EvaluateMonthTest, SamplesAsAFunctionEqualTheCommandsGoldenReport) {
  auto report = EvaluateMonth(SampleRequest(1));
  ASSERT_TRUE(report) << report.error().message;
  EXPECT_EQ(RenderMonthReport(*report, ReportFormat::kNdjson),
            ReadFile(SourceDir() / "tests" / "gateway" / "golden" / "evaluate-2026-10.ndjson"));
  EXPECT_FALSE(report->has_problems());
  EXPECT_EQ(report->month.ToString(), "2026-10");
  EXPECT_EQ(report->summary.patients, report->records.size());
  EXPECT_GT(report->summary.billable, 0u);
  EXPECT_EQ(report->engine.fee_schedule.year, 2025);
}

TEST(EvaluateMonthTest, ThreadsChangeNothing) {
  auto one = EvaluateMonth(SampleRequest(1));
  EvaluateMonthRequest request = SampleRequest(2);
  std::size_t last = 0;
  request.on_progress = [&last](std::size_t n) {
    EXPECT_GT(n, last);
    last = n;
  };
  auto two = EvaluateMonth(std::move(request));
  ASSERT_TRUE(one);
  ASSERT_TRUE(two);
  EXPECT_EQ(RenderMonthReport(*one, ReportFormat::kCsv),
            RenderMonthReport(*two, ReportFormat::kCsv));
  EXPECT_EQ(two->facts.resources, one->facts.resources);
  EXPECT_LE(last, two->facts.resources);  // (called every 4,096: maybe never on the samples)
}

TEST(EvaluateMonthTest, AMissingInputIsAnErrorValueNotAPrintout) {
  EvaluateMonthRequest request = SampleRequest(1);
  request.inputs = {"/nonexistent/ccm-input"};
  auto report = EvaluateMonth(std::move(request));
  ASSERT_FALSE(report);
  EXPECT_EQ(report.error().kind, ErrorKind::kFailed);
  EXPECT_EQ(report.error().code, "input-failed");
  EXPECT_NE(report.error().message.find("/nonexistent/ccm-input"), std::string::npos)
      << report.error().message;
}

// QueryLedger needs only the store: a config whose credentials cannot be read still opens it.
TEST(QueryLedgerTest, AnEmptyStoreAnswersWithoutCredentials) {
  TempDir dir;
  WriteFile(dir / "c.json", R"({
    "practice": {"timeZone": "UTC"},
    "sources": [{"name": "ehr", "baseUrl": "http://127.0.0.1:9/fhir",
                 "auth": {"type": "bearer", "tokenFile": "missing-token"}}],
    "state": {"path": "state.db"}
  })");
  EXPECT_FALSE(LoadGatewayConfig(dir / "c.json"));  // with credentials: the token file is missing
  auto config = LoadGatewayConfig(dir / "c.json", {.env = {}, .credentials = Credentials::kSkip});
  ASSERT_TRUE(config) << config.error().message;
  EXPECT_FALSE(config->credentials_read);
  auto store = OpenStateStore(*config);
  ASSERT_TRUE(store) << store.error().message;
  auto answer = QueryLedger(**store, LedgerRequest{});
  ASSERT_TRUE(answer) << answer.error().message;
  EXPECT_TRUE(answer->entries.empty());
  EXPECT_TRUE(answer->proposals.empty());
  LedgerRequest approve;
  approve.approve = {42};
  approve.approved_by = "operator test";
  auto refused = QueryLedger(**store, approve);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().kind, ErrorKind::kRefused);
}

}  // namespace
}  // namespace ccm::gateway::app
