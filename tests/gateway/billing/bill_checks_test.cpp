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
    ASSERT_TRUE(s.EndPull("ehr", t, 1, PullState::kComplete, ""));
  }
  ASSERT_TRUE(s.EndPull("ehr", "Consent", 1, PullState::kNotOffered, "not offered"));
  ASSERT_TRUE(s.BeginPull("lab", "Condition", 1));
  ASSERT_TRUE(s.EndPull("lab", "Condition", 1, PullState::kComplete, ""));
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

  // A failed pull, an incomplete one and one that never finished (no sync holds the lock).
  ASSERT_TRUE(s.BeginPull("ehr", "Encounter", 2));
  ASSERT_TRUE(s.EndPull("ehr", "Encounter", 2, PullState::kFailed, "HTTP 503 after 5 attempts"));
  ASSERT_TRUE(s.BeginPull("ehr", "Encounter", 3));
  ASSERT_TRUE(s.EndPull("ehr", "Encounter", 3, PullState::kIncomplete, "Bundle.total 40, got 38"));
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
