// The program picture (gateway/ccm/program.h): funnel counts and shares, revenue billed and at
// stake, the projection under the published defaults and the observed rates, and the
// `program.assumptions` config keys with their key-path errors.
#include "gateway/ccm/program.h"

#include <gtest/gtest.h>

namespace ccm::gateway {
namespace {

PatientMonth Patient(const std::string& id, Program program, ConsentState consent,
                     Cents payment = 0) {
  PatientMonth r;
  r.patient = "Patient/" + id;
  r.program = program;
  r.consent = consent;
  if (payment > 0) {
    BillingLine line;
    line.code = "99490";
    line.units = 1;
    line.amount = payment;
    r.billing.push_back(line);
    r.expected_payment = payment;
  }
  return r;
}

TEST(ProgramTest, FunnelRevenueAndProjection) {
  std::vector<PatientMonth> records = {
      Patient("a", Program::kCcm, ConsentState::kActive, 6049),
      Patient("b", Program::kCcm, ConsentState::kActive, 10642),
      Patient("c", Program::kPcm, ConsentState::kActive),
      Patient("d", Program::kCcm, ConsentState::kNone),
      Patient("e", Program::kNone, ConsentState::kNone),
  };
  PatientMonth dead = Patient("f", Program::kCcm, ConsentState::kActive);
  dead.deceased = true;
  records.push_back(dead);
  Worklist w;
  w.month = {2026, 10};
  WorkItem near;
  near.reason = WorkReason::kNearThreshold;
  near.next = NextThreshold{};
  near.next->value = 4593;
  w.items.push_back(near);
  WorkItem other;
  other.reason = WorkReason::kEligibleNoConsent;
  other.value = 6049;
  w.items.push_back(other);

  ProgramPicture p = BuildProgram(records, w, ProgramAssumptions{});
  EXPECT_EQ(p.population, 6u);
  EXPECT_EQ(p.eligible_ccm, 3u) << "the deceased patient is not eligible";
  EXPECT_EQ(p.eligible_pcm, 1u);
  EXPECT_EQ(p.consented, 3u);
  EXPECT_EQ(p.billable, 2u);
  EXPECT_EQ(p.billed, 6049 + 10642);
  EXPECT_EQ(p.at_stake, 4593) << "near-threshold items only";
  EXPECT_EQ(p.near_threshold, 1u);
  EXPECT_EQ(p.observed_qualify_bp, 6666);  // 4 / 6, rounded down
  EXPECT_EQ(p.observed_enrol_bp, 7500);    // 3 / 4
  EXPECT_EQ(p.observed_net_per_patient_month, (6049 + 10642) / 2);
  // 6 x 0.68 x 0.40 x 46.67 = 76.1654 -> 76.16
  EXPECT_EQ(p.projected_assumed, 7616);
  // 6 x 0.6666 x 0.75 x 83.45 = 250.3249... -> 250.32
  EXPECT_EQ(p.projected_observed, 25032);

  auto v = ToJson(p, "USD");
  EXPECT_EQ(v["funnel"][1]["stage"].str(), "eligible");
  EXPECT_EQ(v["funnel"][1]["count"].number_text(), "4");
  EXPECT_EQ(v["funnel"][1]["shareOfPopulation"].number_text(), "0.6666");
  EXPECT_EQ(v["funnel"][3]["shareOfPrevious"].number_text(), "0.6666");  // 2 billed of 3
  EXPECT_EQ(v["revenue"]["atStake"].number_text(), "45.93");
  EXPECT_EQ(v["projection"]["assumed"]["netPerPatientMonth"].number_text(), "46.67");
  EXPECT_EQ(v["projection"]["assumed"]["qualifyShare"].number_text(), "0.6800");
}

TEST(ProgramTest, EmptyPracticeDividesByNothing) {
  ProgramPicture p = BuildProgram({}, Worklist{}, ProgramAssumptions{});
  EXPECT_EQ(p.observed_qualify_bp, 0);
  EXPECT_EQ(p.projected_assumed, 0);
  EXPECT_EQ(p.projected_observed, 0);
}

TEST(ProgramTest, AssumptionsFromConfig) {
  auto parse = [](std::string_view text) {
    auto v = fhir::json::Parse(text);
    EXPECT_TRUE(v) << text;
    return ProgramAssumptionsFromJson(v ? v->find("program") : nullptr, "site.json");
  };
  auto defaults = parse("{}");
  ASSERT_TRUE(defaults);
  EXPECT_EQ(defaults->qualify_bp, 6800);
  EXPECT_EQ(defaults->enrol_bp, 4000);
  EXPECT_EQ(defaults->net_per_patient_month, 4667);
  auto set = parse(
      R"({"program":{"assumptions":{"qualifyShare":0.7,"enrolShare":1,"netPerPatientMonth":50}}})");
  ASSERT_TRUE(set) << set.error().message;
  EXPECT_EQ(set->qualify_bp, 7000);
  EXPECT_EQ(set->enrol_bp, 10000);
  EXPECT_EQ(set->net_per_patient_month, 5000);
  for (auto [text, key] : std::vector<std::pair<std::string, std::string>>{
           {R"({"program":{"assumptions":{"enrolShare":1.5}}})", "program.assumptions.enrolShare"},
           {R"({"program":{"assumptions":{"qualifyShare":"0.68"}}})",
            "program.assumptions.qualifyShare"},
           {R"({"program":{"assumptions":{"qualifyShare":0.12345}}})",
            "program.assumptions.qualifyShare"},
           {R"({"program":{"assumptions":{"netPerPatientMonth":46.675}}})",
            "program.assumptions.netPerPatientMonth"},
           {R"({"program":{"assumptions":{"enrolRate":0.4}}})", "enrolRate"},
           {R"({"program":{"assumption":{}}})", "assumption"}}) {
    auto r = parse(text);
    ASSERT_FALSE(r) << text;
    EXPECT_NE(r.error().message.find("site.json"), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find(key), std::string::npos) << r.error().message;
  }
}

}  // namespace
}  // namespace ccm::gateway
