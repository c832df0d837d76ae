// Lossless JSON for FHIR.
//
// A small DOM built on RapidJSON's SAX reader that keeps everything a FHIR resource can carry:
// - numbers are kept as their literal text (`1.50` stays `1.50`, `0.1000000000000000000001` is not
// rounded), as FHIR's
//   decimal type requires (R4 §2.1.28.0.1 "decimal": precision is significant);
// - object members keep their order, so a resource serialised again reads like the original;
// - nothing is interpreted: extensions, `_element` primitive extensions, contained resources and
//   properties unknown to us are ordinary members and survive any edit made through the typed
//   views.
//
// Parsing rejects what FHIR JSON forbids (R4 §2.6.2): comments, trailing commas, unquoted names,
// duplicate property names, invalid UTF-8, more than one top-level value. Errors say where (line
// and column, 1-based) and what.
//
// Values are regular types: copyable, movable, comparable with ==. Not thread-safe for concurrent
// mutation; concurrent reads of an unchanging Value are safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "fhir/result.h"

namespace ccm::fhir::json {

class Value;
struct Member;

using Array = std::vector<Value>;
using Object =
    std::vector<Member>;  // insertion order; keys unique (enforced by the parser and set())

enum class Kind : std::uint8_t { kNull, kBool, kNumber, kString, kArray, kObject };

std::string_view KindName(Kind k) noexcept;

// The text of a JSON number, exactly as written.
struct NumberText {
  std::string text;
  bool operator==(const NumberText&) const = default;
};

class Value {
 public:
  Value() = default;  // null
  static Value Bool(bool b) { return Value(Storage{b}); }
  // `text` must be a valid JSON number (checked: returns null Value if not; see IsJsonNumber).
  static Value Number(std::string text);
  static Value Number(std::int64_t v) { return Value(Storage{NumberText{std::to_string(v)}}); }
  static Value String(std::string s) { return Value(Storage{std::move(s)}); }
  static Value MakeArray(Array a = {}) { return Value(Storage{std::move(a)}); }
  static Value MakeObject(Object o = {}) { return Value(Storage{std::move(o)}); }

  Kind kind() const noexcept { return static_cast<Kind>(v_.index()); }
  bool is_null() const noexcept { return kind() == Kind::kNull; }
  bool is_bool() const noexcept { return kind() == Kind::kBool; }
  bool is_number() const noexcept { return kind() == Kind::kNumber; }
  bool is_string() const noexcept { return kind() == Kind::kString; }
  bool is_array() const noexcept { return kind() == Kind::kArray; }
  bool is_object() const noexcept { return kind() == Kind::kObject; }

  // Accessors return a neutral value (false, "", empty) when the kind does not match, so that
  // reading optional FHIR elements never needs a guard; check kind() where the difference matters.
  bool as_bool() const noexcept;
  std::string_view number_text() const noexcept;  // "" unless a number
  std::string_view str() const noexcept;          // "" unless a string
  const Array& array() const noexcept;            // empty unless an array
  const Object& object() const noexcept;          // empty unless an object
  Array* mutable_array() noexcept { return std::get_if<Array>(&v_); }
  Object* mutable_object() noexcept { return std::get_if<Object>(&v_); }

  // Object member lookup (linear: FHIR objects are small). nullptr when absent or not an object.
  const Value* find(std::string_view key) const noexcept;
  Value* find(std::string_view key) noexcept;
  // Member `key` or a shared null value.
  const Value& operator[](std::string_view key) const noexcept;
  // Array element `i` or a shared null value.
  const Value& operator[](std::size_t i) const noexcept;
  std::size_t size() const noexcept;  // members or elements; 0 for scalars

  // Mutation. set() replaces the member in place (keeping its position) or appends it; on a
  // non-object it first turns this value into an empty object. erase() returns whether a member was
  // removed.
  Value& set(std::string_view key, Value v);
  bool erase(std::string_view key);
  // push_back() turns a non-array into an empty array first.
  Value& push_back(Value v);

  // Structural equality: kinds, number text, strings, array order and object member order all
  // match.
  bool operator==(const Value& other) const = default;
  // Equality that ignores object member order (JSON semantics); numbers still compare by text.
  bool Equivalent(const Value& other) const;

 private:
  using Storage = std::variant<std::monostate, bool, NumberText, std::string, Array, Object>;
  explicit Value(Storage s) : v_(std::move(s)) {}
  Storage v_;
};

struct Member {
  std::string key;
  Value value;
  bool operator==(const Member&) const = default;
};

// Where a parse failed. offset is a byte offset into the text; line/column are 1-based.
struct ParseErrorInfo {
  std::size_t offset = 0;
  std::size_t line = 1;
  std::size_t column = 1;
  std::string message;
};

struct ParseOptions {
  // Deepest nesting accepted; FHIR resources rarely exceed 15. Guards the parser's stack.
  std::size_t max_depth = 256;
  // Accept /* */ and // comments and trailing commas: for hand-edited configuration files only,
  // never for FHIR resources (FHIR JSON allows neither).
  bool relaxed = false;
  // Projection (optional): which members of the top-level object to build. Called once per
  // top-level member name with the "resourceType" value seen so far ("" when it has not come yet;
  // "resourceType" itself is always kept). Rejected members are still tokenised and checked for
  // well-formed JSON but not stored, so a reader that needs a few elements of large resources does
  // not pay for the rest. Duplicate names among rejected members are not detected.
  std::function<bool(std::string_view resource_type, std::string_view name)> keep_member;
};

// Offset of the first byte of `text` that is not well-formed UTF-8 (RFC 3629), or npos.
std::size_t FindInvalidUtf8(std::string_view text) noexcept;

// Incremental builder behind Parse, exposed for streaming readers: feed it RapidJSON-style SAX
// events (numbers as raw text) and take the finished value. A handler method returning false means
// the input must be rejected; error() then says why (duplicate name, nesting too deep).
class SaxBuilder {
 public:
  explicit SaxBuilder(std::size_t max_depth = ParseOptions{}.max_depth) : max_depth_(max_depth) {}
  explicit SaxBuilder(const ParseOptions& options)
      : max_depth_(options.max_depth), keep_member_(options.keep_member) {}

