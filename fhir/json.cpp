#include "fhir/json.h"

#include <cstdint>
#include <cstring>

#include <algorithm>
#include <vector>

#include <fmt/format.h>
#include <rapidjson/error/en.h>
#include <rapidjson/prettywriter.h>
#include <rapidjson/reader.h>
#include <rapidjson/writer.h>

namespace ccm::fhir::json {
namespace {

const Value kNullValue;
const Array kEmptyArray;
const Object kEmptyObject;

// RapidJSON output stream appending to a std::string.
struct StringSink {
  using Ch = char;
  std::string* out;
  void Put(char c) { out->push_back(c); }
  void Flush() {}
};

template <class Writer>
void Write(const Value& v, Writer& w) {
  switch (v.kind()) {
    case Kind::kNull:
      w.Null();
      break;
    case Kind::kBool:
      w.Bool(v.as_bool());
      break;
    case Kind::kNumber: {
      std::string_view t = v.number_text();
      w.RawValue(t.data(), t.size(), rapidjson::kNumberType);
      break;
    }
    case Kind::kString: {
      std::string_view s = v.str();
      w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
      break;
    }
    case Kind::kArray:
      w.StartArray();
      for (const Value& e : v.array()) Write(e, w);
      w.EndArray();
      break;
    case Kind::kObject:
      w.StartObject();
      for (const Member& m : v.object()) {
        w.Key(m.key.data(), static_cast<rapidjson::SizeType>(m.key.size()));
        Write(m.value, w);
      }
      w.EndObject();
      break;
  }
}

}  // namespace

std::string_view KindName(Kind k) noexcept {
  switch (k) {
    case Kind::kNull:
      return "null";
    case Kind::kBool:
      return "boolean";
    case Kind::kNumber:
      return "number";
    case Kind::kString:
      return "string";
    case Kind::kArray:
      return "array";
    case Kind::kObject:
      return "object";
  }
  return "?";
}

// SaxBuilder: containers under construction are tracked by pointer. A container's own vector is
// only appended to while it is on top of the stack, so pointers to its ancestors (elements of
// vectors that are not growing at that moment) stay valid.
bool SaxBuilder::Double(double d) {
  return skip_ != 0 ? Skip(0) : Add(Value::Number(fmt::format("{}", d)));
}

bool SaxBuilder::String(const char* s, unsigned n, bool) {
  if (skip_ != 0) return Skip(0);
  if (keep_member_ && stack_.size() == 1 && key_ == "resourceType") resource_type_.assign(s, n);
  return Add(Value::String(std::string(s, n)));
}

bool SaxBuilder::Skip(int delta) {
  // skip_ counts the open containers of the skipped value plus one; reaching 1 again after a
  // close (or consuming a scalar at 1) ends the skipped member.
  if (delta > 0) {
    if (stack_.size() + skip_ > max_depth_) {
      error_ = fmt::format("nesting deeper than {} levels", max_depth_);
      return false;
    }
    ++skip_;
  } else if (delta < 0) {
    if (--skip_ == 1) skip_ = 0;
  } else if (skip_ == 1) {
    skip_ = 0;
  }
  return true;
}

bool SaxBuilder::Key(const char* s, unsigned n, bool) {
  if (skip_ != 0) return true;  // a name inside a skipped member
  std::string_view key(s, n);
  if (keep_member_ && stack_.size() == 1 && key != "resourceType" &&
      !keep_member_(resource_type_, key)) {
    skip_ = 1;
    return true;
  }
  const Object& members = stack_.back()->object();
  if (std::any_of(members.begin(), members.end(), [&](const Member& m) { return m.key == key; })) {
    error_ = fmt::format("duplicate property name \"{}\" (FHIR JSON forbids repeated names)", key);
    return false;
  }
  key_.assign(s, n);
  return true;
}

Value* SaxBuilder::Append(Value v) {
  if (stack_.empty()) {
    root_ = std::move(v);
    has_root_ = true;
    return &root_;
  }
  Value* top = stack_.back();
  if (Array* a = top->mutable_array()) {
    a->push_back(std::move(v));
    return &a->back();
  }
  Object* o = top->mutable_object();
  o->push_back(Member{std::move(key_), std::move(v)});
  key_.clear();
  return &o->back().value;
}

bool SaxBuilder::Open(Value container) {
  if (stack_.size() >= max_depth_) {
    error_ = fmt::format("nesting deeper than {} levels", max_depth_);
    return false;
  }
  stack_.push_back(Append(std::move(container)));
  return true;
}

Value SaxBuilder::Take() {
  Value out = std::move(root_);
  root_ = Value();
  has_root_ = false;
  stack_.clear();
  key_.clear();
  error_.clear();
  resource_type_.clear();
  skip_ = 0;
  return out;
}

Value Value::Number(std::string text) {
  if (!IsJsonNumber(text)) return Value();
  return Value(Storage{NumberText{std::move(text)}});
}

bool Value::as_bool() const noexcept {
  const bool* b = std::get_if<bool>(&v_);
  return b != nullptr && *b;
}
std::string_view Value::number_text() const noexcept {
  const NumberText* n = std::get_if<NumberText>(&v_);
  return n != nullptr ? std::string_view(n->text) : std::string_view();
}
std::string_view Value::str() const noexcept {
  const std::string* s = std::get_if<std::string>(&v_);
  return s != nullptr ? std::string_view(*s) : std::string_view();
}
const Array& Value::array() const noexcept {
  const Array* a = std::get_if<Array>(&v_);
  return a != nullptr ? *a : kEmptyArray;
}
const Object& Value::object() const noexcept {
  const Object* o = std::get_if<Object>(&v_);
  return o != nullptr ? *o : kEmptyObject;
}

const Value* Value::find(std::string_view key) const noexcept {
  for (const Member& m : object()) {
    if (m.key == key) return &m.value;
  }
  return nullptr;
}
Value* Value::find(std::string_view key) noexcept {
  Object* o = mutable_object();
  if (o == nullptr) return nullptr;
  for (Member& m : *o) {
    if (m.key == key) return &m.value;
  }
  return nullptr;
}
const Value& Value::operator[](std::string_view key) const noexcept {
  const Value* v = find(key);
  return v != nullptr ? *v : kNullValue;
}
const Value& Value::operator[](std::size_t i) const noexcept {
  const Array& a = array();
  return i < a.size() ? a[i] : kNullValue;
}
std::size_t Value::size() const noexcept {
  if (is_array()) return array().size();
  if (is_object()) return object().size();
  return 0;
}

Value& Value::set(std::string_view key, Value v) {
  if (!is_object()) v_ = Object{};
  if (Value* existing = find(key)) {
    *existing = std::move(v);
    return *existing;
  }
  Object& o = *mutable_object();
  o.push_back(Member{std::string(key), std::move(v)});
  return o.back().value;
}

bool Value::erase(std::string_view key) {
  Object* o = mutable_object();
  if (o == nullptr) return false;
  auto it = std::find_if(o->begin(), o->end(), [&](const Member& m) { return m.key == key; });
  if (it == o->end()) return false;
  o->erase(it);
  return true;
}

Value& Value::push_back(Value v) {
  if (!is_array()) v_ = Array{};
  Array& a = *mutable_array();
  a.push_back(std::move(v));
  return a.back();
}

bool Value::Equivalent(const Value& other) const {
  if (kind() != other.kind()) return false;
  switch (kind()) {
    case Kind::kArray: {
      const Array& a = array();
      const Array& b = other.array();
      if (a.size() != b.size()) return false;
      for (std::size_t i = 0; i < a.size(); ++i) {
        if (!a[i].Equivalent(b[i])) return false;
      }
      return true;
    }
    case Kind::kObject: {
      if (size() != other.size()) return false;
      for (const Member& m : object()) {
        const Value* o = other.find(m.key);
        if (o == nullptr || !m.value.Equivalent(*o)) return false;
      }
      return true;
    }
    default:
      return *this == other;
  }
}

std::size_t FindInvalidUtf8(std::string_view text) noexcept {
  // RFC 3629 well-formed sequences: no overlong forms, no surrogates, nothing above U+10FFFF.
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  std::size_t i = 0;
  while (i < n) {
    if (i + 32 <= n) {  // ASCII fast path, 32 bytes at a time (the compiler vectorises it)
      std::uint64_t w[4];
      std::memcpy(w, p + i, 32);
      if (((w[0] | w[1] | w[2] | w[3]) & 0x8080808080808080ULL) == 0) {
        i += 32;
        continue;
      }
    }
    if (i + 16 <= n) {  // and sixteen
      std::uint64_t w[2];
      std::memcpy(w, p + i, 16);
      if (((w[0] | w[1]) & 0x8080808080808080ULL) == 0) {
        i += 16;
        continue;
      }
    }
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07u;
    } else {
      return i;
    }
    if (i + len > n) return i;
    for (std::size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0u) != 0x80u) return i;
      cp = (cp << 6) | (p[i + k] & 0x3Fu);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) {
      return i;
    }
    i += len;
  }
  return std::string_view::npos;
}

