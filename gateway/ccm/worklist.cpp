#include "gateway/ccm/worklist.h"

#include <fmt/format.h>

#include <algorithm>
#include <tuple>

namespace ccm::gateway {
namespace {

constexpr std::int64_t kSecondMicros = 1'000'000;
constexpr std::int64_t kMinuteMicros = 60 * kSecondMicros;

// Billable time per pool, exact (microseconds): the engine floors whole minutes only once, at the
// end (rule 6), so the time still needed must come from the encounters' own durations.
struct Pools {
  std::int64_t staff = 0, own = 0;
  std::int64_t combined() const { return staff + own; }
};

Pools BillablePools(const PatientMonth& r) {
  Pools p;
  for (const EncounterEvidence& ev : r.encounters) {
    (ev.practitioner ? p.own : p.staff) += ev.billable_micros;
  }
  return p;
}

// What rule 8 would bill on these pools, as the engine floors them.
std::vector<BillingLine> WouldBill(const PatientMonth& r, const Pools& p,
                                   const EngineConfig& config) {
  return ChooseCodes(r.program, Minutes{p.staff / kMinuteMicros, p.own / kMinuteMicros},
                     p.combined() / kMinuteMicros, r.complex_documented, config);
}

Cents Amount(const std::vector<BillingLine>& lines) {
  Cents c = 0;
  for (const auto& l : lines) c += l.amount.value_or(0);
  return c;
}

bool AtCap(const BillingLine& line, const EngineConfig& config) {
  auto cap = config.rules.max_units.find(line.code);
  return cap != config.rules.max_units.end() && line.units >= cap->second;
}

// "19:59" for a duration in seconds.
std::string Clock(std::int64_t seconds) {
  return fmt::format("{}:{:02}", seconds / 60, seconds % 60);
}

// The base code's rate of the program's first family: what one more billable month is worth at
// least, for items whose value is enrolment rather than minutes.
Cents BaseValue(Program program, const EngineConfig& config) {
  for (const CodeFamily& f : CodeFamilies()) {
    if (f.program == program) return config.fee_schedule.Rate(f.base).value_or(0);
  }
  return 0;
}

std::vector<std::string> ChronicEvidence(const PatientMonth& r) {
  std::vector<std::string> out;
  for (const auto& c : r.chronic_conditions) {
    out.insert(out.end(), c.conditions.begin(), c.conditions.end());
  }
  return out;
}

}  // namespace

std::string_view ToCode(WorkReason r) noexcept {
  switch (r) {
    case WorkReason::kNearThreshold:
      return "near-threshold";
    case WorkReason::kEligibleNoConsent:
      return "eligible-no-consent";
    case WorkReason::kConsentedNoActiveCarePlan:
      return "consented-no-active-care-plan";
    case WorkReason::kCarePlanIncomplete:
      return "care-plan-incomplete";
    case WorkReason::kCarePlanReviewDue:
      return "care-plan-review-due";
    case WorkReason::kBlocked:
      break;
  }
  return "blocked";
}

std::optional<NextThreshold> NextThresholdOf(const PatientMonth& r, const EngineConfig& config) {
  if (r.program == Program::kNone || r.consent != ConsentState::kActive) return std::nullopt;
  const Pools now = BillablePools(r);
  if (now.combined() <= 0) return std::nullopt;
  const std::vector<BillingLine> current = WouldBill(r, now, config);
  // Capped at the family's last add-on: more time earns nothing in the family being billed, and
  // switching families is a choice the engine already made for the best payment.
  for (const BillingLine& l : current) {
    if (AtCap(l, config)) return std::nullopt;
  }
  const Cents current_amount = Amount(current);
  std::optional<NextThreshold> best;
  std::optional<Cents> best_gain;
  for (const CodeFamily& f : CodeFamilies()) {
    if (f.program != r.program || (f.complex && !r.complex_documented)) continue;
    const std::int64_t pool = f.practitioner_time ? now.own : now.combined();
    const std::int64_t minutes = pool / kMinuteMicros;
    std::string code;
    std::int64_t target = 0;  // minutes
    if (minutes < f.threshold_minutes) {
      code = std::string(f.base);
      target = f.threshold_minutes;
    } else {
      const std::int64_t units = (minutes - f.threshold_minutes) / f.step_minutes;
      auto cap = config.rules.max_units.find(f.add_on);
      if (cap != config.rules.max_units.end() && units >= cap->second) continue;
      code = std::string(f.add_on);
      target = f.threshold_minutes + (units + 1) * f.step_minutes;
    }
    const std::int64_t need = target * kMinuteMicros - pool;
    // Whose time closes the gap: the practitioner's for a practitioner family; otherwise clinical
    // staff time (the cheaper time; it counts toward the staff codes only).
    Pools after = now;
    (f.practitioner_time ? after.own : after.staff) += need;
    const std::vector<BillingLine> then = WouldBill(r, after, config);
    const Cents gain = Amount(then) - current_amount;
    const bool has_rate = config.fee_schedule.Rate(code).has_value();
    if (has_rate && gain <= 0) continue;  // the engine would still bill the better family
    // Seconds, rounded up: a gap of 0.4 s still needs a logged second.
    const std::int64_t seconds = (need + kSecondMicros - 1) / kSecondMicros;
    const bool better = !best || seconds < best->seconds_to_next ||
                        (seconds == best->seconds_to_next && gain > best_gain.value_or(0));
    if (!better) continue;
    NextThreshold n;
    n.code = std::move(code);
    n.seconds_logged = pool / kSecondMicros;
    n.threshold_seconds = target * 60;
    n.seconds_to_next = seconds;
    n.minutes_to_next = (seconds + 59) / 60;
    if (has_rate) n.value = gain;
    n.practitioner_time = f.practitioner_time;
    best = std::move(n);
    best_gain = gain;
  }
  return best;
}

Result<Worklist> BuildWorklist(const std::vector<PatientMonth>& records, YearMonth month,
                               TimePoint as_of, const EngineConfig& config) {
  CCM_TRY_ASSIGN(fhir::InstantRange range,
                 fhir::MonthRange(month.year, month.month, config.practice.time_zone));
  Worklist w;
  w.month = month;
  w.as_of = as_of;
  w.open = as_of < range.end;
  if (w.open) {
    using Days = std::chrono::duration<std::int64_t, std::ratio<86400>>;
    const TimePoint from = std::max(as_of, range.start);
    const auto left = range.end - from;
    // Part of a day counts as a day: on the last afternoon there is still today.
    w.days_left = static_cast<int>(std::chrono::ceil<Days>(left).count());
  }
  const std::string month_text = month.ToString();
  for (const PatientMonth& r : records) {
    auto item = [&](WorkReason reason) {
      WorkItem i;
      i.patient = r.patient;
      i.reason = reason;
      return i;
    };
    // Blocked first: nothing else can be done for the month until the record itself is right.
    std::vector<std::string> blocked;
    for (const auto& b : r.blocked_by) {
      if (b == "deceased" || b == "merged" || b == "inactive-record") blocked.push_back(b);
    }
    std::size_t data_errors = 0;
    for (const auto& issue : r.issues) {
      if (issue.is_error()) ++data_errors;
    }
    if (!blocked.empty() || data_errors > 0) {
      if (r.program == Program::kNone && data_errors == 0) continue;  // nothing was expected
      WorkItem i = item(WorkReason::kBlocked);
      i.details = blocked;
      if (data_errors > 0) i.details.push_back(fmt::format("data-errors:{}", data_errors));
      if (r.deceased) {
        i.summary = fmt::format("Deceased: {} is not billable.", month_text);
        i.action = "Close the CCM enrolment; end open tasks and the care plan.";
      } else if (r.merged || r.inactive) {
        i.summary = r.merged ? fmt::format("Record merged into {}.",
                                           r.replaced_by.empty() ? "another record" : r.replaced_by)
                             : std::string("Record not in active use in the EHR.");
        i.action = "Check the record in the EHR; work goes on the surviving, active record.";
      } else {
        i.summary = fmt::format("{} data error{} in the patient's resources.", data_errors,
                                data_errors == 1 ? "" : "s");
        i.action = "Fix the resources named in the patient's status issues, then re-sync.";
      }
      i.evidence.push_back(r.patient);
      if (!r.replaced_by.empty()) i.evidence.push_back(r.replaced_by);
      w.items.push_back(std::move(i));
      continue;
    }
    if (r.program == Program::kNone) continue;
    const std::string program(ToCode(r.program));
    const Pools pools = BillablePools(r);

    if (r.consent != ConsentState::kActive) {
      WorkItem i = item(WorkReason::kEligibleNoConsent);
      // What the month's time would bill with a consent (judged on all time, as the engine does).
      const Cents would = Amount(ChooseCodes(r.program, r.minutes,
                                             (r.minutes.clinical_staff + r.minutes.practitioner),
                                             r.complex_documented, config));
      i.value = std::max(would, BaseValue(r.program, config));
      i.summary =
          fmt::format("Eligible for {} ({} chronic condition{}), consent {}.", program,
                      r.chronic_conditions.size(), r.chronic_conditions.size() == 1 ? "" : "s",
                      r.consent == ConsentState::kRevoked ? "revoked" : "not recorded");
      i.action = r.consent == ConsentState::kRevoked
                     ? "Ask whether the patient wants to re-enrol; record a new Consent if so."
                     : "Offer CCM and record the patient's consent (verbal or written).";
      i.evidence = ChronicEvidence(r);
      i.evidence.insert(i.evidence.end(), r.consents.begin(), r.consents.end());
      w.items.push_back(std::move(i));
    } else if (r.care_plan != CarePlanState::kActive) {
      WorkItem i = item(WorkReason::kConsentedNoActiveCarePlan);
      i.value = std::max(Amount(WouldBill(r, pools, config)), BaseValue(r.program, config));
      i.summary = fmt::format("Consented to {}; care plan {}.", program,
                              r.care_plan == CarePlanState::kDraft ? "still a draft" : "missing");
      i.action = "Establish the comprehensive care plan and make it active.";
      i.evidence = r.consents;
      i.evidence.insert(i.evidence.end(), r.care_plans.begin(), r.care_plans.end());
      w.items.push_back(std::move(i));
    } else {
      if (!r.care_plan_gaps.empty()) {
        WorkItem i = item(WorkReason::kCarePlanIncomplete);
        i.details = r.care_plan_gaps;
        i.summary = fmt::format("Care plan lacks {} CMS element{}.", r.care_plan_gaps.size(),
                                r.care_plan_gaps.size() == 1 ? "" : "s");
        i.action = "Add the missing elements to the care plan.";
        if (!r.care_plan_reference.empty()) i.evidence.push_back(r.care_plan_reference);
        w.items.push_back(std::move(i));
      }
      if (r.care_plan_stale) {
        WorkItem i = item(WorkReason::kCarePlanReviewDue);
        i.summary = fmt::format("Care plan not revised for {} months or more.",
                                config.rules.care_plan_review_months);
        i.action = "Review the care plan with the patient and record the revision.";
        if (!r.care_plan_reference.empty()) i.evidence.push_back(r.care_plan_reference);
        w.items.push_back(std::move(i));
      }
    }

    if (auto next = NextThresholdOf(r, config)) {
      WorkItem i = item(WorkReason::kNearThreshold);
      i.value = next->value.value_or(0);
      const std::string whose = next->practitioner_time ? " of the billing practitioner's" : "";
      if (w.open) {
        next->hundredths_per_day =
            (next->minutes_to_next * 100 + w.days_left - 1) / std::max(w.days_left, 1);
        i.summary = fmt::format("{} logged{}; {} more reaches {} ({} day{} left).",
                                Clock(next->seconds_logged), whose, Clock(next->seconds_to_next),
                                next->code, w.days_left, w.days_left == 1 ? "" : "s");
        i.action = fmt::format(
            "Log at least {} more minute{} of care management{} before the "
            "month ends.",
            next->minutes_to_next, next->minutes_to_next == 1 ? "" : "s",
            next->practitioner_time ? " by the billing practitioner" : "");
      } else {
        i.summary = fmt::format("{} missed by {} ({} logged{}).", next->code,
                                Clock(next->seconds_to_next), Clock(next->seconds_logged), whose);
      }
      for (const EncounterEvidence& ev : r.encounters) {
        if (ev.billable_micros > 0 && (!next->practitioner_time || ev.practitioner)) {
          i.evidence.push_back(ev.reference);
        }
      }
      i.next = std::move(next);
      w.items.push_back(std::move(i));
    }
  }
  std::stable_sort(w.items.begin(), w.items.end(), [](const WorkItem& a, const WorkItem& b) {
    auto key = [](const WorkItem& i) {
      return std::make_tuple(-i.value, i.next ? i.next->seconds_to_next : INT64_MAX,
                             static_cast<int>(i.reason));
    };
    auto ka = key(a), kb = key(b);
    if (ka != kb) return ka < kb;
    return a.patient < b.patient;
  });
  return w;
}

fhir::json::Value ToJson(const Worklist& w, const std::string& currency) {
  using fhir::json::Value;
  auto strings = [](const std::vector<std::string>& list) {
    Value a = Value::MakeArray();
    for (const auto& s : list) a.push_back(Value::String(s));
    return a;
  };
  Value v = Value::MakeObject();
  v.set("month", Value::String(w.month.ToString()));
  v.set("asOf", Value::String(fhir::FormatUtc(w.as_of)));
  v.set("open", Value::Bool(w.open));
  v.set("daysLeft", Value::Number(static_cast<std::int64_t>(w.days_left)));
  v.set("currency", Value::String(currency));
  Value items = Value::MakeArray();
  for (const WorkItem& i : w.items) {
    Value iv = Value::MakeObject();
    iv.set("patient", Value::String(i.patient));
    iv.set("reason", Value::String(std::string(ToCode(i.reason))));
    iv.set("summary", Value::String(i.summary));
    if (!i.action.empty()) iv.set("action", Value::String(i.action));
    iv.set("value", Value::Number(FormatCents(i.value)));
    if (i.next) {
      const NextThreshold& n = *i.next;
      iv.set("nextCode", Value::String(n.code));
      iv.set("practitionerTime", Value::Bool(n.practitioner_time));
      iv.set("secondsLogged", Value::Number(n.seconds_logged));
      iv.set("thresholdMinutes", Value::Number(n.threshold_seconds / 60));
      iv.set("secondsToNext", Value::Number(n.seconds_to_next));
      iv.set("minutesToNext", Value::Number(n.minutes_to_next));
      iv.set("valueOfNext", n.value ? Value::Number(FormatCents(*n.value)) : Value());
      if (n.hundredths_per_day) {
        // Hundredths printed as a decimal, the way cents are.
        iv.set("minutesPerDayNeeded", Value::Number(FormatCents(*n.hundredths_per_day)));
      }
      iv.set("missed", Value::Bool(!w.open));
    }
    if (!i.details.empty()) iv.set("details", strings(i.details));
    iv.set("evidence", strings(i.evidence));
    items.push_back(std::move(iv));
  }
  v.set("items", std::move(items));
  return v;
}

}  // namespace ccm::gateway
