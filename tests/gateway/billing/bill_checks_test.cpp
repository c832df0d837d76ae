// What `bill` checks before it acts, on real SQLite files and directories: the completeness of the
// pulled data (pull status per source and type), and claims that already exist beside an empty
// ledger.
#include "gateway/billing/bill_checks.h"
#include "gateway/writeback/prior_billing.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "gateway/store/sqlite_state_store.h"
#include "gateway/store/state_store.h"
#include "test_util.h"

namespace ccm::gateway {
namespace {

using ccm::testing::TempDir;
using ccm::testing::WriteFile;

TEST(CompletenessTest, EveryNeededTypeMustHaveACompleteLastPull) {
  TempDir dir;
  auto opened = OpenSqliteStateStore(dir / "state.db");
  ASSERT_TRUE(opened);
  StateStore& s = **opened;
  auto engine = DefaultEngineConfig();
  ASSERT_TRUE(engine);
  SyncConfig sync;
  sync.sources.push_back(SourceConfig{.name = "ehr", .base_url = "https://ehr/fhir"});
  SourceConfig lab{.name = "lab", .base_url = "https://lab/fhir"};
  lab.resource_types = {"Condition"};
  sync.sources.push_back(lab);
  auto check = [&] { return CheckCompleteness(*s.PullStatuses(), sync, *engine); };

  Completeness none = check();
  ASSERT_EQ(none.gaps.size(), 6u);  // five default types of ehr, Condition of lab
  EXPECT_EQ(Describe(none.gaps[0]), "ehr/Patient: never pulled");
  EXPECT_FALSE(none.complete_since);

  ASSERT_TRUE(s.BeginPull("ehr", "Consent", 1));  // long ago: the server offered it then
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  for (const char* t : {"Patient", "Condition", "Encounter", "CarePlan"}) {
    ASSERT_TRUE(s.BeginPull("ehr", t, 1));
    ASSERT_TRUE(s.EndPull("ehr", t, 1, PullState::kComplete, PullMode::kFull, ""));
  }
  ASSERT_TRUE(
      s.EndPull("ehr", "Consent", 1, PullState::kNotOffered, PullMode::kFull, "not offered"));
  ASSERT_TRUE(s.BeginPull("lab", "Condition", 1));
  ASSERT_TRUE(s.EndPull("lab", "Condition", 1, PullState::kComplete, PullMode::kIncremental, ""));
  ASSERT_TRUE(s.BeginPull("lab", "Encounter", 1));  // not needed from lab: ignored
  Completeness all = check();
  EXPECT_TRUE(all.gaps.empty());
  ASSERT_TRUE(all.complete_since);
  // The oldest complete pull: a type not offered counts from when that was said, not from the
  // start of its last attempt.
  std::optional<fhir::TimePoint> oldest;
  for (const auto& p : *s.PullStatuses()) {
    if (p.last_complete_started.empty() || p.state == PullState::kNotOffered) continue;
    auto t = fhir::FhirDateTime::ParseInstant(p.last_complete_started)->Earliest();
    oldest = oldest ? std::min(*oldest, t) : t;
  }
  EXPECT_EQ(all.complete_since, oldest);
  // lab/Condition was only ever pulled incrementally: nothing confirms a void yet.
  EXPECT_FALSE(all.full_complete_since);
  ASSERT_TRUE(s.BeginPull("lab", "Condition", 2));
  ASSERT_TRUE(s.EndPull("lab", "Condition", 2, PullState::kComplete, PullMode::kFull, ""));
  Completeness full = check();
  ASSERT_TRUE(full.full_complete_since);
  EXPECT_EQ(full.full_complete_since, full.complete_since)
      << "the oldest complete pull is also the oldest full one (ehr's first pulls)";
  // Another incremental pull later moves neither the full time of lab/Condition nor the oldest.
  ASSERT_TRUE(s.BeginPull("lab", "Condition", 3));
  ASSERT_TRUE(s.EndPull("lab", "Condition", 3, PullState::kComplete, PullMode::kIncremental, ""));
  EXPECT_EQ(check().full_complete_since, full.full_complete_since);

  // A failed pull, an incomplete one and one that never finished (no sync holds the lock).
  ASSERT_TRUE(s.BeginPull("ehr", "Encounter", 2));
  ASSERT_TRUE(s.EndPull("ehr", "Encounter", 2, PullState::kFailed, PullMode::kIncremental,
                        "HTTP 503 after 5 attempts"));
  ASSERT_TRUE(s.BeginPull("ehr", "Encounter", 3));
  ASSERT_TRUE(s.EndPull("ehr", "Encounter", 3, PullState::kIncomplete, PullMode::kFull,
                        "Bundle.total 40, got 38"));
  ASSERT_TRUE(s.BeginPull("ehr", "CarePlan", 3));
  Completeness gaps = check();
  ASSERT_EQ(gaps.gaps.size(), 2u);
  std::string encounter = Describe(gaps.gaps[0]);  // in the configured order of types
  std::string failing_since;
  for (const auto& p : *s.PullStatuses()) {
    if (p.type == "Encounter" && p.source == "ehr") failing_since = p.failing_since;
  }
  EXPECT_EQ(gaps.gaps[0].since, failing_since);  // the first attempt that was not complete
  EXPECT_TRUE(
      encounter.starts_with(fmt::format("ehr/Encounter: incomplete since {} (last complete "
                                        "pull finished ",
                                        failing_since)))
      << encounter;
  EXPECT_TRUE(encounter.ends_with("): Bundle.total 40, got 38")) << encounter;
  EXPECT_NE(Describe(gaps.gaps[1]).find("ehr/CarePlan: running since "), std::string::npos);
  EXPECT_NE(Describe(gaps.gaps[1]).find("a sync died mid-pull"), std::string::npos);
  // Every type has had a complete pull: the data is known complete as of the oldest of them.
  EXPECT_TRUE(gaps.complete_since);
}

TEST(CompletenessTest, APullThatStartedBeforeTheMonthEndedIsAGapForThatMonth) {
  TempDir dir;
  auto store = OpenSqliteStateStore(dir / "state.db");
  ASSERT_TRUE(store);
  StateStore& s = **store;
  auto engine = DefaultEngineConfig();
  ASSERT_TRUE(engine);
  engine->practice.time_zone = date::locate_zone("America/New_York");
  SyncConfig sync;
  sync.sources.push_back(SourceConfig{.name = "ehr", .base_url = "https://ehr/fhir"});
  for (const char* t : {"Patient", "Condition", "Encounter", "CarePlan", "Consent"}) {
    ASSERT_TRUE(s.BeginPull("ehr", t, 1));
    ASSERT_TRUE(s.EndPull("ehr", t, 1, PullState::kComplete, PullMode::kFull, ""));
  }
  // Midnight of 1 November in New York (EDT) and of 1 April (EDT), 1 January (EST).
  EXPECT_EQ(fhir::FormatUtc(MonthEnd(YearMonth{2026, 10}, *engine)), "2026-11-01T04:00:00Z");
  EXPECT_EQ(fhir::FormatUtc(MonthEnd(YearMonth{2026, 12}, *engine)), "2027-01-01T05:00:00Z");
  // Pulls made today are after October ended, and before a month that ends in the future.
  EXPECT_TRUE(
      CheckCompleteness(*s.PullStatuses(), sync, *engine, MonthEnd(YearMonth{2026, 10}, *engine))
          .gaps.empty());
  auto future =
      CheckCompleteness(*s.PullStatuses(), sync, *engine, MonthEnd(YearMonth{2099, 1}, *engine));
  ASSERT_EQ(future.gaps.size(), 5u);
  EXPECT_TRUE(future.gaps[0].stale);
  EXPECT_NE(Describe(future.gaps[0]).find("before the month ended (2099-02-01T05:00:00Z)"),
            std::string::npos)
      << Describe(future.gaps[0]);
}

TEST(PriorBillingTest, ClaimFilesInAPayersDirectoryAreFound) {
  TempDir dir;
  WriteBackConfig config;
  PayerConfig payer;
  payer.name = "medicare";
  payer.directory = dir / "claims";
  config.payers.push_back(payer);
  auto missing = FindPriorBilling(config, nullptr);  // the directory does not exist yet
  ASSERT_TRUE(missing) << missing.error().message;
  EXPECT_TRUE(missing->empty());
  WriteFile(dir / "claims" / "notes.txt", "x");
  EXPECT_TRUE(FindPriorBilling(config, nullptr)->empty());
  WriteFile(dir / "claims" / "claims-medicare-2026-09-run3.json", "{}");
  WriteFile(dir / "claims" / "claims-medicare-2026-10-00aa.json", "{}");
  auto found = FindPriorBilling(config, nullptr);
  ASSERT_TRUE(found);
  ASSERT_EQ(found->size(), 1u);
  EXPECT_EQ((*found)[0], fmt::format("2 claim file(s) in {} (e.g. "
                                     "claims-medicare-2026-09-run3.json)",
                                     (dir / "claims").string()));
}

}  // namespace
}  // namespace ccm::gateway
