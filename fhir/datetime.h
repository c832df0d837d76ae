// FHIR R4 date/time primitives: `date`, `dateTime`, `instant` and `time` (R4 §2.24.0.1).
//
// What
// - FhirDateTime holds one parsed `date`, `dateTime` or `instant` value with its original text, its
//   precision (year, month, day or second; fractional seconds of any length are kept in the text
//   and resolved to microseconds) and its UTC offset when one was written.
// - Every value denotes a span of time, not a point: `2026-10` is all of October. Range() converts
//   that span to a half-open UTC interval [start, end). A value without an offset (a partial date;
//   FHIR says dates have no time zone) is resolved in a caller-supplied IANA zone (nullptr = UTC).
//   Local times that fall in a DST gap resolve to the instant the gap ends; ambiguous local times
//   (DST overlap) resolve to the earlier instant, so a day or month range never loses any time.
// - MonthRange()/DayRange() give the UTC interval of a civil month/day in a zone, correct across
//   DST changes (a New York March is 31 days minus one hour).
//
// Grammar (R4 regexes; enforced by a hand-written parser, no regex, no iostream):
// - year 0001..9999 exactly four digits; month 01..12; day valid for the month and year (leap
//   years included: 2026-02-30 and 2026-13-01 are errors);
// - time `hh:mm:ss(.f+)?` with hh 00..23 (`24:00` is rejected), seconds 00..59. R4's regex allows
//   `:60`, but a leap second has no representation in UTC sys_time; we REJECT it with an Error
//   rather than silently clamping, so that the caller sees the data problem;
// - offset `Z` or `(+|-)hh:mm` with hh:mm in 00:00..13:59 or exactly 14:00 (so +14:00 and -12:00
//   are valid, +14:30 is not);
// - `date`: year, year-month or full date only; `dateTime`: any of those, or a full date with a
// time,
//   in which case the offset is required ("If hours and minutes are specified, a time zone SHALL be
//   populated"); `instant`: a full date and time with offset only.
//
// Errors: parsing returns Result<...>; the Error (Errc::kInvalidArgument) says which part is wrong
// and quotes the text. Nothing throws on bad data.
// Ownership/thread-safety: values are regular copyable types owning their text; const member
// functions are safe to call concurrently. `const date::time_zone*` arguments point into the tz
// database, which lives for the whole program.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <date/date.h>
#include <date/tz.h>

#include "fhir/result.h"

namespace ccm::fhir {

// Resolution of all instants in this layer.
using Micros = std::chrono::microseconds;
using TimePoint = std::chrono::sys_time<Micros>;

// A half-open UTC interval [start, end). An unbounded side is TimePoint::min()/max().
struct InstantRange {
  TimePoint start = TimePoint::min();
  TimePoint end = TimePoint::max();

  bool Contains(TimePoint t) const noexcept { return start <= t && t < end; }
  // True when the two intervals share at least one instant (empty intervals never overlap).
  bool Overlaps(const InstantRange& o) const noexcept {
    return start < o.end && o.start < end && start < end && o.start < o.end;
  }
  bool bounded() const noexcept { return start != TimePoint::min() && end != TimePoint::max(); }
  // end - start; nullopt when unbounded.
  std::optional<Micros> duration() const noexcept {
    if (!bounded()) return std::nullopt;
    return end - start;
  }
  bool operator==(const InstantRange&) const = default;
};

// Which FHIR primitive a text is parsed as.
enum class DateTimeKind { kDate, kDateTime, kInstant };

// The finest unit the text specifies. kSecond includes any fractional digits.
enum class DateTimePrecision { kYear, kMonth, kDay, kSecond };

class FhirDateTime {
 public:
  // Parses `text` as the given primitive. Error (kInvalidArgument) on any grammar or calendar
  // violation; the message names the problem and quotes the text.
  static Result<FhirDateTime> Parse(std::string_view text,
                                    DateTimeKind kind = DateTimeKind::kDateTime);
  static Result<FhirDateTime> ParseDate(std::string_view text) {
    return Parse(text, DateTimeKind::kDate);
  }
  static Result<FhirDateTime> ParseInstant(std::string_view text) {
    return Parse(text, DateTimeKind::kInstant);
  }
  // An instant with second precision (plus microseconds when non-zero) and offset Z, e.g. for
  // writing Meta.lastUpdated. Text is canonical (`2026-10-05T14:30:00Z`, `...:00.000123Z`).
  static FhirDateTime FromTimePoint(TimePoint t);

