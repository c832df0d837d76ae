#include "fhir/datetime.h"

#include <gtest/gtest.h>

namespace ccm::fhir {
namespace {

using std::chrono::hours;
using std::chrono::minutes;

// Parses an RFC 3339 UTC literal for expectations (test helper; asserts validity).
TimePoint Utc(std::string_view text) {
  auto v = FhirDateTime::ParseInstant(text);
  EXPECT_TRUE(v) << text;
  return v ? v->Earliest() : TimePoint{};
}

const date::time_zone* NewYork() {
  auto tz = LocateZone("America/New_York");
  EXPECT_TRUE(tz);
  return tz ? *tz : nullptr;
}

TEST(DateTimeTest, YearPrecision) {
  auto v = FhirDateTime::Parse("2026");
  ASSERT_TRUE(v) << v.error().message;
  EXPECT_EQ(v->precision(), DateTimePrecision::kYear);
  EXPECT_EQ(v->year(), 2026);
  EXPECT_EQ(v->month(), 0u);
  EXPECT_FALSE(v->offset());
  EXPECT_EQ(v->text(), "2026");
  EXPECT_EQ(v->Range(), (InstantRange{Utc("2026-01-01T00:00:00Z"), Utc("2027-01-01T00:00:00Z")}));
  // Without a zone in the text, the caller's zone decides: New York is UTC-5 in January.
  EXPECT_EQ(v->Range(NewYork()),
            (InstantRange{Utc("2026-01-01T05:00:00Z"), Utc("2027-01-01T05:00:00Z")}));
}

TEST(DateTimeTest, MonthAndDayPrecision) {
  auto m = FhirDateTime::Parse("2026-10");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->precision(), DateTimePrecision::kMonth);
  EXPECT_EQ(m->month(), 10u);
  EXPECT_EQ(m->Range(), (InstantRange{Utc("2026-10-01T00:00:00Z"), Utc("2026-11-01T00:00:00Z")}));
  // October starts in EDT (-4) and November 1 00:00 is still EDT (DST ends at 02:00).
  EXPECT_EQ(m->Range(NewYork()),
            (InstantRange{Utc("2026-10-01T04:00:00Z"), Utc("2026-11-01T04:00:00Z")}));

  auto d = FhirDateTime::ParseDate("2026-10-05");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->precision(), DateTimePrecision::kDay);
  EXPECT_EQ(d->kind(), DateTimeKind::kDate);
  EXPECT_EQ(d->day(), 5u);
  EXPECT_EQ(d->Range(), (InstantRange{Utc("2026-10-05T00:00:00Z"), Utc("2026-10-06T00:00:00Z")}));
  EXPECT_EQ(d->Range(NewYork()).duration(), hours(24));
}

TEST(DateTimeTest, SecondPrecisionWithZuluAndOffsets) {
  auto z = FhirDateTime::Parse("2026-10-05T14:30:00Z");
  ASSERT_TRUE(z);
  EXPECT_EQ(z->precision(), DateTimePrecision::kSecond);
  EXPECT_EQ(z->offset(), minutes(0));
  EXPECT_EQ(z->hour(), 14u);
  EXPECT_EQ(z->minute(), 30u);
  EXPECT_EQ(z->Range().duration(), std::chrono::seconds(1));
  // An explicit offset wins over the caller's zone.
  EXPECT_EQ(z->Range(NewYork()), z->Range());

  auto plus2 = FhirDateTime::Parse("2026-10-05T14:30:00.123+02:00");
  ASSERT_TRUE(plus2);
  EXPECT_EQ(plus2->offset(), hours(2));
  EXPECT_EQ(plus2->microsecond(), 123000u);
  EXPECT_EQ(plus2->fraction_digits(), 3u);
  EXPECT_EQ(plus2->Earliest(), Utc("2026-10-05T12:30:00Z") + std::chrono::milliseconds(123));
  EXPECT_EQ(plus2->Range().duration(), std::chrono::milliseconds(1));

  auto east = FhirDateTime::Parse("2026-01-01T00:00:00+14:00");
  ASSERT_TRUE(east) << east.error().message;
  EXPECT_EQ(east->Earliest(), Utc("2025-12-31T10:00:00Z"));
  auto west = FhirDateTime::Parse("2026-01-01T00:00:00-12:00");
  ASSERT_TRUE(west);
  EXPECT_EQ(west->offset(), hours(-12));
  EXPECT_EQ(west->Earliest(), Utc("2026-01-01T12:00:00Z"));
  auto half = FhirDateTime::Parse("2026-01-01T00:00:00-03:30");
  ASSERT_TRUE(half);
  EXPECT_EQ(half->Earliest(), Utc("2026-01-01T03:30:00Z"));
}

