// The worklist (gateway/ccm/worklist.h) on records built in the test: the edges of the
// near-threshold rule (19:59, exactly 20:00, capped add-ons, practitioner time), open and closed
// months, and the reasons that are not about minutes.
#include "gateway/ccm/worklist.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace ccm::gateway {
namespace {

constexpr std::int64_t kSecond = 1'000'000;

TimePoint At(const std::string& instant) {
  auto t = fhir::FhirDateTime::ParseInstant(instant);
  EXPECT_TRUE(t) << instant;
  return t ? t->Earliest() : TimePoint{};
}

class WorklistTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = DefaultEngineConfig();
    ASSERT_TRUE(c) << c.error().message;
    config_ = std::move(*c);
  }

  Cents Rate(std::string_view code) const { return *config_.fee_schedule.Rate(code); }

  // A consented CCM patient with an active, complete care plan and these billable encounters.
  PatientMonth Record(const std::string& id,
                      std::vector<std::pair<std::int64_t, bool>> seconds_practitioner) const {
    PatientMonth r;
    r.patient = "Patient/" + id;
    r.month = month_;
    r.program = Program::kCcm;
    r.chronic_conditions = {{"diabetes", "Diabetes", {"Condition/dm-" + id}},
                            {"hypertension", "Hypertension", {"Condition/htn-" + id}}};
    r.consent = ConsentState::kActive;
    r.consents = {"Consent/c-" + id};
    r.care_plan = CarePlanState::kActive;
    r.care_plan_reference = "CarePlan/cp-" + id;
    r.care_plans = {r.care_plan_reference};
    std::int64_t staff = 0, own = 0;
    int n = 0;
    for (auto [seconds, practitioner] : seconds_practitioner) {
      EncounterEvidence ev;
      ev.reference = "Encounter/e" + std::to_string(++n) + "-" + id;
      ev.micros = ev.counted_micros = ev.billable_micros = seconds * kSecond;
      ev.practitioner = practitioner;
      ev.counted = ev.billable = true;
      (practitioner ? own : staff) += seconds * kSecond;
      r.encounters.push_back(ev);
    }
    r.minutes = r.billable_minutes = {staff / (60 * kSecond), own / (60 * kSecond)};
    r.billing =
        ChooseCodes(r.program, r.billable_minutes, (staff + own) / (60 * kSecond), false, config_);
    return r;
  }

  Worklist Build(const std::vector<PatientMonth>& records, const std::string& as_of) const {
    auto w = BuildWorklist(records, month_, At(as_of), config_);
    EXPECT_TRUE(w) << w.error().message;
    return w ? *w : Worklist{};
  }

  static std::vector<const WorkItem*> Of(const Worklist& w, WorkReason reason) {
    std::vector<const WorkItem*> out;
    for (const auto& i : w.items) {
      if (i.reason == reason) out.push_back(&i);
    }
    return out;
  }

  EngineConfig config_;
  YearMonth month_{2026, 10};
};

TEST_F(WorklistTest, NineteenFiftyNineIsNineteenMinutesAndNeedsOneSecond) {
  PatientMonth r = Record("a", {{19 * 60 + 59, false}});
  ASSERT_EQ(r.minutes.clinical_staff, 19);  // the engine's floor, which the worklist must not use
  auto next = NextThresholdOf(r, config_);
  ASSERT_TRUE(next);
  EXPECT_EQ(next->code, "99490");
  EXPECT_EQ(next->seconds_logged, 19 * 60 + 59);
  EXPECT_EQ(next->threshold_seconds, 20 * 60);
  EXPECT_EQ(next->seconds_to_next, 1);
  EXPECT_EQ(next->minutes_to_next, 1);
  EXPECT_EQ(next->value, Rate("99490"));
  EXPECT_FALSE(next->practitioner_time);
}

TEST_F(WorklistTest, ExactlyTwentyMinutesIsNearTheFirstAddOn) {
  auto next = NextThresholdOf(Record("a", {{20 * 60, false}}), config_);
  ASSERT_TRUE(next);
  EXPECT_EQ(next->code, "99439");
  EXPECT_EQ(next->seconds_to_next, 20 * 60);
  EXPECT_EQ(next->value, Rate("99439"));
}

TEST_F(WorklistTest, CappedAddOnIsNotNearAnything) {
  // 99490 + 99439 x2 (the monthly limit) at 60 minutes; 75 minutes changes nothing.
  for (std::int64_t minutes : {60, 75, 79}) {
    PatientMonth r = Record("a", {{minutes * 60 + 59, false}});
    ASSERT_EQ(r.billing.size(), 2u);
    ASSERT_EQ(r.billing[1].units, 2);
    EXPECT_FALSE(NextThresholdOf(r, config_)) << minutes;
    Worklist w = Build({r}, "2026-10-28T12:00:00Z");
    EXPECT_TRUE(Of(w, WorkReason::kNearThreshold).empty()) << minutes;
  }
}

TEST_F(WorklistTest, PractitionerTimeNearNinety491) {
  // 29:30 of the billing practitioner's own time: 99490 now; 30 s more makes 99491 pay better.
  auto next = NextThresholdOf(Record("a", {{29 * 60 + 30, true}}), config_);
  ASSERT_TRUE(next);
  EXPECT_EQ(next->code, "99491");
  EXPECT_EQ(next->seconds_to_next, 30);
  EXPECT_TRUE(next->practitioner_time);
  EXPECT_EQ(next->value, Rate("99491") - Rate("99490"));
}

