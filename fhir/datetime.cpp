#include "fhir/datetime.h"

#include <exception>

#include <fmt/format.h>

namespace ccm::fhir {
namespace {

using std::chrono::days;
using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;

std::string_view KindName(DateTimeKind k) {
  switch (k) {
    case DateTimeKind::kDate:
      return "date";
    case DateTimeKind::kDateTime:
      return "dateTime";
    case DateTimeKind::kInstant:
      return "instant";
  }
  return "dateTime";
}

// Error messages quote the input, shortened so garbage input cannot produce huge messages.
Error Bad(std::string_view what, std::string_view text, std::string_view why) {
  constexpr std::size_t kMaxQuoted = 64;
  const bool cut = text.size() > kMaxQuoted;
  return MakeError(Errc::kInvalidArgument,
                   fmt::format("invalid FHIR {} \"{}{}\": {}", what, text.substr(0, kMaxQuoted),
                               cut ? "..." : "", why));
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Reads exactly `n` digits at `pos`; false when any is missing or not a digit.
bool ReadDigits(std::string_view s, std::size_t pos, std::size_t n, unsigned& out) {
  if (pos + n > s.size()) return false;
  unsigned v = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const char c = s[pos + i];
    if (!IsDigit(c)) return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  out = v;
  return true;
}

struct TimeOfDay {
  unsigned hour = 0, minute = 0, second = 0;
  std::uint32_t micros = 0;
  unsigned fraction_digits = 0;
};

// Parses `hh:mm:ss(.f+)?` at `pos`, advancing it. Returns an empty string on success, else why not.
// R4 §2.24.0.1: hours 00-23 (no 24:00), seconds 00-59 (+60, which we reject: see header).
std::string_view ParseTimeOfDay(std::string_view s, std::size_t& pos, TimeOfDay& t) {
  if (!ReadDigits(s, pos, 2, t.hour) || pos + 2 >= s.size() || s[pos + 2] != ':' ||
      !ReadDigits(s, pos + 3, 2, t.minute) || pos + 5 >= s.size() || s[pos + 5] != ':' ||
      !ReadDigits(s, pos + 6, 2, t.second)) {
    return "time must be hh:mm:ss (seconds are required)";
  }
  if (t.hour == 24) return "hour 24 is not allowed (use 00:00 of the next day)";
  if (t.hour > 23) return "hour must be 00-23";
  if (t.minute > 59) return "minute must be 00-59";
  if (t.second == 60) return "leap second :60 is not supported (use :59)";
  if (t.second > 59) return "second must be 00-59";
  pos += 8;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    std::uint32_t micros = 0;
    unsigned n = 0;
    while (pos < s.size() && IsDigit(s[pos])) {
      // Digits past the sixth are kept in the text only (truncation toward the earliest instant).
      if (n < 6) micros = micros * 10 + static_cast<std::uint32_t>(s[pos] - '0');
      ++n;
      ++pos;
    }
    if (n == 0) return "a '.' must be followed by fraction digits";
    for (unsigned i = n; i < 6; ++i) micros *= 10;
    t.micros = micros;
    t.fraction_digits = n;
  }
  return {};
}

}  // namespace

Result<FhirDateTime> FhirDateTime::Parse(std::string_view text, DateTimeKind kind) {
  const std::string_view what = KindName(kind);
  FhirDateTime v;
  v.kind_ = kind;
  unsigned year = 0;
  if (!ReadDigits(text, 0, 4, year)) return Bad(what, text, "must start with a 4-digit year");
  if (year == 0) return Bad(what, text, "year 0000 is not allowed");
  v.year_ = static_cast<int>(year);
  std::size_t pos = 4;
  const auto done = [&](DateTimePrecision p) -> Result<FhirDateTime> {
    if (kind == DateTimeKind::kInstant) {
      return Bad(what, text, "an instant needs a full date, time and time zone");
    }
    v.precision_ = p;
    v.text_ = std::string(text);
    return v;
  };
  if (pos == text.size()) return done(DateTimePrecision::kYear);
  if (text[pos] != '-' || !ReadDigits(text, pos + 1, 2, v.month_)) {
    return Bad(what, text, "expected -MM after the year");
  }
  if (v.month_ < 1 || v.month_ > 12) return Bad(what, text, "month must be 01-12");
  pos += 3;
  if (pos == text.size()) return done(DateTimePrecision::kMonth);
  if (text[pos] != '-' || !ReadDigits(text, pos + 1, 2, v.day_)) {
    return Bad(what, text, "expected -DD after the month");
  }
  const date::year_month_day ymd{date::year{v.year_}, date::month{v.month_}, date::day{v.day_}};
  if (!ymd.ok()) return Bad(what, text, "no such calendar date");
  pos += 3;
  if (pos == text.size()) return done(DateTimePrecision::kDay);
  if (kind == DateTimeKind::kDate) return Bad(what, text, "a date has no time part");
  if (text[pos] != 'T') return Bad(what, text, "expected 'T' before the time");
  ++pos;
  TimeOfDay t;
  if (auto why = ParseTimeOfDay(text, pos, t); !why.empty()) return Bad(what, text, why);
  v.hour_ = t.hour;
  v.minute_ = t.minute;
  v.second_ = t.second;
  v.micros_ = t.micros;
  v.fraction_digits_ = t.fraction_digits;
  // R4 §2.24.0.1: "If hours and minutes are specified, a time zone SHALL be populated".
  if (pos == text.size()) {
    return Bad(what, text, "a time needs a time zone (Z or +hh:mm/-hh:mm)");
  }
  if (text[pos] == 'Z') {
    ++pos;
  } else if (text[pos] == '+' || text[pos] == '-') {
    unsigned oh = 0, om = 0;
    if (!ReadDigits(text, pos + 1, 2, oh) || pos + 3 >= text.size() || text[pos + 3] != ':' ||
        !ReadDigits(text, pos + 4, 2, om)) {
      return Bad(what, text, "time zone must be Z or +hh:mm/-hh:mm");
    }
    if (om > 59 || oh > 14 || (oh == 14 && om != 0)) {
      return Bad(what, text, "time zone offset must be between -14:00 and +14:00");
    }
    v.offset_minutes_ = static_cast<int>(oh * 60 + om) * (text[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return Bad(what, text, "time zone must be Z or +hh:mm/-hh:mm");
  }
  if (pos != text.size()) return Bad(what, text, "unexpected text after the time zone");
  v.has_offset_ = true;
  v.precision_ = DateTimePrecision::kSecond;
  v.text_ = std::string(text);
  return v;
}

FhirDateTime FhirDateTime::FromTimePoint(TimePoint t) {
  auto parsed = Parse(FormatUtc(t), DateTimeKind::kInstant);
  // FormatUtc always yields a valid instant for years 1..9999; outside that, fall back to epoch.
  if (!parsed) return *Parse("1970-01-01T00:00:00Z", DateTimeKind::kInstant);
  return std::move(*parsed);
}

InstantRange FhirDateTime::Range(const date::time_zone* tz) const {
  const date::year y{year_};
  if (precision_ == DateTimePrecision::kSecond) {
    const date::sys_days d{date::year_month_day{y, date::month{month_}, date::day{day_}}};
    const TimePoint local{d.time_since_epoch() + hours(hour_) + minutes(minute_) +
                          seconds(second_) + Micros(micros_)};
    // A written offset is local minus UTC, so UTC = local - offset (RFC 3339 §4.2).
    const TimePoint start = local - minutes(offset_minutes_);
    Micros unit = seconds(1);
    if (fraction_digits_ > 0) {
      std::int64_t u = 1;
      for (unsigned i = fraction_digits_; i < 6; ++i) u *= 10;
      unit = Micros(u);
    }
    return {start, start + unit};
  }
  // Partial dates: from local midnight starting the span to local midnight starting the next one.
  date::year_month_day first, next;
  switch (precision_) {
    case DateTimePrecision::kYear:
      first = y / date::January / 1;
      next = (y + date::years(1)) / date::January / 1;
      break;
    case DateTimePrecision::kMonth: {
      const auto ym = y / date::month{month_};
      const auto ym_next = ym + date::months(1);
      first = ym / 1;
      next = ym_next / 1;
      break;
    }
    default: {
      first = y / date::month{month_} / date::day{day_};
      next = date::year_month_day{date::sys_days{first} + days(1)};
      break;
    }
  }
  const auto to_local = [](date::year_month_day ymd) {
    return date::local_time<Micros>{date::local_days{ymd}.time_since_epoch()};
  };
  return {LocalToUtc(to_local(first), tz), LocalToUtc(to_local(next), tz)};
}

Result<FhirTime> ParseFhirTime(std::string_view text) {
  std::size_t pos = 0;
  TimeOfDay t;
  if (auto why = ParseTimeOfDay(text, pos, t); !why.empty()) return Bad("time", text, why);
  if (pos != text.size()) return Bad("time", text, "a time has no time zone or other suffix");
  return FhirTime{std::string(text), t.hour, t.minute, t.second, t.micros};
}

Result<const date::time_zone*> LocateZone(std::string_view name) {
  try {
    return date::locate_zone(name);
  } catch (const std::exception&) {
    // date::locate_zone reports an unknown name by throwing std::runtime_error.
    return MakeError(Errc::kInvalidArgument,
                     fmt::format("unknown IANA time zone \"{}\"", name.substr(0, 64)));
  }
}

TimePoint LocalToUtc(date::local_time<Micros> local, const date::time_zone* tz) {
  if (tz == nullptr) return TimePoint{local.time_since_epoch()};
  const auto info = tz->get_info(std::chrono::floor<seconds>(local));
  switch (info.result) {
    case date::local_info::nonexistent:
      // In a DST gap (e.g. 02:30 on a New York spring-forward day): the clock jumps from the end
      // of `first`; mapping to that transition keeps consecutive ranges contiguous.
      return TimePoint{info.first.end};
    case date::local_info::ambiguous:  // fall-back overlap: the earlier instant (first offset)
    case date::local_info::unique:
    default:
      return TimePoint{local.time_since_epoch() - info.first.offset};
  }
}

Result<InstantRange> MonthRange(int year, unsigned month, const date::time_zone* tz) {
  if (month < 1 || month > 12) {
    return MakeError(Errc::kInvalidArgument, fmt::format("month {} is not 1-12", month));
  }
  if (year < 1 || year > 9999) {
    return MakeError(Errc::kInvalidArgument, fmt::format("year {} is not 1-9999", year));
  }
  const auto ym = date::year{year} / date::month{month};
  const auto start = date::local_days{ym / 1};
  const auto end = date::local_days{(ym + date::months(1)) / 1};
  return InstantRange{LocalToUtc(date::local_time<Micros>{start.time_since_epoch()}, tz),
                      LocalToUtc(date::local_time<Micros>{end.time_since_epoch()}, tz)};
}

Result<InstantRange> DayRange(date::year_month_day day, const date::time_zone* tz) {
  if (!day.ok()) return MakeError(Errc::kInvalidArgument, "not a valid calendar date");
  const auto start = date::local_days{day};
  const auto end = start + days(1);
  return InstantRange{LocalToUtc(date::local_time<Micros>{start.time_since_epoch()}, tz),
                      LocalToUtc(date::local_time<Micros>{end.time_since_epoch()}, tz)};
}

std::string NowUtc() {
  return FormatUtc(std::chrono::time_point_cast<Micros>(
      std::chrono::floor<std::chrono::milliseconds>(std::chrono::system_clock::now())));
}

std::string FormatUtc(TimePoint t) {
  const auto d = std::chrono::floor<days>(t);
  const date::year_month_day ymd{date::sys_days{d.time_since_epoch()}};
  const date::hh_mm_ss<Micros> tod{t - d};
  std::string out =
      fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", static_cast<int>(ymd.year()),
                  static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                  tod.hours().count(), tod.minutes().count(), tod.seconds().count());
  if (tod.subseconds().count() != 0) out += fmt::format(".{:06}", tod.subseconds().count());
  out += 'Z';
  return out;
}

}  // namespace ccm::fhir