TEST(DateTimeTest, FractionalSecondsOfAnyLength) {
  auto one = FhirDateTime::Parse("2026-10-05T14:30:00.5Z");
  ASSERT_TRUE(one);
  EXPECT_EQ(one->microsecond(), 500000u);
  EXPECT_EQ(one->Range().duration(), std::chrono::milliseconds(100));
  auto nine = FhirDateTime::Parse("2026-10-05T14:30:00.123456789Z");
  ASSERT_TRUE(nine);
  EXPECT_EQ(nine->microsecond(), 123456u);
  EXPECT_EQ(nine->fraction_digits(), 9u);
  EXPECT_EQ(nine->text(), "2026-10-05T14:30:00.123456789Z");
  EXPECT_EQ(nine->Range().duration(), Micros(1));
  EXPECT_FALSE(FhirDateTime::Parse("2026-10-05T14:30:00.Z"));
}

TEST(DateTimeTest, InstantNeedsFullPrecision) {
  EXPECT_TRUE(FhirDateTime::ParseInstant("2015-02-07T13:28:17.239+02:00"));
  EXPECT_FALSE(FhirDateTime::ParseInstant("2015-02-07"));
  EXPECT_FALSE(FhirDateTime::ParseInstant("2015"));
  EXPECT_FALSE(FhirDateTime::ParseInstant("2015-02-07T13:28:17"));
}

TEST(DateTimeTest, DateRejectsTime) {
  auto r = FhirDateTime::ParseDate("2015-02-07T13:28:17Z");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("no time part"), std::string::npos) << r.error().message;
}

TEST(DateTimeTest, RejectsInvalidText) {
  struct Case {
    const char* text;
    const char* why;
  };
  const Case cases[] = {
      {"", "4-digit year"},
      {"26", "4-digit year"},
      {"0000", "year 0000"},
      {"2026-02-30", "no such calendar date"},
      {"2026-13-01", "month must be 01-12"},
      {"2026-00", "month must be 01-12"},
      {"2026-1-01", "-MM"},
      {"2026-10-5", "-DD"},
      {"2100-02-29", "no such calendar date"},
      {"2026-10-05T24:00:00Z", "hour 24"},
      {"2026-10-05T23:60:00Z", "minute"},
      {"2016-12-31T23:59:60Z", "leap second"},
      {"2026-10-05T14:30Z", "hh:mm:ss"},
      {"2026-10-05T14:30:00", "needs a time zone"},
      {"2026-10-05 14:30:00Z", "'T'"},
      {"2026-10-05T14:30:00+14:30", "between -14:00 and +14:00"},
      {"2026-10-05T14:30:00-15:00", "between -14:00 and +14:00"},
      {"2026-10-05T14:30:00+0200", "Z or +hh:mm"},
      {"2026-10-05T14:30:00Zjunk", "unexpected text"},
      {"2026-10-05x", "'T'"},
  };
  for (const auto& c : cases) {
    auto r = FhirDateTime::Parse(c.text);
    ASSERT_FALSE(r) << c.text;
    EXPECT_TRUE(r.error().is(Errc::kInvalidArgument));
    EXPECT_NE(r.error().message.find(c.why), std::string::npos)
        << c.text << " -> " << r.error().message;
  }
}

TEST(DateTimeTest, LeapYears) {
  EXPECT_TRUE(FhirDateTime::Parse("2024-02-29"));
  EXPECT_TRUE(FhirDateTime::Parse("2000-02-29"));
  EXPECT_FALSE(FhirDateTime::Parse("2026-02-29"));
}

TEST(DateTimeTest, MonthRangeAcrossDstInNewYork) {
  const auto* ny = NewYork();
  // 2026: DST starts Sunday March 8, ends Sunday November 1.
  auto march = MonthRange(2026, 3, ny);
  ASSERT_TRUE(march);
  EXPECT_EQ(march->start, Utc("2026-03-01T05:00:00Z"));
  EXPECT_EQ(march->end, Utc("2026-04-01T04:00:00Z"));
  EXPECT_EQ(march->duration(), hours(31 * 24 - 1));
  auto november = MonthRange(2026, 11, ny);
  ASSERT_TRUE(november);
  EXPECT_EQ(november->start, Utc("2026-11-01T04:00:00Z"));
  EXPECT_EQ(november->end, Utc("2026-12-01T05:00:00Z"));
  EXPECT_EQ(november->duration(), hours(30 * 24 + 1));
  auto december = MonthRange(2026, 12, ny);
  ASSERT_TRUE(december);
  EXPECT_EQ(december->end, Utc("2027-01-01T05:00:00Z"));
  // Consecutive months tile time without gaps.
  EXPECT_EQ(MonthRange(2026, 10, ny)->end, november->start);
  EXPECT_FALSE(MonthRange(2026, 13, ny));
  EXPECT_FALSE(MonthRange(2026, 0, ny));
  EXPECT_EQ(MonthRange(2026, 2)->duration(), hours(28 * 24));
}

TEST(DateTimeTest, DayRangeOnDstDays) {
  const auto* ny = NewYork();
  EXPECT_EQ(DayRange(date::year{2026} / 3 / 8, ny)->duration(), hours(23));
  EXPECT_EQ(DayRange(date::year{2026} / 11 / 1, ny)->duration(), hours(25));
  EXPECT_EQ(DayRange(date::year{2026} / 11 / 2, ny)->duration(), hours(24));
  EXPECT_FALSE(DayRange(date::year{2026} / 2 / 30, ny));
  // A partial date on the spring-forward day resolves the same way.
  auto d = FhirDateTime::Parse("2026-03-08");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->Range(ny), (InstantRange{Utc("2026-03-08T05:00:00Z"), Utc("2026-03-09T04:00:00Z")}));
}