TEST_F(WorklistTest, OpenMonthSpreadsTheMinutesOverTheDaysLeft) {
  // 12:00 on the 28th of October (UTC practice): the 28th to the 31st, 4 days with today.
  Worklist w = Build({Record("a", {{15 * 60, false}})}, "2026-10-28T12:00:00Z");
  EXPECT_TRUE(w.open);
  EXPECT_EQ(w.days_left, 4);
  auto near = Of(w, WorkReason::kNearThreshold);
  ASSERT_EQ(near.size(), 1u);
  ASSERT_TRUE(near[0]->next);
  EXPECT_EQ(near[0]->next->minutes_to_next, 5);
  EXPECT_EQ(near[0]->next->hundredths_per_day, 125);  // 5 minutes / 4 days
  EXPECT_NE(near[0]->summary.find("5:00 more reaches 99490 (4 days left)"), std::string::npos)
      << near[0]->summary;
  EXPECT_FALSE(near[0]->action.empty());
  EXPECT_EQ(near[0]->evidence, std::vector<std::string>{"Encounter/e1-a"});
}

TEST_F(WorklistTest, ClosedMonthSaysItWasMissed) {
  Worklist w = Build({Record("a", {{19 * 60 + 59, false}})}, "2026-11-02T08:00:00Z");
  EXPECT_FALSE(w.open);
  EXPECT_EQ(w.days_left, 0);
  auto near = Of(w, WorkReason::kNearThreshold);
  ASSERT_EQ(near.size(), 1u);
  EXPECT_FALSE(near[0]->next->hundredths_per_day);
  EXPECT_EQ(near[0]->summary, "99490 missed by 0:01 (19:59 logged).");
  EXPECT_TRUE(near[0]->action.empty());
}

TEST_F(WorklistTest, DeceasedIsBlockedAndNothingElse) {
  PatientMonth r = Record("a", {{19 * 60 + 59, false}});
  r.deceased = true;
  r.blocked_by = {"deceased"};
  r.care_plan_stale = true;
  Worklist w = Build({r}, "2026-10-28T12:00:00Z");
  ASSERT_EQ(w.items.size(), 1u);
  EXPECT_EQ(w.items[0].reason, WorkReason::kBlocked);
  EXPECT_EQ(w.items[0].details, std::vector<std::string>{"deceased"});
  EXPECT_EQ(ToCode(w.items[0].reason), "blocked");
}

TEST_F(WorklistTest, DataErrorsBlock) {
  PatientMonth r = Record("a", {{10 * 60, false}});
  fhir::Issue issue;
  issue.message = "bad";
  r.issues.push_back(issue);
  Worklist w = Build({r}, "2026-10-28T12:00:00Z");
  ASSERT_EQ(w.items.size(), 1u);
  EXPECT_EQ(w.items[0].reason, WorkReason::kBlocked);
  EXPECT_EQ(w.items[0].details, std::vector<std::string>{"data-errors:1"});
}

TEST_F(WorklistTest, ConsentAndCarePlanReasons) {
  PatientMonth no_consent = Record("b", {});
  no_consent.consent = ConsentState::kNone;
  no_consent.consents.clear();
  PatientMonth no_plan = Record("c", {{25 * 60, false}});
  no_plan.care_plan = CarePlanState::kDraft;
  PatientMonth gaps = Record("d", {});
  gaps.care_plan_gaps = {"problems", "goals"};
  gaps.care_plan_stale = true;
  PatientMonth not_eligible = Record("e", {{19 * 60, false}});
  not_eligible.program = Program::kNone;
  Worklist w = Build({no_consent, no_plan, gaps, not_eligible}, "2026-10-10T00:00:00Z");

  auto nc = Of(w, WorkReason::kEligibleNoConsent);
  ASSERT_EQ(nc.size(), 1u);
  EXPECT_EQ(nc[0]->patient, "Patient/b");
  EXPECT_EQ(nc[0]->value, Rate("99490"));
  EXPECT_EQ(nc[0]->evidence, (std::vector<std::string>{"Condition/dm-b", "Condition/htn-b"}));
  auto np = Of(w, WorkReason::kConsentedNoActiveCarePlan);
  ASSERT_EQ(np.size(), 1u);
  EXPECT_EQ(np[0]->patient, "Patient/c");
  EXPECT_EQ(np[0]->evidence, (std::vector<std::string>{"Consent/c-c", "CarePlan/cp-c"}));
  auto inc = Of(w, WorkReason::kCarePlanIncomplete);
  ASSERT_EQ(inc.size(), 1u);
  EXPECT_EQ(inc[0]->details, (std::vector<std::string>{"problems", "goals"}));
  EXPECT_EQ(Of(w, WorkReason::kCarePlanReviewDue).size(), 1u);
  // c is also near 99439 (25 min, consented): time still counts once the plan is active.
  auto near = Of(w, WorkReason::kNearThreshold);
  ASSERT_EQ(near.size(), 1u);
  EXPECT_EQ(near[0]->patient, "Patient/c");
  for (const auto& i : w.items) EXPECT_NE(i.patient, "Patient/e");
  for (const auto& i : w.items) EXPECT_FALSE(i.summary.empty()) << ToCode(i.reason);
}

TEST_F(WorklistTest, SortedByValueThenTimeToNext) {
  // a: 1 s from 99490; b: 1 s from 99439 (worth less); c: 10 min from 99490.
  Worklist w = Build({Record("c", {{10 * 60, false}}), Record("b", {{39 * 60 + 59, false}}),
                      Record("a", {{19 * 60 + 59, false}})},
                     "2026-10-20T00:00:00Z");
  ASSERT_EQ(w.items.size(), 3u);
  EXPECT_EQ(w.items[0].patient, "Patient/a");
  EXPECT_EQ(w.items[1].patient, "Patient/c");
  EXPECT_EQ(w.items[2].patient, "Patient/b");
  EXPECT_GE(w.items[0].value, w.items[1].value);
}

}  // namespace
}  // namespace ccm::gateway