namespace {

// Shared by Parse and ParseInsitu; `run` performs the RapidJSON parse into the builder.
// `newlines` (optional): offsets of the raw line breaks of the text as it was before an in-situ
// parse decoded escapes such as "\n" into it; without it the text itself is scanned.
template <class Run>
Result<Value> ParseText(std::string_view text, std::size_t skipped, const ParseOptions& options,
                        ParseErrorInfo* info, Run&& run,
                        const std::vector<std::size_t>* newlines = nullptr) {
  SaxBuilder builder(options);
  // UTF-8 is checked up front by a fast scan instead of RapidJSON's per-character validating
  // stream (which cost a quarter of the parse); the recursive parser is safe because the builder
  // refuses to nest deeper than max_depth (including inside members skipped by a projection).
  rapidjson::ParseResult ok;
  std::string bad_input;
  if (std::size_t bad = FindInvalidUtf8(text); bad != std::string_view::npos) {
    ok.Set(rapidjson::kParseErrorStringInvalidEncoding, bad);
    bad_input = "invalid UTF-8 byte sequence (the text must be UTF-8 encoding)";
  } else if (const void* nul = std::memchr(text.data(), '\0', text.size()); nul != nullptr) {
    // JSON never contains a raw NUL; RapidJSON would take it for the end of the text.
    ok.Set(rapidjson::kParseErrorValueInvalid,
           static_cast<std::size_t>(static_cast<const char*>(nul) - text.data()));
    bad_input = "NUL byte in the text (not allowed anywhere in JSON)";
  } else {
    ok = run(builder);
    if (ok) return builder.Take();
  }

  ParseErrorInfo e;
  e.offset = ok.Offset();
  std::string what = !bad_input.empty()        ? bad_input
                     : builder.error().empty() ? rapidjson::GetParseError_En(ok.Code())
                                               : builder.error();
  if (ok.Code() == rapidjson::kParseErrorDocumentEmpty)
    what = "empty input: expected a JSON object";
  auto [line, column] = LineColumn(text, e.offset);
  if (newlines != nullptr) {
    auto after = std::lower_bound(newlines->begin(), newlines->end(), e.offset);
    line = 1 + static_cast<std::size_t>(after - newlines->begin());
    column = e.offset - (after == newlines->begin() ? 0 : *(after - 1) + 1) + 1;
  }
  e.line = line;
  e.column = column;
  e.offset += skipped;
  e.message = std::move(what);
  std::string message = fmt::format("line {}, column {}: {}", e.line, e.column, e.message);
  if (info != nullptr) *info = std::move(e);
  return MakeError(Errc::kParseError, std::move(message));
}

constexpr unsigned kStrictFlags = rapidjson::kParseNumbersAsStringsFlag;
constexpr unsigned kRelaxedFlags =
    kStrictFlags | rapidjson::kParseCommentsFlag | rapidjson::kParseTrailingCommasFlag;

// A UTF-8 byte order mark is not JSON, but editors on Windows write one; accept and skip it.
std::size_t BomLength(std::string_view text) { return text.starts_with("\xEF\xBB\xBF") ? 3 : 0; }

}  // namespace

