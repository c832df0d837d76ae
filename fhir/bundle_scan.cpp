#include "fhir/bundle_scan.h"

#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

#include <fmt/format.h>

#include <charconv>
#include <cstring>

#include "fhir/json.h"

namespace ccm::fhir {
namespace {

// SAX handler. Depths: 1 the Bundle, 2 link[] / entry[], 3 a link or an entry, 4 entry.resource
// (or entry.search), 5 resource.meta. Everything deeper is only counted.
class Scanner : public rapidjson::BaseReaderHandler<rapidjson::UTF8<>, Scanner> {
 public:
  Scanner(rapidjson::MemoryStream& stream, std::size_t max_depth)
      : stream_(stream), max_depth_(max_depth) {}

  bool StartObject() {
    if (++depth_ > max_depth_) return Fail("nesting deeper than the limit");
    if (depth_ == 2 && keys_[1] == "entry") page_.entry_not_array = true;
    if (depth_ == 3 && in_entry_array_) {
      page_.entries.emplace_back();
    } else if (depth_ == 3 && in_link_array_) {
      link_relation_.clear();
      link_url_.clear();
    } else if (depth_ == 4 && in_entry_array_ && key3_ == "resource") {
      ScannedEntry& e = page_.entries.back();
      e.begin = stream_.Tell() - 1;  // just read the '{'
      e.has_resource = true;
    }
    if (depth_ <= 5) keys_[depth_].clear();
    return true;
  }
  bool EndObject(rapidjson::SizeType) {
    if (depth_ == 4 && in_entry_array_ && key3_ == "resource") {
      page_.entries.back().end = stream_.Tell();
    } else if (depth_ == 3 && in_link_array_ && link_relation_ == "next") {
      page_.next_url = link_url_;
    }
    --depth_;
    return true;
  }
  bool StartArray() {
    if (++depth_ > max_depth_) return Fail("nesting deeper than the limit");
    if (depth_ == 2) {
      in_entry_array_ = keys_[1] == "entry";
      in_link_array_ = keys_[1] == "link";
    }
    return true;
  }
  bool EndArray(rapidjson::SizeType) {
    if (depth_ == 2) in_entry_array_ = in_link_array_ = false;
    --depth_;
    return true;
  }
  bool Key(const char* s, rapidjson::SizeType n, bool) {
    if (depth_ <= 5) keys_[depth_].assign(s, n);
    if (depth_ == 3) key3_.assign(s, n);
    return true;
  }
  bool String(const char* s, rapidjson::SizeType n, bool) {
    std::string_view v(s, n);
    NotAnEntryArray();
    const std::string& key = depth_ <= 5 ? keys_[depth_] : empty_;
    if (depth_ == 1 && key == "resourceType") {
      page_.resource_type = v;
    } else if (depth_ == 1 && key == "type") {
      page_.type = v;
    } else if (depth_ == 3 && in_link_array_) {
      if (key == "relation") link_relation_ = v;
      if (key == "url") link_url_ = v;
    } else if (depth_ == 4 && in_entry_array_) {
      ScannedEntry& e = page_.entries.back();
      if (key3_ == "resource" && key == "resourceType") e.resource_type = v;
      if (key3_ == "resource" && key == "id") e.id = v;
      if (key3_ == "search" && key == "mode") e.search_mode = v;
    } else if (depth_ == 5 && in_entry_array_ && key3_ == "resource" && keys_[4] == "meta") {
      ScannedEntry& e = page_.entries.back();
      if (key == "versionId") e.version_id = v;
      if (key == "lastUpdated") e.last_updated = v;
    }
    return true;
  }
  bool Default() {  // booleans, null: nothing to keep
    NotAnEntryArray();
    return true;
  }
  bool RawNumber(const char* s, rapidjson::SizeType n, bool) {
    NotAnEntryArray();
    // Bundle.total (unsignedInt): kept only when it is a plain non-negative integer.
    if (depth_ == 1 && keys_[1] == "total") {
      std::size_t total = 0;
      auto [end, ec] = std::from_chars(s, s + n, total);
      if (ec == std::errc() && end == s + n) page_.total = total;
    }
    return true;
  }

  ScannedPage Take() { return std::move(page_); }
  // A scalar value at depth 1 under the key "entry".
  void NotAnEntryArray() {
    if (depth_ == 1 && keys_[1] == "entry") page_.entry_not_array = true;
  }
  const std::string& error() const { return error_; }

 private:
  bool Fail(std::string message) {
    error_ = std::move(message);
    return false;
  }
  rapidjson::MemoryStream& stream_;
  std::size_t max_depth_;
  std::size_t depth_ = 0;
  std::string keys_[6];  // the current key at depths 1..5
  std::string key3_;     // the current key of the link/entry object
  std::string link_relation_, link_url_;
  bool in_entry_array_ = false, in_link_array_ = false;
  ScannedPage page_;
  std::string error_;
  const std::string empty_;
};

}  // namespace

Result<ScannedPage> ScanBundle(std::string_view text, std::size_t max_depth) {
  std::size_t bad = json::FindInvalidUtf8(text);
  const void* nul = std::memchr(text.data(), '\0', text.size());
  rapidjson::ParseResult ok;
  std::string what;
  rapidjson::MemoryStream stream(text.data(), text.size());
  Scanner scanner(stream, max_depth);
  if (bad != std::string_view::npos) {
    ok.Set(rapidjson::kParseErrorStringInvalidEncoding, bad);
    what = "invalid UTF-8 byte sequence (the text must be UTF-8 encoding)";
  } else if (nul != nullptr) {
    ok.Set(rapidjson::kParseErrorValueInvalid,
           static_cast<std::size_t>(static_cast<const char*>(nul) - text.data()));
    what = "NUL byte in the text (not allowed anywhere in JSON)";
  } else {
    rapidjson::Reader reader;
    // Numbers as strings: their text is never converted (and so never rejected for range).
    ok = reader.Parse<rapidjson::kParseNumbersAsStringsFlag>(stream, scanner);
    if (ok) return scanner.Take();
    what = scanner.error().empty() ? rapidjson::GetParseError_En(ok.Code()) : scanner.error();
  }
  auto [line, column] = json::LineColumn(text, ok.Offset());
  return MakeError(Errc::kParseError, fmt::format("line {}, column {}: {}", line, column, what));
}

}  // namespace ccm::fhir