  bool Null() { return skip_ != 0 ? Skip(0) : Add(Value()); }
  bool Bool(bool b) { return skip_ != 0 ? Skip(0) : Add(Value::Bool(b)); }
  bool Int(int i) { return skip_ != 0 ? Skip(0) : Add(Value::Number(std::int64_t{i})); }
  bool Uint(unsigned u) { return skip_ != 0 ? Skip(0) : Add(Value::Number(std::int64_t{u})); }
  bool Int64(std::int64_t i) { return skip_ != 0 ? Skip(0) : Add(Value::Number(i)); }
  bool Uint64(std::uint64_t u) {
    return skip_ != 0 ? Skip(0) : Add(Value::Number(std::to_string(u)));
  }
  bool Double(double d);
  bool RawNumber(const char* s, unsigned n, bool) {
    return skip_ != 0 ? Skip(0) : Add(Value::Number(std::string(s, n)));
  }
  bool String(const char* s, unsigned n, bool);
  bool StartObject() { return skip_ != 0 ? Skip(+1) : Open(Value::MakeObject()); }
  bool Key(const char* s, unsigned n, bool);
  bool EndObject(unsigned) { return skip_ != 0 ? Skip(-1) : Close(); }
  bool StartArray() { return skip_ != 0 ? Skip(+1) : Open(Value::MakeArray()); }
  bool EndArray(unsigned) { return skip_ != 0 ? Skip(-1) : Close(); }

  // Adds an already built value where the next value belongs (an array element, or the member named
  // by the last Key()).
  bool AddValue(Value v) { return Add(std::move(v)); }

  // True once a complete top-level value has been built.
  bool done() const noexcept { return has_root_ && stack_.empty(); }
  std::size_t depth() const noexcept { return stack_.size(); }
  // Returns the built value and resets the builder for the next one.
  Value Take();
  const std::string& error() const noexcept { return error_; }

 private:
  Value* Append(Value v);
  bool Add(Value v) { return Append(std::move(v)) != nullptr; }
  bool Open(Value container);
  bool Close() {
    stack_.pop_back();
    return true;
  }
  // Consumes an event of a member rejected by the projection: +1 opens, -1 closes a container,
  // 0 is a scalar.
  bool Skip(int delta);

  std::size_t max_depth_;
  std::function<bool(std::string_view, std::string_view)> keep_member_;
  std::vector<Value*> stack_;  // open containers; see json.cpp for why the pointers stay valid
  std::string key_;
  Value root_;
  bool has_root_ = false;
  std::string error_;
  std::string resource_type_;  // value of the top-level "resourceType", for the projection
  std::size_t skip_ = 0;       // 0: building; 1: next value skipped; n>1: inside a skipped value
};

// Parses one JSON text (leading UTF-8 BOM and surrounding whitespace allowed). On failure the
// Error's message is "line L, column C: what" and `info` (if given) holds the position.
Result<Value> Parse(std::string_view text, const ParseOptions& options = {},
                    ParseErrorInfo* info = nullptr);

// Bytes a buffer given to ParseInsitu must extend beyond its terminator: RapidJSON's SIMD string
// scan loads aligned 16-byte blocks and may read up to 15 bytes past the terminating NUL.
inline constexpr std::size_t kInsituPadding = 16;

// Same as Parse, faster, on a mutable buffer: text[size] must be '\0' and the buffer must stay
// readable for kInsituPadding bytes after it (e.g. a std::string with that much spare capacity);
// the bytes are overwritten (strings are decoded in place). For callers that own a buffer they no
// longer need, such as a line of an NDJSON file.
Result<Value> ParseInsitu(char* text, std::size_t size, const ParseOptions& options = {},
                          ParseErrorInfo* info = nullptr);

// Serialises compactly (no whitespace), numbers as their original text.
std::string Serialize(const Value& v);
// Serialises with two-space indentation.
std::string SerializePretty(const Value& v);
// Appends compact serialisation to `out` (avoids a copy in hot loops).
void SerializeTo(const Value& v, std::string& out);

// True when `text` matches the JSON number grammar (RFC 8259 §6).
bool IsJsonNumber(std::string_view text) noexcept;

// Converts a byte offset in `text` to a 1-based line and column.
std::pair<std::size_t, std::size_t> LineColumn(std::string_view text, std::size_t offset) noexcept;

}  // namespace ccm::fhir::json
