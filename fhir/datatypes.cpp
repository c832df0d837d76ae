#include "fhir/datatypes.h"

#include <algorithm>
#include <cctype>
#include <iterator>

#include <fmt/format.h>

#include "fhir/r4_model.h"

namespace ccm::fhir {
namespace {

Error BadReference(std::string_view text, std::string_view why) {
  return MakeError(Errc::kInvalidArgument,
                   fmt::format("invalid reference \"{}\": {}", text.substr(0, 120), why));
}

// RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
bool IsScheme(std::string_view s) {
  if (s.empty() || !std::isalpha(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.';
  });
}

// Splits "Type/id" or "Type/id/_history/v" at the end of `s`. On success sets type/id/version and
// returns the length of `s` consumed from the end (so the caller can take the base before it).
std::size_t MatchRestTail(std::string_view s, Reference& r) {
  std::vector<std::string_view> seg;
  std::size_t end = s.size();
  // Collect up to four trailing segments.
  while (seg.size() < 4) {
    const std::size_t slash = s.rfind('/', end == 0 ? 0 : end - 1);
    if (slash == std::string_view::npos || end == 0) {
      seg.push_back(s.substr(0, end));
      break;
    }
    seg.push_back(s.substr(slash + 1, end - slash - 1));
    end = slash;
  }
  // seg[0] is the last segment.
  if (seg.size() >= 4 && seg[1] == "_history" && IsValidId(seg[0]) && IsValidId(seg[2]) &&
      IsResourceType(seg[3])) {
    r.type = std::string(seg[3]);
    r.id = std::string(seg[2]);
    r.version = std::string(seg[0]);
    return seg[3].size() + seg[2].size() + seg[1].size() + seg[0].size() + 3;
  }
  if (seg.size() >= 2 && IsValidId(seg[0]) && IsResourceType(seg[1])) {
    r.type = std::string(seg[1]);
    r.id = std::string(seg[0]);
    return seg[1].size() + seg[0].size() + 1;
  }
  return 0;
}

// Reports a JSON value that should be an array of elements (R4 §2.6.2: repeating elements are
// always arrays in JSON, even with one item).
bool CheckArray(const json::Value& v, std::string_view path, IssueList& issues) {
  if (v.is_null() || v.is_array()) return true;
  issues.Error(IssueCode::kStructure, std::string(path),
               fmt::format("expected a JSON array, found {}", json::KindName(v.kind())));
  return false;
}

bool CheckObject(const json::Value& v, std::string_view path, IssueList& issues) {
  if (v.is_null() || v.is_object()) return true;
  issues.Error(IssueCode::kStructure, std::string(path),
               fmt::format("expected a JSON object, found {}", json::KindName(v.kind())));
  return false;
}

}  // namespace

bool IsResourceType(std::string_view s) noexcept {
  return r4::IsResourceType(s);  // the list generated from the R4 spec (r4_model_data.inc)
}

std::string JoinPath(std::string_view path, std::string_view member) {
  if (path.empty()) return std::string(member);
  std::string out;
  out.reserve(path.size() + 1 + member.size());
  out.append(path).append(1, '.').append(member);
  return out;
}

std::string IndexPath(std::string_view path, std::size_t index) {
  return fmt::format("{}[{}]", path, index);
}

// R4 §2.24.0.1 uuid: urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}.
bool IsUuidUrn(std::string_view s) noexcept {
  constexpr std::string_view kPrefix = "urn:uuid:";
  if (s.size() != kPrefix.size() + 36 || !s.starts_with(kPrefix)) return false;
  s.remove_prefix(kPrefix.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// R4 §2.24.0.1 oid: urn:oid:[0-2](\.(0|[1-9][0-9]*))+.
bool IsOidUrn(std::string_view s) noexcept {
  constexpr std::string_view kPrefix = "urn:oid:";
  if (!s.starts_with(kPrefix)) return false;
  s.remove_prefix(kPrefix.size());
  if (s.size() < 3 || s[0] < '0' || s[0] > '2') return false;
  std::size_t pos = 1;
  int arcs = 0;
  while (pos < s.size()) {
    if (s[pos] != '.') return false;
    const std::size_t start = ++pos;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') ++pos;
    if (pos == start || (s[start] == '0' && pos - start > 1)) return false;
    ++arcs;
  }
  return arcs > 0;
}

bool IsValidId(std::string_view s) noexcept {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.';
  });
}

std::string ReadString(const json::Value& v, std::string_view path, IssueList& issues) {
  if (v.is_null()) return {};
  if (!v.is_string()) {
    issues.Error(IssueCode::kStructure, std::string(path),
                 fmt::format("expected a JSON string, found {}", json::KindName(v.kind())));
    return {};
  }
  return std::string(v.str());
}

std::optional<bool> ReadBool(const json::Value& v, std::string_view path, IssueList& issues) {
  if (v.is_null()) return std::nullopt;
  if (!v.is_bool()) {
    issues.Error(IssueCode::kStructure, std::string(path),
                 fmt::format("expected true or false, found {}", json::KindName(v.kind())));
    return std::nullopt;
  }
  return v.as_bool();
}

std::optional<FhirDateTime> ReadDateTime(const json::Value& v, std::string_view path,
                                         IssueList& issues, DateTimeKind kind) {
  if (v.is_null()) return std::nullopt;
  if (!v.is_string()) {
    issues.Error(IssueCode::kStructure, std::string(path),
                 fmt::format("expected a date/time string, found {}", json::KindName(v.kind())));
    return std::nullopt;
  }
  auto parsed = FhirDateTime::Parse(v.str(), kind);
  if (!parsed) {
    issues.Error(IssueCode::kValue, std::string(path), parsed.error().message);
    return std::nullopt;
  }
  return std::move(*parsed);
}

Result<Decimal::Parts> Decimal::parts() const {
  // JSON number grammar (RFC 8259 §6), which FHIR decimal follows (R4 §2.24.0.1 decimal).
  const auto bad = [&](std::string_view why) {
    return MakeError(
        Errc::kInvalidArgument,
        fmt::format("invalid decimal \"{}\": {}", std::string_view(text).substr(0, 64), why));
  };
  if (!json::IsJsonNumber(text)) return bad("not a decimal number");
  std::size_t i = 0;
  bool negative = false;
  if (text[i] == '-') {
    negative = true;
    ++i;
  }
  std::int64_t unscaled = 0;
  int significant = 0;
  int scale = 0;
  bool in_fraction = false;
  for (; i < text.size() && text[i] != 'e' && text[i] != 'E'; ++i) {
    if (text[i] == '.') {
      in_fraction = true;
      continue;
    }
    const int digit = text[i] - '0';
    if (in_fraction) ++scale;
    if (significant == 0 && digit == 0) continue;
    if (++significant > 18) return bad("more than 18 significant digits");
    unscaled = unscaled * 10 + digit;
  }
  if (i < text.size()) {  // exponent
    ++i;
    bool exp_negative = false;
    if (text[i] == '+' || text[i] == '-') {
      exp_negative = text[i] == '-';
      ++i;
    }
    int exponent = 0;
    for (; i < text.size(); ++i) {
      exponent = exponent * 10 + (text[i] - '0');
      if (exponent > 400) return bad("exponent out of range");
    }
    scale -= exp_negative ? -exponent : exponent;
  }
  return Parts{negative ? -unscaled : unscaled, scale};
}

Coding ReadCoding(const json::Value& v, std::string_view path, IssueList& issues) {
  Coding c;
  if (!CheckObject(v, path, issues)) return c;
  c.system = ReadString(v["system"], JoinPath(path, "system"), issues);
  c.version = ReadString(v["version"], JoinPath(path, "version"), issues);
  c.code = ReadString(v["code"], JoinPath(path, "code"), issues);
  c.display = ReadString(v["display"], JoinPath(path, "display"), issues);
  c.user_selected = ReadBool(v["userSelected"], JoinPath(path, "userSelected"), issues);
  return c;
}

bool CodeableConcept::HasCode(std::string_view system, std::string_view code) const noexcept {
  return std::any_of(coding.begin(), coding.end(),
                     [&](const Coding& c) { return c.Is(system, code); });
}

const Coding* CodeableConcept::FirstInSystem(std::string_view system) const noexcept {
  for (const auto& c : coding) {
    if (c.system == system) return &c;
  }
  return nullptr;
}

std::string_view CodeableConcept::FirstCode(std::string_view system) const noexcept {
  const Coding* c = FirstInSystem(system);
  return c ? std::string_view(c->code) : std::string_view();
}

CodeableConcept ReadCodeableConcept(const json::Value& v, std::string_view path,
                                    IssueList& issues) {
  CodeableConcept cc;
  if (!CheckObject(v, path, issues)) return cc;
  const std::string coding_path = JoinPath(path, "coding");
  const json::Value& coding = v["coding"];
  if (CheckArray(coding, coding_path, issues)) {
    cc.coding.reserve(coding.size());
    for (std::size_t i = 0; i < coding.size(); ++i) {
      cc.coding.push_back(ReadCoding(coding[i], IndexPath(coding_path, i), issues));
    }
  }
  cc.text = ReadString(v["text"], JoinPath(path, "text"), issues);
  return cc;
}

std::vector<CodeableConcept> ReadCodeableConcepts(const json::Value& array, std::string_view path,
                                                  IssueList& issues) {
  std::vector<CodeableConcept> out;
  if (!CheckArray(array, path, issues)) return out;
  out.reserve(array.size());
  for (std::size_t i = 0; i < array.size(); ++i) {
    out.push_back(ReadCodeableConcept(array[i], IndexPath(path, i), issues));
  }
  return out;
}

bool AnyHasCode(const std::vector<CodeableConcept>& concepts, std::string_view system,
                std::string_view code) noexcept {
  return std::any_of(concepts.begin(), concepts.end(),
                     [&](const CodeableConcept& c) { return c.HasCode(system, code); });
}

InstantRange Period::Range(const date::time_zone* tz) const {
  InstantRange r;
  if (start) r.start = start->Earliest(tz);
  // R4 §2.24.0.11: "the end value includes any matching date/time".
  if (end) r.end = end->LatestExclusive(tz);
  return r;
}

std::optional<Micros> Period::Duration(const date::time_zone* tz) const {
  if (!start || !end) return std::nullopt;
  return Range(tz).duration();
}

Period ReadPeriod(const json::Value& v, std::string_view path, IssueList& issues) {
  Period p;
  if (!CheckObject(v, path, issues)) return p;
  p.start = ReadDateTime(v["start"], JoinPath(path, "start"), issues);
  p.end = ReadDateTime(v["end"], JoinPath(path, "end"), issues);
  // per-1: "If present, start SHALL have a lower value than end". Both sides are compared as UTC
  // ranges (the end inclusive of its precision). When exactly one side has an offset the other is a
  // zone-less date whose instants depend on a zone we do not know here (resolved in UTC they can be
  // off by up to 14 h, the largest UTC offset), so only a violation beyond that is reported.
  const bool mixed =
      p.start && p.end && p.start->offset().has_value() != p.end->offset().has_value();
  const auto slack = mixed ? std::chrono::hours(14) : std::chrono::hours(0);
  if (p.start && p.end && p.end->LatestExclusive() + slack <= p.start->Earliest()) {
    issues.Error(
        IssueCode::kInvariant, std::string(path),
        fmt::format("per-1: period start {} is after its end {}", p.start->text(), p.end->text()));
  }
  return p;
}

Identifier ReadIdentifier(const json::Value& v, std::string_view path, IssueList& issues) {
  Identifier id;
  if (!CheckObject(v, path, issues)) return id;
  id.use = ReadString(v["use"], JoinPath(path, "use"), issues);
  id.system = ReadString(v["system"], JoinPath(path, "system"), issues);
  id.value = ReadString(v["value"], JoinPath(path, "value"), issues);
  if (const auto* t = v.find("type"))
    id.type = ReadCodeableConcept(*t, JoinPath(path, "type"), issues);
  if (const auto* p = v.find("period"))
    id.period = ReadPeriod(*p, JoinPath(path, "period"), issues);
  return id;
}

std::vector<Identifier> ReadIdentifiers(const json::Value& array, std::string_view path,
                                        IssueList& issues) {
  std::vector<Identifier> out;
  if (!CheckArray(array, path, issues)) return out;
  out.reserve(array.size());
  for (std::size_t i = 0; i < array.size(); ++i) {
    out.push_back(ReadIdentifier(array[i], IndexPath(path, i), issues));
  }
  return out;
}

std::string_view FindIdentifier(const std::vector<Identifier>& ids,
                                std::string_view system) noexcept {
  for (const auto& id : ids) {
    if (id.system == system) return id.value;
  }
  return {};
}

Quantity ReadQuantity(const json::Value& v, std::string_view path, IssueList& issues) {
  Quantity q;
  if (!CheckObject(v, path, issues)) return q;
  if (const auto* value = v.find("value")) {
    if (value->is_number()) {
      q.value = Decimal{std::string(value->number_text())};
    } else {
      issues.Error(IssueCode::kStructure, JoinPath(path, "value"),
                   fmt::format("expected a JSON number, found {}", json::KindName(value->kind())));
    }
  }
  q.comparator = ReadString(v["comparator"], JoinPath(path, "comparator"), issues);
  if (!q.comparator.empty() && q.comparator != "<" && q.comparator != "<=" &&
      q.comparator != ">=" && q.comparator != ">") {
    issues.Error(IssueCode::kCodeInvalid, JoinPath(path, "comparator"),
                 fmt::format("unknown comparator \"{}\"; expected <, <=, >= or >", q.comparator));
  }
  q.unit = ReadString(v["unit"], JoinPath(path, "unit"), issues);
  q.system = ReadString(v["system"], JoinPath(path, "system"), issues);
  q.code = ReadString(v["code"], JoinPath(path, "code"), issues);
  return q;
}

QuantityRange ReadRange(const json::Value& v, std::string_view path, IssueList& issues) {
  QuantityRange r;
  if (!CheckObject(v, path, issues)) return r;
  r.low = ReadQuantity(v["low"], JoinPath(path, "low"), issues);
  r.high = ReadQuantity(v["high"], JoinPath(path, "high"), issues);
  return r;
}

Result<Micros> DurationToMicros(const Quantity& q) {
  if (!q.value) return MakeError(Errc::kInvalidArgument, "duration has no value");
  if (!q.comparator.empty()) {
    return MakeError(
        Errc::kInvalidArgument,
        fmt::format("duration with comparator \"{}\" is not an exact amount", q.comparator));
  }
  // R4 Duration (dur-1): "If a code for the unit is present, the system SHALL be UCUM".
  if (!q.system.empty() && q.system != kUcumSystem) {
    return MakeError(Errc::kInvalidArgument,
                     fmt::format("duration unit system \"{}\" is not UCUM", q.system));
  }
  const std::string_view unit = q.code.empty() ? std::string_view(q.unit) : q.code;
  struct UnitFactor {
    std::string_view unit;
    std::int64_t micros;
  };
  static constexpr UnitFactor kUnits[] = {
      {"us", 1},
      {"ms", 1'000},
      {"s", 1'000'000},
      {"min", 60'000'000},
      {"h", 3'600'000'000},
      {"d", 86'400'000'000},
      {"wk", 604'800'000'000},
  };
  std::int64_t factor = 0;
  for (const auto& u : kUnits) {
    if (u.unit == unit) factor = u.micros;
  }
  if (factor == 0) {
    return MakeError(Errc::kInvalidArgument,
                     fmt::format("duration unit \"{}\" is not one of us, ms, s, min, h, d, wk",
                                 unit.substr(0, 32)));
  }
  CCM_TRY_ASSIGN(const Decimal::Parts parts, q.value->parts());
  if (parts.unscaled < 0) {
    return MakeError(Errc::kInvalidArgument, fmt::format("duration {} is negative", q.value->text));
  }
  // value * factor / 10^scale, exactly: reduce the scale by trailing zeros first so that "20.50"
  // does not need more headroom than "20.5".
  std::int64_t unscaled = parts.unscaled;
  int scale = parts.scale;
  while (scale > 0 && unscaled % 10 == 0 && unscaled != 0) {
    unscaled /= 10;
    --scale;
  }
  if (unscaled == 0) return Micros(0);
  std::int64_t product = 0;
  const auto overflow = [&] {
    return MakeError(Errc::kInvalidArgument,
                     fmt::format("duration {} {} is too large", q.value->text, unit));
  };
  if (__builtin_mul_overflow(unscaled, factor, &product)) return overflow();
  for (; scale < 0; ++scale) {
    if (__builtin_mul_overflow(product, std::int64_t{10}, &product)) return overflow();
  }
  for (; scale > 0; --scale) {
    if (product % 10 != 0) {
      return MakeError(
          Errc::kInvalidArgument,
          fmt::format("duration {} {} is not a whole number of microseconds", q.value->text, unit));
    }
    product /= 10;
  }
  return Micros(product);
}

Result<std::chrono::seconds> DurationToSeconds(const Quantity& q) {
  CCM_TRY_ASSIGN(const Micros us, DurationToMicros(q));
  if (us.count() % 1'000'000 != 0) {
    return MakeError(Errc::kInvalidArgument,
                     fmt::format("duration {} {} is not a whole number of seconds",
                                 q.value ? q.value->text : "", q.code.empty() ? q.unit : q.code));
  }
  return std::chrono::duration_cast<std::chrono::seconds>(us);
}

Meta ReadMeta(const json::Value& v, std::string_view path, IssueList& issues) {
  Meta m;
  if (!CheckObject(v, path, issues)) return m;
  m.version_id = ReadString(v["versionId"], JoinPath(path, "versionId"), issues);
  m.last_updated =
      ReadDateTime(v["lastUpdated"], JoinPath(path, "lastUpdated"), issues, DateTimeKind::kInstant);
  m.source = ReadString(v["source"], JoinPath(path, "source"), issues);
  const std::string profile_path = JoinPath(path, "profile");
  if (CheckArray(v["profile"], profile_path, issues)) {
    for (std::size_t i = 0; i < v["profile"].size(); ++i) {
      m.profile.push_back(ReadString(v["profile"][i], IndexPath(profile_path, i), issues));
    }
  }
  for (const auto* name : {"security", "tag"}) {
    const std::string p = JoinPath(path, name);
    const json::Value& arr = v[name];
    if (!CheckArray(arr, p, issues)) continue;
    auto& out = std::string_view(name) == "tag" ? m.tag : m.security;
    for (std::size_t i = 0; i < arr.size(); ++i) {
      out.push_back(ReadCoding(arr[i], IndexPath(p, i), issues));
    }
  }
  return m;
}

std::string_view ToString(ReferenceKind k) noexcept {
  switch (k) {
    case ReferenceKind::kEmpty:
      return "empty";
    case ReferenceKind::kRelative:
      return "relative";
    case ReferenceKind::kAbsolute:
      return "absolute";
    case ReferenceKind::kContained:
      return "contained";
    case ReferenceKind::kUrn:
      return "urn";
    case ReferenceKind::kConditional:
      return "conditional";
    case ReferenceKind::kLogical:
      return "logical";
    case ReferenceKind::kDisplayOnly:
      return "display-only";
  }
  return "empty";
}

std::optional<std::string> Reference::Key() const {
  if ((kind == ReferenceKind::kRelative || kind == ReferenceKind::kAbsolute) && !type.empty() &&
      !id.empty()) {
    return type + "/" + id;
  }
  return std::nullopt;
}

std::optional<Identifier> Reference::SearchIdentifier() const {
  if (kind == ReferenceKind::kConditional) {
    // R4 §3.1.0.5.3 token search: identifier=[system]|[code] (the system part is optional). Only
    // a query consisting of that one parameter is understood.
    constexpr std::string_view kParam = "identifier=";
    if (query.rfind(kParam, 0) != 0 || query.find('&') != std::string::npos) return std::nullopt;
    const std::string_view token = std::string_view(query).substr(kParam.size());
    Identifier found;
    if (const auto bar = token.find('|'); bar != std::string_view::npos) {
      found.system = std::string(token.substr(0, bar));
      found.value = std::string(token.substr(bar + 1));
    } else {
      found.value = std::string(token);
    }
    return found;
  }
  if (identifier) return identifier;
  return std::nullopt;
}

Result<Reference> ParseReferenceString(std::string_view text) {
  Reference r;
  r.reference = std::string(text);
  if (text.empty()) return BadReference(text, "empty reference");
  if (text.find_first_of(" \t\r\n") != std::string_view::npos) {
    return BadReference(text, "contains whitespace");
  }
  // Contained: "#id" ("#" alone refers back to the containing resource; R4 §2.3.0.4).
  if (text[0] == '#') {
    const auto id = text.substr(1);
    if (!id.empty() && !IsValidId(id)) return BadReference(text, "contained id is not a valid id");
    r.kind = ReferenceKind::kContained;
    r.id = std::string(id);
    return r;
  }
  if (text.rfind("urn:", 0) == 0) {
    r.kind = ReferenceKind::kUrn;
    r.urn = std::string(text);
    if (text.rfind("urn:uuid:", 0) == 0) {
      if (!IsUuidUrn(text)) {
        return BadReference(text, "urn:uuid: must be followed by a UUID in lower-case hex");
      }
      return r;
    }
    if (text.rfind("urn:oid:", 0) == 0) {
      if (!IsOidUrn(text)) return BadReference(text, "urn:oid: must be followed by an OID");
      return r;
    }
    return BadReference(text, "only urn:uuid: and urn:oid: URNs are references");
  }
  // Absolute: "scheme://..." where the scheme comes before any '?' (a conditional reference's
  // query may itself contain URLs: "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|1").
  const auto scheme = text.find("://");
  if (scheme != std::string_view::npos && scheme < text.find('?') &&
      IsScheme(text.substr(0, scheme))) {
    r.kind = ReferenceKind::kAbsolute;
    // A FHIR REST URL is [base]/Type/id[/_history/vid]; any other URL is still a valid absolute
    // reference (e.g. to a non-FHIR system), just without a Type/id key.
    const std::size_t tail = MatchRestTail(text.substr(scheme + 3), r);
    if (tail != 0) {
      const std::size_t base_len = text.size() - tail;
      if (base_len > 0 && text[base_len - 1] == '/' && base_len - 1 > scheme + 3) {
        r.base = std::string(text.substr(0, base_len - 1));
      } else {
        // "https://Patient/1": the host is not a base; treat as opaque.
        r.type.clear();
        r.id.clear();
        r.version.clear();
      }
    }
    return r;
  }
  // Conditional: "Type?search" (R4 §3.1.0.11.2, transaction processing; Synthea uses these).
  if (const auto q = text.find('?'); q != std::string_view::npos) {
    const auto type = text.substr(0, q);
    if (!IsResourceType(type)) {
      return BadReference(text, "a conditional reference must be Type?search with an R4 type");
    }
    if (q + 1 == text.size()) return BadReference(text, "conditional reference has no search");
    r.kind = ReferenceKind::kConditional;
    r.type = std::string(type);
    r.query = std::string(text.substr(q + 1));
    return r;
  }
  // Relative: exactly Type/id or Type/id/_history/vid.
  const std::size_t tail = MatchRestTail(text, r);
  if (tail != text.size()) {
    return BadReference(text,
                        "expected Type/id, Type/id/_history/version, an absolute URL, #id, "
                        "urn:uuid:, urn:oid: or Type?search");
  }
  r.kind = ReferenceKind::kRelative;
  return r;
}

Reference ReadReference(const json::Value& v, std::string_view path, IssueList& issues,
                        std::initializer_list<std::string_view> expected_types) {
  Reference r;
  if (!CheckObject(v, path, issues)) return r;
  const std::string ref = ReadString(v["reference"], JoinPath(path, "reference"), issues);
  const std::string type = ReadString(v["type"], JoinPath(path, "type"), issues);
  if (!ref.empty()) {
    auto parsed = ParseReferenceString(ref);
    if (parsed) {
      r = std::move(*parsed);
    } else {
      issues.Error(IssueCode::kValue, JoinPath(path, "reference"), parsed.error().message);
      r.reference = ref;
    }
  }
  if (const auto* ident = v.find("identifier")) {
    r.identifier = ReadIdentifier(*ident, JoinPath(path, "identifier"), issues);
  }
  r.display = ReadString(v["display"], JoinPath(path, "display"), issues);
  if (!type.empty()) {
    // Reference.type is a URI: "Patient" or "http://hl7.org/fhir/StructureDefinition/Patient".
    const auto slash = type.rfind('/');
    const std::string short_type = slash == std::string::npos ? type : type.substr(slash + 1);
    if (!r.type.empty() && r.type != short_type) {
      issues.Error(IssueCode::kInvalid, JoinPath(path, "type"),
                   fmt::format("Reference.type \"{}\" contradicts the reference's type \"{}\"",
                               type, r.type));
    }
    if (r.type.empty()) r.type = short_type;
  }
  if (r.kind == ReferenceKind::kEmpty && r.reference.empty()) {
    if (r.identifier) {
      r.kind = ReferenceKind::kLogical;
    } else if (!r.display.empty()) {
      r.kind = ReferenceKind::kDisplayOnly;
    }
  }
  if (!r.type.empty() && expected_types.size() != 0 &&
      std::find(expected_types.begin(), expected_types.end(), r.type) == expected_types.end()) {
    issues.Error(IssueCode::kValue, std::string(path),
                 fmt::format("reference to a {} is not allowed here; expected {}", r.type,
                             fmt::join(expected_types, " | ")));
  }
  return r;
}

std::vector<Reference> ReadReferences(const json::Value& array, std::string_view path,
                                      IssueList& issues,
                                      std::initializer_list<std::string_view> expected_types) {
  std::vector<Reference> out;
  if (!CheckArray(array, path, issues)) return out;
  out.reserve(array.size());
  for (std::size_t i = 0; i < array.size(); ++i) {
    out.push_back(ReadReference(array[i], IndexPath(path, i), issues, expected_types));
  }
  return out;
}

Annotation ReadAnnotation(const json::Value& v, std::string_view path, IssueList& issues) {
  Annotation a;
  if (!CheckObject(v, path, issues)) return a;
  a.text = ReadString(v["text"], JoinPath(path, "text"), issues);
  a.time = ReadDateTime(v["time"], JoinPath(path, "time"), issues);
  a.author_string = ReadString(v["authorString"], JoinPath(path, "authorString"), issues);
  if (const auto* ar = v.find("authorReference")) {
    a.author_reference = ReadReference(*ar, JoinPath(path, "authorReference"), issues);
  }
  return a;
}

Money ReadMoney(const json::Value& v, std::string_view path, IssueList& issues) {
  Money m;
  if (!CheckObject(v, path, issues)) return m;
  if (const auto* value = v.find("value")) {
    if (value->is_number()) {
      m.value = Decimal{std::string(value->number_text())};
    } else {
      issues.Error(IssueCode::kStructure, JoinPath(path, "value"),
                   fmt::format("expected a JSON number, found {}", json::KindName(value->kind())));
    }
  }
  m.currency = ReadString(v["currency"], JoinPath(path, "currency"), issues);
  return m;
}

}  // namespace ccm::fhir