  const std::string& text() const noexcept { return text_; }
  DateTimeKind kind() const noexcept { return kind_; }
  DateTimePrecision precision() const noexcept { return precision_; }
  bool has_time() const noexcept { return precision_ == DateTimePrecision::kSecond; }

  int year() const noexcept { return year_; }
  unsigned month() const noexcept { return month_; }              // 0 when not given
  unsigned day() const noexcept { return day_; }                  // 0 when not given
  unsigned hour() const noexcept { return hour_; }                // 0 when no time
  unsigned minute() const noexcept { return minute_; }            // 0 when no time
  unsigned second() const noexcept { return second_; }            // 0 when no time
  std::uint32_t microsecond() const noexcept { return micros_; }  // truncated fraction
  // Number of fraction digits written (0 when none); digits beyond 6 are kept only in text().
  unsigned fraction_digits() const noexcept { return fraction_digits_; }
  // The written UTC offset (`Z` is 0 min); nullopt for dates without a time.
  std::optional<std::chrono::minutes> offset() const noexcept {
    if (!has_offset_) return std::nullopt;
    return std::chrono::minutes(offset_minutes_);
  }

  // The UTC interval the value denotes. Values with an offset ignore `tz`; values without one are
  // local civil time in `tz` (nullptr = UTC).
  InstantRange Range(const date::time_zone* tz = nullptr) const;
  TimePoint Earliest(const date::time_zone* tz = nullptr) const { return Range(tz).start; }
  // Exclusive: the first instant after the value's span.
  TimePoint LatestExclusive(const date::time_zone* tz = nullptr) const { return Range(tz).end; }

  // Equality on the original text (FHIR compares by value+precision; identical text is the safe
  // subset).
  bool operator==(const FhirDateTime& o) const noexcept { return text_ == o.text_; }

 private:
  std::string text_;
  DateTimeKind kind_ = DateTimeKind::kDateTime;
  DateTimePrecision precision_ = DateTimePrecision::kYear;
  int year_ = 1970;
  unsigned month_ = 0, day_ = 0, hour_ = 0, minute_ = 0, second_ = 0;
  std::uint32_t micros_ = 0;
  unsigned fraction_digits_ = 0;
  bool has_offset_ = false;
  int offset_minutes_ = 0;
};

// FHIR `time` (R4 §2.24.0.1): `hh:mm:ss(.f+)?`, a time of day without a zone, 00:00:00..23:59:59.
struct FhirTime {
  std::string text;
  unsigned hour = 0, minute = 0, second = 0;
  std::uint32_t microsecond = 0;
  // Offset from local midnight.
  Micros since_midnight() const noexcept {
    return std::chrono::hours(hour) + std::chrono::minutes(minute) + std::chrono::seconds(second) +
           Micros(microsecond);
  }
};
Result<FhirTime> ParseFhirTime(std::string_view text);

// Looks up an IANA zone ("America/New_York"); Error (kInvalidArgument) when unknown. Thread-safe.
Result<const date::time_zone*> LocateZone(std::string_view name);

// Converts a local civil time to UTC in `tz` (nullptr = UTC): gap times map to the end of the gap,
// ambiguous times to the earlier instant.
TimePoint LocalToUtc(date::local_time<Micros> local, const date::time_zone* tz);

// The UTC interval of civil month `month` (1..12) of `year` in `tz` (nullptr = UTC).
// Error (kInvalidArgument) when month is out of range or the year is outside 1..9999.
Result<InstantRange> MonthRange(int year, unsigned month, const date::time_zone* tz = nullptr);
// The UTC interval of a civil day in `tz`; Error when the date is not a valid calendar date.
Result<InstantRange> DayRange(date::year_month_day day, const date::time_zone* tz = nullptr);

// RFC 3339 text of a UTC instant, e.g. "2026-10-05T14:30:00Z" (fraction only when non-zero).
std::string FormatUtc(TimePoint t);
// FormatUtc of the system clock's now, to the millisecond.
std::string NowUtc();

}  // namespace ccm::fhir