TEST(DateTimeTest, LocalTimesInDstGapAndOverlap) {
  const auto* ny = NewYork();
  using date::local_days;
  const auto local = [](date::year_month_day d, hours h, minutes m) {
    return date::local_time<Micros>{local_days{d}.time_since_epoch() + h + m};
  };
  // 02:30 on 2026-03-08 does not exist in New York: it maps to the end of the gap (03:00 EDT).
  EXPECT_EQ(LocalToUtc(local(date::year{2026} / 3 / 8, hours(2), minutes(30)), ny),
            Utc("2026-03-08T07:00:00Z"));
  // 01:30 on 2026-11-01 happens twice: the earlier (EDT, -4) instant is chosen.
  EXPECT_EQ(LocalToUtc(local(date::year{2026} / 11 / 1, hours(1), minutes(30)), ny),
            Utc("2026-11-01T05:30:00Z"));
  // Normal times use the offset in force.
  EXPECT_EQ(LocalToUtc(local(date::year{2026} / 7 / 1, hours(12), minutes(0)), ny),
            Utc("2026-07-01T16:00:00Z"));
}

TEST(DateTimeTest, MidnightDstGapZone) {
  // Brazil (until 2019) moved clocks forward at local midnight: 2018-11-04 00:00 did not exist.
  auto sp = LocateZone("America/Sao_Paulo");
  ASSERT_TRUE(sp);
  auto day = DayRange(date::year{2018} / 11 / 4, *sp);
  ASSERT_TRUE(day);
  EXPECT_EQ(day->start, Utc("2018-11-04T03:00:00Z"));
  EXPECT_EQ(day->duration(), hours(23));
}

TEST(DateTimeTest, MonthBoundaryDependsOnZone) {
  const auto* ny = NewYork();
  auto late = FhirDateTime::Parse("2026-10-31T23:30:00-04:00");
  ASSERT_TRUE(late);
  EXPECT_TRUE(MonthRange(2026, 10, ny)->Contains(late->Earliest()));
  EXPECT_FALSE(MonthRange(2026, 10)->Contains(late->Earliest()));
  EXPECT_TRUE(MonthRange(2026, 11)->Contains(late->Earliest()));
  // The range end is exclusive.
  EXPECT_FALSE(MonthRange(2026, 10, ny)->Contains(Utc("2026-11-01T04:00:00Z")));
  EXPECT_TRUE(MonthRange(2026, 10, ny)->Contains(Utc("2026-11-01T03:59:59Z")));
}

TEST(DateTimeTest, FormatAndFromTimePoint) {
  const TimePoint t = Utc("2026-10-05T14:30:00Z");
  EXPECT_EQ(FormatUtc(t), "2026-10-05T14:30:00Z");
  EXPECT_EQ(FormatUtc(t + Micros(42)), "2026-10-05T14:30:00.000042Z");
  auto v = FhirDateTime::FromTimePoint(t + std::chrono::milliseconds(250));
  EXPECT_EQ(v.text(), "2026-10-05T14:30:00.250000Z");
  EXPECT_EQ(v.Earliest(), t + std::chrono::milliseconds(250));
  EXPECT_EQ(FormatUtc(Utc("1969-12-31T23:59:59Z")), "1969-12-31T23:59:59Z");
}

TEST(DateTimeTest, Time) {
  auto t = ParseFhirTime("14:30:05.25");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->hour, 14u);
  EXPECT_EQ(t->second, 5u);
  EXPECT_EQ(t->since_midnight(), hours(14) + minutes(30) + std::chrono::milliseconds(5250));
  EXPECT_FALSE(ParseFhirTime("24:00:00"));
  EXPECT_FALSE(ParseFhirTime("14:30"));
  EXPECT_FALSE(ParseFhirTime("14:30:00Z"));
  EXPECT_FALSE(ParseFhirTime("23:59:60"));
}

TEST(DateTimeTest, UnknownZone) {
  auto tz = LocateZone("Mars/Olympus_Mons");
  ASSERT_FALSE(tz);
  EXPECT_NE(tz.error().message.find("Mars/Olympus_Mons"), std::string::npos);
}

TEST(InstantRangeTest, ContainsAndOverlaps) {
  const InstantRange a{Utc("2026-01-01T00:00:00Z"), Utc("2026-01-02T00:00:00Z")};
  const InstantRange b{Utc("2026-01-02T00:00:00Z"), Utc("2026-01-03T00:00:00Z")};
  EXPECT_FALSE(a.Overlaps(b));  // touching half-open ranges share no instant
  EXPECT_TRUE(a.Overlaps({Utc("2026-01-01T23:59:59Z"), b.end}));
  const InstantRange open{};
  EXPECT_TRUE(open.Overlaps(a));
  EXPECT_FALSE(open.duration());
  EXPECT_TRUE(a.Contains(a.start));
  EXPECT_FALSE(a.Contains(a.end));
}

}  // namespace
}  // namespace ccm::fhir
