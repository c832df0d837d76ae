#include "fhir/validate.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include <fmt/format.h>

#include "fhir/datatypes.h"
#include "fhir/r4_model.h"

namespace ccm::fhir {
namespace {

using r4::ElementInfo;
using r4::StructureInfo;
using r4::TypeKind;

// ---------------------------------------------------------------------------------------------
// Primitive formats (R4 §2.1.28.0.1, the regexes of the primitive type StructureDefinitions),
// hand-written so that nothing is compiled per call.

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// Reads exactly `n` digits at `pos`.
bool Digits(std::string_view s, std::size_t& pos, int n, int& out) {
  if (pos + static_cast<std::size_t>(n) > s.size()) return false;
  int v = 0;
  for (int i = 0; i < n; ++i) {
    char c = s[pos + static_cast<std::size_t>(i)];
    if (!IsDigit(c)) return false;
    v = v * 10 + (c - '0');
  }
  pos += static_cast<std::size_t>(n);
  out = v;
  return true;
}

bool IsLeap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int DaysInMonth(int y, int m) {
  static constexpr std::array<int, 12> kDays = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (m == 2 && IsLeap(y)) return 29;
  return kDays[static_cast<std::size_t>(m - 1)];
}

// A parsed date, dateTime, instant or time. precision: 1 year, 2 month, 3 day, 4 time (seconds and
// fractions are one precision, as in FHIRPath).
struct DateTimeParts {
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  std::string_view fraction;  // digits after '.', may be empty
  int precision = 0;
  bool has_tz = false;
  int tz_minutes = 0;  // offset east of UTC
};

enum class DateKind { kDate, kDateTime, kInstant };

// Parses "hh:mm:ss(.fff)?" at pos.
bool ParseTimeOfDay(std::string_view s, std::size_t& pos, DateTimeParts& p) {
  if (!Digits(s, pos, 2, p.hour) || p.hour > 23) return false;
  if (pos >= s.size() || s[pos] != ':') return false;
  ++pos;
  if (!Digits(s, pos, 2, p.minute) || p.minute > 59) return false;
  if (pos >= s.size() || s[pos] != ':') return false;
  ++pos;
  if (!Digits(s, pos, 2, p.second) || p.second > 60) return false;  // 60: leap second, as R4 allows
  if (pos < s.size() && s[pos] == '.') {
    std::size_t start = ++pos;
    while (pos < s.size() && IsDigit(s[pos])) ++pos;
    if (pos == start) return false;
    p.fraction = s.substr(start, pos - start);
  }
  return true;
}

std::optional<DateTimeParts> ParseDateTime(std::string_view s, DateKind kind) {
  DateTimeParts p;
  std::size_t pos = 0;
  if (!Digits(s, pos, 4, p.year) || p.year == 0) return std::nullopt;  // R4 regexes exclude 0000
  p.precision = 1;
  if (pos < s.size()) {
    if (s[pos] != '-') return std::nullopt;
    ++pos;
    if (!Digits(s, pos, 2, p.month) || p.month < 1 || p.month > 12) return std::nullopt;
    p.precision = 2;
  }
  if (pos < s.size()) {
    if (s[pos] != '-') return std::nullopt;
    ++pos;
    if (!Digits(s, pos, 2, p.day) || p.day < 1 || p.day > DaysInMonth(p.year, p.month)) {
      return std::nullopt;
    }
    p.precision = 3;
  }
  if (pos < s.size()) {
    if (kind == DateKind::kDate || s[pos] != 'T') return std::nullopt;
    ++pos;
    if (!ParseTimeOfDay(s, pos, p)) return std::nullopt;
    p.precision = 4;
    // A time needs a zone in dateTime and instant (R4 regexes): Z or +hh:mm / -hh:mm, up to 14:00.
    if (pos >= s.size()) return std::nullopt;
    if (s[pos] == 'Z') {
      ++pos;
    } else if (s[pos] == '+' || s[pos] == '-') {
      int sign = s[pos] == '-' ? -1 : 1;
      ++pos;
      int h = 0, m = 0;
      if (!Digits(s, pos, 2, h) || pos >= s.size() || s[pos] != ':') return std::nullopt;
      ++pos;
      if (!Digits(s, pos, 2, m) || m > 59 || h > 14 || (h == 14 && m != 0)) return std::nullopt;
      p.tz_minutes = sign * (h * 60 + m);
    } else {
      return std::nullopt;
    }
    p.has_tz = true;
  }
  if (pos != s.size()) return std::nullopt;
  if (kind == DateKind::kInstant && p.precision != 4) return std::nullopt;
  return p;
}

// Days since 1970-01-01 (Howard Hinnant's days_from_civil).
std::int64_t DaysFromCivil(int y, int m, int d) {
  y -= m <= 2 ? 1 : 0;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const std::int64_t yoe = y - era * 400;
  const std::int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const std::int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

std::int64_t EpochSeconds(const DateTimeParts& p) {
  return DaysFromCivil(p.year, p.month, p.day) * 86400 + p.hour * 3600 + p.minute * 60 + p.second -
         static_cast<std::int64_t>(p.tz_minutes) * 60;
}

// Compares fractional-second digit strings as decimals ("5" == "500").
int CompareFraction(std::string_view a, std::string_view b) {
  std::size_t n = std::max(a.size(), b.size());
  for (std::size_t i = 0; i < n; ++i) {
    char ca = i < a.size() ? a[i] : '0';
    char cb = i < b.size() ? b[i] : '0';
    if (ca != cb) return ca < cb ? -1 : 1;
  }
  return 0;
}

// FHIRPath comparison of two date/dateTime values: -1, 0, 1, or nullopt when precisions differ
// and the common components are equal (the result is empty in FHIRPath).
std::optional<int> CompareDateTimes(const DateTimeParts& a, const DateTimeParts& b) {
  if (a.precision == 4 && b.precision == 4) {
    std::int64_t sa = EpochSeconds(a), sb = EpochSeconds(b);
    if (sa != sb) return sa < sb ? -1 : 1;
    return CompareFraction(a.fraction, b.fraction);
  }
  const int common = std::min(a.precision, b.precision);
  const std::array<int, 3> ca = {a.year, a.month, a.day}, cb = {b.year, b.month, b.day};
  for (int i = 0; i < std::min(common, 3); ++i) {
    auto idx = static_cast<std::size_t>(i);
    if (ca[idx] != cb[idx]) return ca[idx] < cb[idx] ? -1 : 1;
  }
  if (a.precision != b.precision) return std::nullopt;
  return 0;
}

bool IsIdChar(char c) {
  return IsDigit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '-' || c == '.';
}

bool IsBase64Char(char c) {
  return IsDigit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '+' || c == '/';
}

// Standard base64 (RFC 4648 §4) with optional whitespace; R4's regex for base64Binary is looser
// about padding but real servers decode it, so undecodable text is rejected.
bool IsBase64(std::string_view s) {
  std::size_t n = 0, pad = 0;
  for (char c : s) {
    if (IsSpace(c)) continue;
    if (c == '=') {
      ++pad;
    } else if (!IsBase64Char(c) || pad > 0) {
      return false;
    }
    ++n;
  }
  return n % 4 == 0 && pad <= 2;
}

// JSON number grammar is guaranteed by the parser; integers must have no fraction or exponent.
std::optional<std::int64_t> ParseInteger(std::string_view s) {
  bool neg = !s.empty() && s[0] == '-';
  std::string_view digits = neg ? s.substr(1) : s;
  if (digits.empty() || digits.size() > 11) return std::nullopt;
  if (digits.size() > 1 && digits[0] == '0') return std::nullopt;
  std::int64_t v = 0;
  for (char c : digits) {
    if (!IsDigit(c)) return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return neg ? -v : v;
}

std::string_view Describe(json::Kind k) {
  switch (k) {
    case json::Kind::kNull:
      return "null";
    case json::Kind::kBool:
      return "a boolean";
    case json::Kind::kNumber:
      return "a number";
    case json::Kind::kString:
      return "a string";
    case json::Kind::kArray:
      return "an array";
    case json::Kind::kObject:
      return "an object";
  }
  return "a value";
}

enum class JsonShape { kString, kNumber, kBool };

JsonShape ShapeOf(std::string_view type) {
  if (type == "boolean") return JsonShape::kBool;
  if (type == "integer" || type == "decimal" || type == "positiveInt" || type == "unsignedInt") {
    return JsonShape::kNumber;
  }
  return JsonShape::kString;
}

constexpr std::size_t kMaxStringBytes = 1024 * 1024;  // R4 §2.1.28.0.1 string: at most 1MB

std::string CheckString(std::string_view type, std::string_view s) {
  if (s.empty()) {
    return "empty strings are not allowed in FHIR JSON; leave the element out instead";
  }
  if (type == "string" || type == "markdown") {
    if (s.size() > kMaxStringBytes) return "strings are limited to 1MB";
    return {};
  }
  if (type == "code") {
    // [^\s]+(\s[^\s]+)*: no leading, trailing or repeated whitespace.
    if (IsSpace(s.front()) || IsSpace(s.back())) {
      return fmt::format("code '{}' has leading or trailing whitespace; remove it", s);
    }
    for (std::size_t i = 1; i < s.size(); ++i) {
      if (IsSpace(s[i]) && IsSpace(s[i - 1])) {
        return fmt::format("code '{}' contains repeated whitespace", s);
      }
    }
    return {};
  }
  if (type == "id") {
    if (s.size() > 64) return fmt::format("Invalid id: too long ({} chars); at most 64", s.size());
    if (!std::all_of(s.begin(), s.end(), IsIdChar)) {
      return fmt::format("Invalid id '{}': only A-Z, a-z, 0-9, '-' and '.' are allowed", s);
    }
    return {};
  }
  if (type == "uri" || type == "url" || type == "canonical") {
    if (std::any_of(s.begin(), s.end(), IsSpace)) {
      return fmt::format("{} '{}' contains whitespace; percent-encode it or remove it", type, s);
    }
    return {};
  }
  if (type == "oid") {
    return IsOidUrn(s) ? std::string() : fmt::format("'{}' is not an oid (urn:oid:1.2.3...)", s);
  }
  if (type == "uuid") {
    return IsUuidUrn(s) ? std::string()
                        : fmt::format("'{}' is not a uuid (urn:uuid: + 36 lowercase hex chars)", s);
  }
  if (type == "date" || type == "dateTime" || type == "instant") {
    DateKind kind = type == "date"       ? DateKind::kDate
                    : type == "dateTime" ? DateKind::kDateTime
                                         : DateKind::kInstant;
    if (ParseDateTime(s, kind)) return {};
    std::string_view form = kind == DateKind::kDate ? "YYYY, YYYY-MM or YYYY-MM-DD"
                            : kind == DateKind::kDateTime
                                ? "YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss(.sss)+zz:zz"
                                : "YYYY-MM-DDThh:mm:ss(.sss)+zz:zz (zone required)";
    return fmt::format("'{}' is not a valid {} (expected {}, a real calendar date)", s, type, form);
  }
  if (type == "time") {
    DateTimeParts p;
    std::size_t pos = 0;
    if (ParseTimeOfDay(s, pos, p) && pos == s.size()) return {};
    return fmt::format("'{}' is not a valid time (expected hh:mm:ss, no zone)", s);
  }
  if (type == "base64Binary") {
    return IsBase64(s) ? std::string() : "the value is not valid base64";
  }
  if (type == "xhtml") {
    // R4 §2.4.0.1 Narrative.div: an XHTML <div> in the XHTML namespace.
    std::size_t i = 0;
    while (i < s.size() && IsSpace(s[i])) ++i;
    std::string_view rest = s.substr(i);
    if (rest.substr(0, 4) != "<div" ||
        (rest.size() > 4 && rest[4] != ' ' && rest[4] != '>' && !IsSpace(rest[4]))) {
      return "narrative must be an XHTML <div> element";
    }
    std::string_view open = rest.substr(0, rest.find('>'));
    if (open.find("http://www.w3.org/1999/xhtml") == std::string_view::npos) {
      return "narrative <div> must declare xmlns=\"http://www.w3.org/1999/xhtml\"";
    }
    return {};
  }
  return {};
}

std::string CheckNumber(std::string_view type, std::string_view text) {
  if (type == "decimal") return {};  // the JSON number grammar is R4's decimal grammar
  auto v = ParseInteger(text);
  if (!v || *v < INT32_MIN || *v > INT32_MAX) {
    return fmt::format("'{}' is not a valid {} (a whole number from -2147483648 to 2147483647)",
                       text, type);
  }
  if (type == "positiveInt" && *v < 1) return fmt::format("'{}' is not a positiveInt (>= 1)", text);
  if (type == "unsignedInt" && *v < 0)
    return fmt::format("'{}' is not an unsignedInt (>= 0)", text);
  return {};
}

// ---------------------------------------------------------------------------------------------
// The walk.

// Appends a path step on construction and removes it on destruction.
class PathStep {
 public:
  PathStep(std::string& path, std::string_view name) : path_(path), size_(path.size()) {
    if (!path.empty()) path.push_back('.');
    path.append(name);
  }
  PathStep(std::string& path, std::size_t index) : path_(path), size_(path.size()) {
    fmt::format_to(std::back_inserter(path), "[{}]", index);
  }
  ~PathStep() { path_.resize(size_); }
  PathStep(const PathStep&) = delete;
  PathStep& operator=(const PathStep&) = delete;

 private:
  std::string& path_;
  std::size_t size_;
};

// What dom-3 needs from one resource: local references ("#id") found anywhere in it (including its
// contained resources), and per contained resource whether it refers to its container ("#").
struct ResourceScope {
  std::vector<std::string_view> local_refs;
  bool refers_to_container = false;
  std::vector<const json::Value*> contained_referring_container;  // direct contained resources
};

class Validator {
 public:
  Validator(const ValidateOptions& options, IssueList& out) : options_(options), out_(out) {}

  void Resource(const json::Value& v, std::string& path, std::size_t depth, ResourceScope& scope,
                bool contained);

 private:
  void Object(const json::Value& obj, const StructureInfo& s, std::string& path, std::size_t depth,
              ResourceScope& scope);
  // Returns the element definition of the member (nullptr when unknown).
  const ElementInfo* Member(const json::Object& members, const json::Member& m,
                            const StructureInfo& s, std::string& path, std::size_t depth,
                            ResourceScope& scope);
  void PrimitiveExtension(const json::Object& members, const json::Member& m, const ElementInfo& e,
                          std::string& path, std::size_t depth, ResourceScope& scope);
  void Item(const ElementInfo& e, const StructureInfo& parent, const json::Value& v,
            std::string& path, std::size_t depth, ResourceScope& scope);
  void Primitive(const ElementInfo& e, const StructureInfo& parent, const json::Value& v,
                 const std::string& path, ResourceScope& scope);
  void Required(const json::Object& members, const StructureInfo& s, const std::string& path);
  void Period(const json::Value& obj, const std::string& path);
  void Extension(const json::Value& obj, const std::string& path);
  void Contained(const json::Value& resource, const std::string& path, const ResourceScope& scope);
  void Bundle(const json::Value& bundle, const std::string& path);
  void SearchSet(const json::Value& bundle, const std::string& path);

  void Error(IssueCode c, const std::string& path, std::string message) {
    out_.Add(Severity::kError, c, path, std::move(message));
  }
  void Warning(IssueCode c, const std::string& path, std::string message) {
    out_.Add(Severity::kWarning, c, path, std::move(message));
  }
  bool TooDeep(std::size_t depth, const std::string& path) {
    if (depth <= options_.max_depth) return false;
    Error(IssueCode::kTooLong, path,
          fmt::format("content is nested more than {} levels deep and was not checked; FHIR "
                      "resources are far shallower, so this is likely malformed",
                      options_.max_depth));
    return true;
  }

  const ValidateOptions& options_;
  IssueList& out_;
};

void Validator::Resource(const json::Value& v, std::string& path, std::size_t depth,
                         ResourceScope& scope, bool contained) {
  if (TooDeep(depth, path)) return;
  if (!v.is_object()) {
    Error(IssueCode::kStructure, path,
          fmt::format("a resource must be a JSON object, not {}", Describe(v.kind())));
    return;
  }
  const json::Value* rt = v.find("resourceType");
  if (rt == nullptr) {
    out_.Add(Severity::kFatal, IssueCode::kInvalid, path,
             "This does not appear to be a FHIR resource: it has no 'resourceType' property; add "
             "\"resourceType\": \"<type>\" naming an R4 resource type");
    return;
  }
  if (!rt->is_string()) {
    out_.Add(Severity::kFatal, IssueCode::kInvalid, path,
             fmt::format("This does not appear to be a FHIR resource: 'resourceType' is {}, not a "
                         "string naming an R4 resource type",
                         Describe(rt->kind())));
    return;
  }
  std::string_view type = rt->str();
  const StructureInfo* s = r4::FindStructure(type);
  if (s == nullptr || s->kind != r4::StructureKind::kResource) {
    out_.Add(Severity::kFatal, IssueCode::kInvalid, path,
             fmt::format("This does not appear to be a FHIR resource (unknown resourceType '{}'); "
                         "use one of the R4 resource types, spelled as in the specification",
                         type));
    return;
  }
  // A top-level resource's paths start with its type (FHIRPath); a nested one keeps its location
  // (`Bundle.entry[0].resource`), as the HL7 validator reports them.
  std::string own_path;
  std::string& p = path.empty() ? own_path : path;
  if (path.empty()) own_path.assign(type);

  Object(v, *s, p, depth, scope);
  if (type == "Bundle") Bundle(v, p);
  if (!contained && v.find("contained") != nullptr) Contained(v, p, scope);
}

void Validator::Object(const json::Value& obj, const StructureInfo& s, std::string& path,
                       std::size_t depth, ResourceScope& scope) {
  if (TooDeep(depth, path)) return;
  const json::Object& members = obj.object();
  const bool is_resource = s.kind == r4::StructureKind::kResource;
  // ele-1: an element needs a value or children other than id (R4 §2.1.27.4 Element).
  if (!is_resource) {
    bool has_content = std::any_of(members.begin(), members.end(),
                                   [](const json::Member& m) { return m.key != "id"; });
    if (!has_content) {
      Error(IssueCode::kInvalid, path,
            members.empty() ? "empty objects are not allowed in FHIR JSON (ele-1); leave the "
                              "element out instead"
                            : "an element must have a value or children other than id (ele-1)");
    }
  }
  std::string_view choice_seen[8];
  std::size_t n_choice = 0;
  for (const json::Member& m : members) {
    if (is_resource && m.key == "resourceType") continue;
    const ElementInfo* e = Member(members, m, s, path, depth, scope);
    // Only one type of a choice element may be present (R4 §2.24.0.1 choice types).
    if (e != nullptr && e->is_choice() && m.key[0] != '_') {
      auto end = choice_seen + n_choice;
      if (std::find(choice_seen, end, e->choice_base) != end) {
        PathStep step(path, m.key);
        Error(IssueCode::kStructure, path,
              fmt::format("more than one type given for the choice element {}[x]; keep only one "
                          "of its {}* properties",
                          e->choice_base, e->choice_base));
      } else if (n_choice < std::size(choice_seen)) {
        choice_seen[n_choice++] = e->choice_base;
      }
    }
  }
  Required(members, s, path);
  if (s.name == "Period") Period(obj, path);
  if (s.name == "Extension") Extension(obj, path);
}

const ElementInfo* Validator::Member(const json::Object& members, const json::Member& m,
                                     const StructureInfo& s, std::string& path, std::size_t depth,
                                     ResourceScope& scope) {
  std::string_view key = m.key;
  if (key == "fhir_comments") {
    PathStep step(path, key);
    Warning(IssueCode::kStructure, path,
            "'fhir_comments' is not part of FHIR R4 JSON (it was removed after DSTU2); it will be "
            "kept unchanged but servers may drop it");
    return nullptr;
  }
  const ElementInfo* e = nullptr;
  if (key.size() > 1 && key[0] == '_') {
    e = r4::FindChild(s.name, key.substr(1));
    if (e != nullptr) {
      PathStep step(path, key.substr(1));
      if (e->type_kind != TypeKind::kPrimitive) {
        Error(IssueCode::kStructure, path,
              fmt::format("'{}' is only allowed for primitive elements; {} is a {}, so put its "
                          "id and extensions inside '{}' itself",
                          key, key.substr(1), e->type, key.substr(1)));
        return e;
      }
      PrimitiveExtension(members, m, *e, path, depth, scope);
      return e;
    }
  } else {
    e = r4::FindChild(s.name, key);
  }
  if (e == nullptr) {
    if (options_.warn_unknown_properties) {
      PathStep step(path, key);
      std::string_view where = s.kind == r4::StructureKind::kBackbone ? std::string_view("element")
                                                                      : std::string_view("type");
      Warning(IssueCode::kStructure, path,
              fmt::format("unrecognised property '{}': it is not an element of the R4 {} {}; it "
                          "will be kept unchanged (check the spelling, or carry the data in an "
                          "extension)",
                          key, where, s.name));
    }
    return nullptr;
  }

  PathStep step(path, key);
  const json::Value& v = m.value;
  const bool primitive = e->type_kind == TypeKind::kPrimitive;
  if (e->many) {
    if (!v.is_array()) {
      Error(IssueCode::kStructure, path,
            fmt::format("The property {} must be a JSON Array, not {} (its cardinality is {}..*); "
                        "wrap the value in [ ]",
                        key, Describe(v.kind()), e->min));
      // Still check the single value as if it were the array's only item.
      if (v.is_object() || (primitive && !v.is_null())) Item(*e, s, v, path, depth, scope);
      return e;
    }
    const json::Array& items = v.array();
    if (items.empty()) {
      Error(IssueCode::kStructure, path,
            "empty arrays are not allowed in FHIR JSON; leave the property out instead");
      return e;
    }
    const json::Value* ext = nullptr;
    if (primitive) {
      // `_key` without building the string: this runs for every primitive array.
      auto it = std::find_if(members.begin(), members.end(), [&](const json::Member& o) {
        return o.key.size() == key.size() + 1 && o.key[0] == '_' &&
               std::string_view(o.key).substr(1) == key;
      });
      if (it != members.end()) ext = &it->value;
    }
    for (std::size_t i = 0; i < items.size(); ++i) {
      PathStep index(path, i);
      const json::Value& item = items[i];
      if (item.is_null()) {
        // R4 §2.6.2.2: null only keeps positions aligned with a `_name` array that has the
        // extension for this position.
        if (!primitive || ext == nullptr || !(*ext)[i].is_object()) {
          Error(IssueCode::kStructure, path,
                primitive ? fmt::format("null in '{}' is only allowed when '_{}' has an object at "
                                        "the same position; remove it",
                                        key, key)
                          : "null is not allowed here; remove it");
        }
        continue;
      }
      if (item.is_array()) {
        Error(IssueCode::kStructure, path, "arrays of arrays are not allowed in FHIR JSON");
        continue;
      }
      Item(*e, s, item, path, depth, scope);
    }
    return e;
  }
  if (v.is_array()) {
    Error(IssueCode::kStructure, path,
          fmt::format("The property {} must be a single value, not a JSON Array (its cardinality "
                      "is {}..1); keep one value without [ ]",
                      key, e->min));
    return e;
  }
  if (v.is_null()) {
    Error(IssueCode::kStructure, path,
          "null is not allowed in FHIR JSON; leave the property out instead");
    return e;
  }
  Item(*e, s, v, path, depth, scope);
  return e;
}

void Validator::PrimitiveExtension(const json::Object& members, const json::Member& m,
                                   const ElementInfo& e, std::string& path, std::size_t depth,
                                   ResourceScope& scope) {
  static const StructureInfo* const element = r4::FindStructure("Element");
  if (element == nullptr) return;
  const json::Value& v = m.value;
  std::string_view base = std::string_view(m.key).substr(1);
  auto it = std::find_if(members.begin(), members.end(),
                         [&](const json::Member& o) { return o.key == base; });
  const json::Value* values = it == members.end() ? nullptr : &it->value;
  if (e.many) {
    if (!v.is_array()) {
      Error(IssueCode::kStructure, path,
            fmt::format("'{}' must be a JSON Array parallel to '{}', not {}", m.key, base,
                        Describe(v.kind())));
      return;
    }
    if (v.array().empty()) {
      Error(IssueCode::kStructure, path,
            "empty arrays are not allowed in FHIR JSON; leave the property out instead");
      return;
    }
    if (values != nullptr && values->is_array() && values->size() != v.size()) {
      Error(IssueCode::kStructure, path,
            fmt::format("'{}' has {} entries but '{}' has {}; the arrays must line up (use null "
                        "for positions without a value or extension)",
                        m.key, v.size(), base, values->size()));
    }
    for (std::size_t i = 0; i < v.array().size(); ++i) {
      PathStep index(path, i);
      const json::Value& item = v.array()[i];
      if (item.is_null()) {
        // With a value array, a null pair is reported once, from the value side (Member()).
        if (values == nullptr || !values->is_array()) {
          Error(IssueCode::kStructure, path,
                fmt::format("position {} has neither a value in '{}' nor an extension in '{}'", i,
                            base, m.key));
        }
        continue;
      }
      if (!item.is_object()) {
        Error(IssueCode::kStructure, path,
              fmt::format("entries of '{}' must be objects (id, extension) or null, not {}", m.key,
                          Describe(item.kind())));
        continue;
      }
      Object(item, *element, path, depth + 1, scope);
    }
    return;
  }
  if (!v.is_object()) {
    Error(IssueCode::kStructure, path,
          fmt::format("'{}' must be a JSON object holding the id and extensions of '{}', not {}",
                      m.key, base, Describe(v.kind())));
    return;
  }
  Object(v, *element, path, depth + 1, scope);
}

void Validator::Item(const ElementInfo& e, const StructureInfo& parent, const json::Value& v,
                     std::string& path, std::size_t depth, ResourceScope& scope) {
  switch (e.type_kind) {
    case TypeKind::kPrimitive:
      Primitive(e, parent, v, path, scope);
      return;
    case TypeKind::kResource: {
      const bool contained = e.name == "contained";
      if (contained) {
        // dom-2..5 (R4 §2.36 DomainResource): contained resources are plain, unversioned
        // resources owned by their container; their references count for the container (dom-3).
        ResourceScope inner;
        Resource(v, path, depth + 1, inner, true);
        scope.local_refs.insert(scope.local_refs.end(), inner.local_refs.begin(),
                                inner.local_refs.end());
        if (inner.refers_to_container) scope.contained_referring_container.push_back(&v);
        if (v.find("contained") != nullptr) {
          Error(IssueCode::kInvariant, path,
                "a contained resource SHALL NOT contain nested resources (dom-2); move them into "
                "the container's own contained list");
        }
        const json::Value& meta = v["meta"];
        if (meta.find("versionId") != nullptr || meta.find("lastUpdated") != nullptr) {
          Error(IssueCode::kInvariant, path,
                "a contained resource SHALL NOT have meta.versionId or meta.lastUpdated (dom-4)");
        }
        if (meta.find("security") != nullptr) {
          Error(IssueCode::kInvariant, path,
                "a contained resource SHALL NOT have a security label (dom-5); label the "
                "container instead");
        }
      } else {
        // Bundle.entry.resource, Parameters.parameter.resource, Bundle.entry.response.outcome:
        // independent resources with their own local references.
        ResourceScope own;
        Resource(v, path, depth + 1, own, false);
      }
      return;
    }
    case TypeKind::kComplex: {
      if (!v.is_object()) {
        Error(IssueCode::kStructure, path,
              fmt::format("{} must be a JSON object (a {}), not {}", e.name, e.type,
                          Describe(v.kind())));
        return;
      }
      const StructureInfo* s = r4::FindStructure(e.type);
      if (s == nullptr) return;  // cannot happen with a consistent table
      Object(v, *s, path, depth + 1, scope);
      return;
    }
  }
  (void)parent;
}

void Validator::Primitive(const ElementInfo& e, const StructureInfo& parent, const json::Value& v,
                          const std::string& path, ResourceScope& scope) {
  std::string problem = CheckPrimitive(e.type, v);
  if (!problem.empty()) {
    // Wrong JSON kind is a structural problem; a well-shaped but bad value is a value problem.
    const JsonShape shape = ShapeOf(e.type);
    const bool kind_ok = (shape == JsonShape::kString && v.is_string()) ||
                         (shape == JsonShape::kNumber && v.is_number()) ||
                         (shape == JsonShape::kBool && v.is_bool());
    Error(kind_ok ? IssueCode::kValue : IssueCode::kStructure, path, std::move(problem));
    return;
  }
  if (!e.codes.empty() && !e.AllowsCode(v.str())) {
    std::string allowed;
    const std::size_t shown = std::min<std::size_t>(e.codes.size(), 25);
    for (std::size_t i = 0; i < shown; ++i) {
      if (i > 0) allowed += ", ";
      allowed += e.codes[i];
    }
    if (shown < e.codes.size()) allowed += fmt::format(", ... ({} codes)", e.codes.size());
    Error(IssueCode::kCodeInvalid, path,
          fmt::format("The value '{}' is not in the required value set {} (codes are "
                      "case-sensitive); use one of: {}",
                      v.str(), e.value_set, allowed));
    return;
  }
  // Local references for dom-3: Reference.reference and any uri/url/canonical.
  std::string_view s = v.str();
  if (!s.empty() && s[0] == '#' &&
      ((parent.name == "Reference" && e.name == "reference") || e.type == "uri" ||
       e.type == "url" || e.type == "canonical")) {
    if (s.size() == 1) {
      scope.refers_to_container = true;
    } else {
      scope.local_refs.push_back(s.substr(1));
    }
  }
}

void Validator::Required(const json::Object& members, const StructureInfo& s,
                         const std::string& path) {
  auto present = [&](std::string_view name) {
    return std::any_of(members.begin(), members.end(), [&](const json::Member& m) {
      std::string_view k = m.key;
      return k == name || (k.size() == name.size() + 1 && k[0] == '_' && k.substr(1) == name);
    });
  };
  std::string_view last_choice;
  for (const ElementInfo& e : s.elements) {
    if (e.min == 0) continue;
    if (e.is_choice()) {
      if (e.choice_base == last_choice) continue;
      last_choice = e.choice_base;
      bool any = false;
      for (const ElementInfo& alt : s.elements) {
        if (alt.choice_base == e.choice_base && present(alt.name)) any = true;
      }
      if (!any) {
        Error(IssueCode::kRequired,
              path.empty() ? std::string(e.choice_base)
                           : fmt::format("{}.{}[x]", path, e.choice_base),
              fmt::format("missing required element {}[x] (minimum cardinality {}); add one of "
                          "its typed forms, e.g. {}",
                          e.choice_base, e.min, e.name));
      }
      continue;
    }
    if (!present(e.name)) {
      Error(IssueCode::kRequired, fmt::format("{}.{}", path, e.name),
            fmt::format("missing required element '{}' ({} requires it, minimum cardinality {}); "
                        "add it",
                        e.name, s.name, e.min));
    }
  }
}

void Validator::Period(const json::Value& obj, const std::string& path) {
  // per-1 (R4 §2.24.0.11 Period): start.hasValue().not() or end.hasValue().not() or (start <= end)
  auto start = ParseDateTime(obj["start"].str(), DateKind::kDateTime);
  auto end = ParseDateTime(obj["end"].str(), DateKind::kDateTime);
  if (!start || !end) return;  // absent or already reported as invalid
  std::optional<int> cmp = CompareDateTimes(*start, *end);
  bool fails =
      cmp ? *cmp > 0 : options_.period_precision == ValidateOptions::PeriodPrecision::kFhirPath;
  if (!fails) return;
  Error(IssueCode::kInvariant, path,
        cmp ? fmt::format("Constraint failed: per-1: 'If present, start SHALL have a lower value "
                          "than end' (start {} is after end {}); correct or swap them",
                          obj["start"].str(), obj["end"].str())
            : fmt::format("Constraint failed: per-1: 'If present, start SHALL have a lower value "
                          "than end' (start {} and end {} have different precision and cannot be "
                          "ordered); give both to the same precision",
                          obj["start"].str(), obj["end"].str()));
}

void Validator::Extension(const json::Value& obj, const std::string& path) {
  // ext-1 (R4 §2.13 Extension): extension.exists() != value.exists()
  bool has_ext = obj.find("extension") != nullptr;
  bool has_value = false;
  for (const json::Member& m : obj.object()) {
    std::string_view k = m.key;
    if (k.size() > 1 && k[0] == '_') k.remove_prefix(1);
    if (k.size() > 5 && k.substr(0, 5) == "value" && k[5] >= 'A' && k[5] <= 'Z') has_value = true;
  }
  if (has_ext == has_value) {
    Error(IssueCode::kInvariant, path,
          has_ext ? "Constraint failed: ext-1: an extension must have either nested extensions or "
                    "a value[x], not both"
                  : "Constraint failed: ext-1: an extension must have either nested extensions or "
                    "a value[x]; add a value");
  }
}

void Validator::Contained(const json::Value& resource, const std::string& path,
                          const ResourceScope& scope) {
  // dom-3 (R4 §2.36): every contained resource is referenced from elsewhere in the container
  // ("#id", including from other contained resources) or itself refers to the container ("#").
  const json::Value& contained = resource["contained"];
  for (std::size_t i = 0; i < contained.array().size(); ++i) {
    const json::Value& c = contained.array()[i];
    if (!c.is_object() || !r4::IsResourceType(c["resourceType"].str())) continue;  // reported
    std::string_view id = c["id"].str();
    bool referenced = !id.empty() && std::find(scope.local_refs.begin(), scope.local_refs.end(),
                                               id) != scope.local_refs.end();
    if (referenced) continue;
    const auto& back = scope.contained_referring_container;
    if (std::find(back.begin(), back.end(), &c) != back.end()) continue;
    Error(IssueCode::kInvariant, fmt::format("{}.contained[{}]", path, i),
          fmt::format("The contained resource '{}' is not referenced from elsewhere in the "
                      "containing resource nor does it refer to the containing resource (dom-3); "
                      "reference it as \"#{}\" or make it a separate resource",
                      id, id));
  }
}

// The resource types a search URL asks for: the type before '?' ("base/Patient?name=x") or the
// `_type` parameter ("base?_type=Observation,DocumentReference"). Empty when unknown.
std::vector<std::string_view> SearchTypes(std::string_view url) {
  std::vector<std::string_view> types;
  std::size_t q = url.find('?');
  std::string_view base = url.substr(0, q);
  std::string_view last =
      base.substr(base.rfind('/') == std::string_view::npos ? 0 : base.rfind('/') + 1);
  if (r4::IsResourceType(last)) {
    types.push_back(last);
    return types;
  }
  if (q == std::string_view::npos) return types;
  std::string_view query = url.substr(q + 1);
  while (!query.empty()) {
    std::size_t amp = query.find('&');
    std::string_view param = query.substr(0, amp);
    if (param.substr(0, 6) == "_type=") {
      param.remove_prefix(6);
      while (!param.empty()) {
        std::size_t comma = param.find(',');
        std::string_view t = param.substr(0, comma);
        if (r4::IsResourceType(t)) types.push_back(t);
        if (comma == std::string_view::npos) break;
        param.remove_prefix(comma + 1);
      }
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return types;
}

bool IsAbsoluteUri(std::string_view s) {
  // RFC 3986 §3.1: scheme ":" ...
  std::size_t colon = s.find(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  auto alpha = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); };
  if (!alpha(s[0])) return false;
  for (std::size_t i = 1; i < colon; ++i) {
    char c = s[i];
    if (!alpha(c) && !IsDigit(c) && c != '+' && c != '-' && c != '.') return false;
  }
  return colon + 1 < s.size();
}

void Validator::SearchSet(const json::Value& bundle, const std::string& path) {
  // R4 §3.1.1.4 (http.html#search) and Bundle.entry.search.mode: matches are resources the server
  // holds (so they have ids) of the searched type; outcome entries are OperationOutcomes.
  std::string_view self;
  for (const json::Value& l : bundle["link"].array()) {
    if (l["relation"].str() == "self") self = l["url"].str();
  }
  if (self.empty()) {
    Warning(IssueCode::kInvalid, path,
            "SearchSet Bundles should have a self link that specifies what the search was");
  }
  const std::vector<std::string_view> types = SearchTypes(self);
  bool missing_mode = false;
  const json::Array& entries = bundle["entry"].array();
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const json::Value& resource = entries[i]["resource"];
    if (!resource.is_object()) continue;
    std::string_view mode = entries[i]["search"]["mode"].str();
    std::string_view rt = resource["resourceType"].str();
    std::string rpath = fmt::format("{}.entry[{}].resource", path, i);
    if (mode.empty()) missing_mode = true;
    if (mode == "outcome") {
      if (rt != "OperationOutcome") {
        Error(IssueCode::kInvalid, rpath,
              fmt::format("This is not an OperationOutcome ({}); entries with search.mode "
                          "'outcome' must be OperationOutcomes",
                          rt));
      }
      continue;
    }
    if (mode != "match") continue;
    if (resource.find("id") == nullptr) {
      Error(IssueCode::kInvalid, rpath, "Search results must have ids");
    }
    if (!types.empty() && std::find(types.begin(), types.end(), rt) == types.end()) {
      std::string expected;
      for (std::string_view t : types)
        expected += fmt::format("{}{}", expected.empty() ? "" : ", ", t);
      Error(IssueCode::kInvalid, rpath,
            fmt::format("This is not a matching resource type for the specified search ({} "
                        "expecting [{}])",
                        rt, expected));
    }
  }
  if (missing_mode) {
    Warning(IssueCode::kInvalid, path, "SearchSet bundles should have search modes on the entries");
  }
}

void Validator::Bundle(const json::Value& bundle, const std::string& path) {
  // R4 §2.36 Bundle invariants bdl-1..12 and the absolute fullUrl rule (R4 §2.36.4).
  std::string_view type = bundle["type"].str();
  const bool searchset = type == "searchset", history = type == "history";
  const bool needs_request = type == "batch" || type == "transaction" || history;
  const bool needs_response = type == "batch-response" || type == "transaction-response" || history;
  if (bundle.find("total") != nullptr && !searchset && !history) {
    Error(IssueCode::kInvariant, fmt::format("{}.total", path),
          "Constraint failed: bdl-1: total only when a search or history");
  }
  const json::Array& entries = bundle["entry"].array();
  // A relation type (self, next, ...) names one link; the HL7 validator rejects repeats.
  const json::Array& links = bundle["link"].array();
  for (std::size_t i = 0; i < links.size(); ++i) {
    std::string_view rel = links[i]["relation"].str();
    for (std::size_t j = 0; j < i && !rel.empty(); ++j) {
      if (links[j]["relation"].str() == rel) {
        Error(IssueCode::kInvalid, fmt::format("{}.link[{}]", path, i),
              fmt::format("The link relationship type '{}' can only occur once", rel));
        break;
      }
    }
  }
  if (searchset) SearchSet(bundle, path);
  std::vector<std::pair<std::string_view, std::string_view>> full_urls;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const json::Value& entry = entries[i];
    if (!entry.is_object()) continue;
    std::string entry_path = fmt::format("{}.entry[{}]", path, i);
    if (entry.find("search") != nullptr && !searchset) {
      Error(IssueCode::kInvariant, entry_path,
            "Constraint failed: bdl-2: entry.search only when a search");
    }
    if ((entry.find("request") != nullptr) != needs_request) {
      Error(IssueCode::kInvariant, entry_path,
            fmt::format("Constraint failed: bdl-3: entry.request {} for a {} bundle",
                        needs_request ? "is mandatory" : "is not allowed", type));
    }
    if ((entry.find("response") != nullptr) != needs_response) {
      Error(IssueCode::kInvariant, entry_path,
            fmt::format("Constraint failed: bdl-4: entry.response {} for a {} bundle",
                        needs_response ? "is mandatory" : "is not allowed", type));
    }
    if (entry.find("resource") == nullptr && entry.find("request") == nullptr &&
        entry.find("response") == nullptr) {
      Error(IssueCode::kInvariant, entry_path,
            "Constraint failed: bdl-5: must be a resource unless there's a request or response");
    }
    const json::Value* full_url = entry.find("fullUrl");
    if (full_url != nullptr && full_url->is_string() && !full_url->str().empty()) {
      std::string_view url = full_url->str();
      if (!IsAbsoluteUri(url)) {
        Error(IssueCode::kInvalid, fmt::format("{}.fullUrl", entry_path),
              fmt::format("The fullUrl must be an absolute URL (not '{}'); use the resource's "
                          "server URL or a urn:uuid:",
                          url));
      } else if (url.find("/_history/") != std::string_view::npos) {
        Error(IssueCode::kInvariant, fmt::format("{}.fullUrl", entry_path),
              "Constraint failed: bdl-8: fullUrl cannot be a version specific reference");
      }
      full_urls.emplace_back(url, entry["resource"]["meta"]["versionId"].str());
    }
  }
  // bdl-7: fullUrl unique (or distinct versions), except in history bundles.
  if (!history) {
    std::vector<std::pair<std::string_view, std::string_view>> sorted = full_urls;
    std::sort(sorted.begin(), sorted.end());
    for (std::size_t i = 1; i < sorted.size(); ++i) {
      if (sorted[i] == sorted[i - 1] && (i < 2 || sorted[i - 2] != sorted[i])) {
        Error(IssueCode::kInvariant, fmt::format("{}.entry", path),
              fmt::format("Constraint failed: bdl-7: FullUrl must be unique in a bundle, or else "
                          "entries with the same fullUrl must have different meta.versionId "
                          "(duplicate '{}')",
                          sorted[i].first));
      }
    }
  }
  auto first_type = [&]() {
    return entries.empty() ? std::string_view() : entries[0]["resource"]["resourceType"].str();
  };
  if (type == "document") {
    const json::Value& id = bundle["identifier"];
    if (id.find("system") == nullptr || id.find("value") == nullptr) {
      Error(IssueCode::kInvariant, path,
            "Constraint failed: bdl-9: A document must have an identifier with a system and a "
            "value");
    }
    if (bundle.find("timestamp") == nullptr) {
      Error(IssueCode::kInvariant, path, "Constraint failed: bdl-10: A document must have a date");
    }
    if (first_type() != "Composition") {
      Error(IssueCode::kInvariant, path,
            "Constraint failed: bdl-11: A document must have a Composition as the first resource");
    }
  }
  if (type == "message" && first_type() != "MessageHeader") {
    Error(IssueCode::kInvariant, path,
          "Constraint failed: bdl-12: A message must have a MessageHeader as the first resource");
  }
}

}  // namespace

std::string CheckPrimitive(std::string_view type, const json::Value& value) {
  JsonShape shape = ShapeOf(type);
  std::string_view expected = shape == JsonShape::kBool     ? "a JSON boolean (true or false)"
                              : shape == JsonShape::kNumber ? "a JSON number"
                                                            : "a JSON string";
  switch (value.kind()) {
    case json::Kind::kBool:
      if (shape == JsonShape::kBool) return {};
      break;
    case json::Kind::kNumber:
      if (shape == JsonShape::kNumber) return CheckNumber(type, value.number_text());
      break;
    case json::Kind::kString:
      if (shape == JsonShape::kString) return CheckString(type, value.str());
      break;
    case json::Kind::kObject:
      return fmt::format(
          "a {} must be {}, not an object; extensions and ids of primitive "
          "elements go in the '_name' sibling property",
          type, expected);
    default:
      break;
  }
  return fmt::format("a {} must be {}, not {}", type, expected, Describe(value.kind()));
}

IssueList Validate(const json::Value& resource, const ValidateOptions& options) {
  IssueList issues;
  Validator v(options, issues);
  std::string path;
  ResourceScope scope;
  v.Resource(resource, path, 0, scope, false);
  return issues;
}

}  // namespace ccm::fhir