Result<Value> Parse(std::string_view text, const ParseOptions& options, ParseErrorInfo* info) {
  std::size_t skipped = BomLength(text);
  text.remove_prefix(skipped);
  return ParseText(text, skipped, options, info, [&](SaxBuilder& builder) {
    rapidjson::Reader reader;
    rapidjson::MemoryStream stream(text.data(), text.size());
    return options.relaxed ? reader.Parse<kRelaxedFlags>(stream, builder)
                           : reader.Parse<kStrictFlags>(stream, builder);
  });
}

Result<Value> ParseInsitu(char* text, std::size_t size, const ParseOptions& options,
                          ParseErrorInfo* info) {
  std::string_view view(text, size);
  std::size_t skipped = BomLength(view);
  view.remove_prefix(skipped);
  char* start = text + skipped;
  // Error positions must refer to the text as given, which the parse rewrites: note its line
  // breaks first (one memchr for an NDJSON line, which has none).
  std::vector<std::size_t> newlines;
  for (const char* p = view.data();
       (p = static_cast<const char*>(std::memchr(p, '\n', view.size() - (p - view.data())))) !=
       nullptr;
       ++p) {
    newlines.push_back(static_cast<std::size_t>(p - view.data()));
  }
  return ParseText(
      view, skipped, options, info,
      [&](SaxBuilder& builder) {
        // In-situ: strings are decoded in the buffer instead of copied out of it first.
        rapidjson::Reader reader;
        rapidjson::InsituStringStream stream(start);
        constexpr unsigned kInsitu = rapidjson::kParseInsituFlag;
        return options.relaxed ? reader.Parse<kRelaxedFlags | kInsitu>(stream, builder)
                               : reader.Parse<kStrictFlags | kInsitu>(stream, builder);
      },
      &newlines);
}

void SerializeTo(const Value& v, std::string& out) {
  StringSink sink{&out};
  rapidjson::Writer<StringSink> w(sink);
  Write(v, w);
}

std::string Serialize(const Value& v) {
  std::string out;
  SerializeTo(v, out);
  return out;
}

std::string SerializePretty(const Value& v) {
  std::string out;
  StringSink sink{&out};
  rapidjson::PrettyWriter<StringSink> w(sink);
  w.SetIndent(' ', 2);
  Write(v, w);
  return out;
}

bool IsJsonNumber(std::string_view t) noexcept {
  std::size_t i = 0;
  const std::size_t n = t.size();
  auto digit = [&](std::size_t k) { return k < n && t[k] >= '0' && t[k] <= '9'; };
  if (i < n && t[i] == '-') ++i;
  if (!digit(i)) return false;
  if (t[i] == '0') {
    ++i;
  } else {
    while (digit(i)) ++i;
  }
  if (i < n && t[i] == '.') {
    ++i;
    if (!digit(i)) return false;
    while (digit(i)) ++i;
  }
  if (i < n && (t[i] == 'e' || t[i] == 'E')) {
    ++i;
    if (i < n && (t[i] == '+' || t[i] == '-')) ++i;
    if (!digit(i)) return false;
    while (digit(i)) ++i;
  }
  return i == n;
}

std::pair<std::size_t, std::size_t> LineColumn(std::string_view text, std::size_t offset) noexcept {
  offset = std::min(offset, text.size());
  std::size_t line = 1;
  std::size_t line_start = 0;
  for (std::size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  }
  return {line, offset - line_start + 1};
}

}  // namespace ccm::fhir::json
