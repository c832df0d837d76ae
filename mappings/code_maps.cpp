#include "mappings/code_maps.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <optional>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "mappings/code_systems.h"
#include "mappings/embedded_data.h"

namespace ccm::mappings {
namespace {

namespace json = fhir::json;

constexpr std::string_view kCcwFile = "ccw-chronic-conditions.conceptmap.json";
constexpr std::string_view kSnomedFile = "snomed-chronic-conditions.conceptmap.json";
constexpr std::string_view kActivityFile = "ccm-activity-codes.valueset.json";
constexpr std::string_view kConsentFile = "ccm-consent-codes.valueset.json";

// Transparent hashing, so that lookups by string_view do not build a std::string.
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};
template <class V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;
using StringSet = std::unordered_set<std::string, StringHash, std::equal_to<>>;

// The lookup key of a code in `system`: NormalizeIcd10 for ICD-10-CM, else the code itself. Writes
// into a caller-provided buffer so lookups of real ICD-10-CM codes (at most 8 characters) never
// allocate; longer input falls back to a heap string.
class CodeKey {
 public:
  CodeKey(bool icd, std::string_view code) {
    if (!icd) {
      view_ = code;
      return;
    }
    std::size_t n = 0;
    for (char c : code) {
      if (c == '.' || std::isspace(static_cast<unsigned char>(c))) continue;
      if (n == buffer_.size()) {  // not an ICD-10-CM code, but be exact anyway
        heap_ = NormalizeIcd10(code);
        view_ = heap_;
        return;
      }
      buffer_[n++] = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    view_ = std::string_view(buffer_.data(), n);
  }
  CodeKey(const CodeKey&) = delete;
  CodeKey& operator=(const CodeKey&) = delete;
  std::string_view view() const noexcept { return view_; }

 private:
  std::array<char, 24> buffer_{};
  std::string heap_;
  std::string_view view_;
};

bool IsIcd10Cm(std::string_view system) { return system == kIcd10Cm; }

// A JSON value for messages: strings quoted, other kinds by name.
std::string Describe(const json::Value& v) {
  switch (v.kind()) {
    case json::Kind::kNull:
      return "nothing";
    case json::Kind::kString:
      return fmt::format("\"{}\"", v.str());
    case json::Kind::kNumber:
      return fmt::format("the number {}", v.number_text());
    default:
      return fmt::format("a JSON {}", json::KindName(v.kind()));
  }
}

// "origin: path: what" (without the path when it is empty).
Error ErrorAt(Errc code, std::string_view origin, std::string_view path, std::string_view what) {
  if (path.empty()) return MakeError(code, fmt::format("{}: {}", origin, what));
  return MakeError(code, fmt::format("{}: {}: {}", origin, path, what));
}
Error InvalidAt(std::string_view origin, std::string_view path, std::string_view what) {
  return ErrorAt(Errc::kInvalidArgument, origin, path, what);
}
Error UnsupportedAt(std::string_view origin, std::string_view path, std::string_view what) {
  return ErrorAt(Errc::kUnsupported, origin, path, what);
}

// A non-empty string member `key` of `object`, or an error naming `path`.`key`.
Result<std::string_view> RequireString(const json::Value& object, std::string_view key,
                                       std::string_view path, std::string_view origin,
                                       std::string_view expected) {
  const json::Value& v = object[key];
  if (!v.is_string() || v.str().empty()) {
    return InvalidAt(origin, fmt::format("{}.{}", path, key),
                     fmt::format("expected {}, got {}", expected, Describe(v)));
  }
  return v.str();
}

// An optional array member: null when absent, an error when present but not an array.
Result<const json::Array*> OptionalArray(const json::Value& object, std::string_view key,
                                         std::string_view path, std::string_view origin) {
  const json::Value& v = object[key];
  if (v.is_null()) return static_cast<const json::Array*>(nullptr);
  if (!v.is_array()) {
    return InvalidAt(origin, fmt::format("{}.{}", path, key),
                     fmt::format("expected an array, got {}", Describe(v)));
  }
  return &v.array();
}

Status CheckResourceType(const json::Value& resource, std::string_view expected,
                         std::string_view origin) {
  if (!resource.is_object()) {
    return InvalidAt(origin, "",
                     fmt::format("expected a {} resource (a JSON object), got {}", expected,
                                 Describe(resource)));
  }
  const json::Value& type = resource["resourceType"];
  if (type.str() != expected) {
    return InvalidAt(origin, "resourceType",
                     fmt::format("expected \"{}\", got {}", expected, Describe(type)));
  }
  return {};
}

Result<std::string> ReadWholeFile(const std::filesystem::path& file) {
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) {
    return MakeError(Errc::kNotFound, fmt::format("{}: no such file", file.string()));
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    return MakeError(Errc::kIo,
                     fmt::format("{}: cannot open: {}", file.string(), std::strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return MakeError(Errc::kIo, fmt::format("{}: read error", file.string()));
  return std::move(text).str();
}

// Parses `text` and checks its resourceType; errors as "origin:line:column: what".
Result<json::Value> ParseResource(std::string_view text, std::string_view expected_type,
                                  std::string_view origin) {
  // The in-situ parser is twice as fast; mapping files are large (the CCW map is ~1 MB) and
  // loaded at every start, so the copy pays for itself.
  std::string buffer;
  buffer.reserve(text.size() + json::kInsituPadding);
  buffer.assign(text);
  json::ParseErrorInfo info;
  Result<json::Value> value = json::ParseInsitu(buffer.data(), buffer.size(), {}, &info);
  if (!value) {
    return MakeError(Errc::kParseError,
                     fmt::format("{}:{}:{}: {}", origin, info.line, info.column, info.message));
  }
  CCM_TRY(CheckResourceType(*value, expected_type, origin));
  return value;
}

std::string BuiltInOrigin(std::string_view file_name) {
  return fmt::format("mappings/data/{} (built in)", file_name);
}

// The concatenated chunks of every embedded file, built once.
const StringMap<std::string>& EmbeddedTexts() {
  static const StringMap<std::string> texts = [] {
    StringMap<std::string> out;
    for (const embedded::EmbeddedFile& f : embedded::Files()) {
      std::string text;
      std::size_t total = 0;
      for (std::string_view chunk : f.chunks) total += chunk.size();
      text.reserve(total);
      for (std::string_view chunk : f.chunks) text.append(chunk);
      out.emplace(std::string(f.name), std::move(text));
    }
    return out;
  }();
  return texts;
}

Result<json::Value> ParseEmbedded(std::string_view file_name, std::string_view expected_type) {
  std::string_view text = EmbeddedMappingFile(file_name);
  if (text.empty()) {
    return MakeError(Errc::kInternal,
                     fmt::format("{} is not embedded in this build", BuiltInOrigin(file_name)));
  }
  return ParseResource(text, expected_type, BuiltInOrigin(file_name));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// ChronicConditionMap

struct ChronicConditionMap::Impl {
  struct Entry {
    std::uint32_t category;  // index into categories
    std::uint32_t origin;    // index into origins
  };
  struct SystemTable {
    std::string system;
    bool icd = false;
    StringMap<Entry> codes;  // normalised code -> entry
  };

  std::deque<ChronicCategory> categories;  // deque: push_back keeps addresses
  StringMap<std::uint32_t> category_index;
  std::vector<std::string> origins;
  std::vector<SystemTable> systems;  // a handful: linear search
  std::size_t size = 0;

  const SystemTable* FindSystem(std::string_view system) const {
    for (const SystemTable& t : systems) {
      if (t.system == system) return &t;
    }
    return nullptr;
  }
  SystemTable& GetSystem(std::string_view system) {
    for (SystemTable& t : systems) {
      if (t.system == system) return t;
    }
    SystemTable& t = systems.emplace_back();
    t.system = std::string(system);
    t.icd = IsIcd10Cm(system);
    return t;
  }
  const Entry* FindEntry(std::string_view system, std::string_view code) const {
    const SystemTable* table = FindSystem(system);
    if (table == nullptr) return nullptr;
    CodeKey key(table->icd, code);
    auto it = table->codes.find(key.view());
    return it == table->codes.end() ? nullptr : &it->second;
  }
};

ChronicConditionMap::ChronicConditionMap() : impl_(std::make_unique<Impl>()) {}
ChronicConditionMap::~ChronicConditionMap() = default;
ChronicConditionMap::ChronicConditionMap(const ChronicConditionMap& other)
    : impl_(std::make_unique<Impl>(other.impl_ ? *other.impl_ : Impl{})) {}
ChronicConditionMap& ChronicConditionMap::operator=(const ChronicConditionMap& other) {
  if (this != &other) impl_ = std::make_unique<Impl>(other.impl_ ? *other.impl_ : Impl{});
  return *this;
}
ChronicConditionMap::ChronicConditionMap(ChronicConditionMap&&) noexcept = default;
ChronicConditionMap& ChronicConditionMap::operator=(ChronicConditionMap&&) noexcept = default;

Status ChronicConditionMap::AddConceptMap(const fhir::json::Value& concept_map,
                                          std::string_view origin) {
  if (!impl_) impl_ = std::make_unique<Impl>();  // a moved-from map is empty and usable
  CCM_TRY(CheckResourceType(concept_map, "ConceptMap", origin));

  // Everything is checked first and staged here, so that a failure adds nothing.
  struct Staged {
    std::string system;
    std::string key;  // normalised code
    std::string category;
    std::string display;
    std::size_t group;  // indices of the element, for conflict messages
    std::size_t element;
  };
  std::vector<Staged> staged;
  auto path_of = [](const Staged& s) {
    return fmt::format("ConceptMap.group[{}].element[{}]", s.group, s.element);
  };
  std::string element_path;
  std::string target_path;

  CCM_TRY_ASSIGN(const json::Array* groups,
                 OptionalArray(concept_map, "group", "ConceptMap", origin));
  if (groups == nullptr || groups->empty()) {
    return InvalidAt(origin, "ConceptMap.group",
                     "expected at least one group (source system -> chronic categories)");
  }
  for (std::size_t g = 0; g < groups->size(); ++g) {
    const json::Value& group = (*groups)[g];
    const std::string group_path = fmt::format("ConceptMap.group[{}]", g);
    if (!group.is_object()) {
      return InvalidAt(origin, group_path,
                       fmt::format("expected an object, got {}", Describe(group)));
    }
    CCM_TRY_ASSIGN(
        std::string_view system,
        RequireString(group, "source", group_path, origin,
                      "the code system of the mapped codes (e.g. \"http://snomed.info/sct\")"));
    const json::Value& target_system = group["target"];
    if (target_system.str() != kChronicCategory) {
      return InvalidAt(origin, group_path + ".target",
                       fmt::format("expected \"{}\" (the chronic categories the engine counts), "
                                   "got {}",
                                   kChronicCategory, Describe(target_system)));
    }
    if (group.find("unmapped") != nullptr) {
      return UnsupportedAt(origin, group_path + ".unmapped",
                           "not supported: list every mapped code as an element instead");
    }
    CCM_TRY_ASSIGN(const json::Array* elements,
                   OptionalArray(group, "element", group_path, origin));
    if (elements == nullptr) continue;
    const bool icd = IsIcd10Cm(system);
    for (std::size_t e = 0; e < elements->size(); ++e) {
      const json::Value& element = (*elements)[e];
      // Paths are built into reused buffers: no allocation per element once they have grown.
      element_path.clear();
      fmt::format_to(std::back_inserter(element_path), "{}.element[{}]", group_path, e);
      if (!element.is_object()) {
        return InvalidAt(origin, element_path,
                         fmt::format("expected an object, got {}", Describe(element)));
      }
      CCM_TRY_ASSIGN(std::string_view code,
                     RequireString(element, "code", element_path, origin, "the source code"));
      CodeKey key(icd, code);
      if (key.view().empty()) {
        return InvalidAt(origin, element_path + ".code",
                         fmt::format("expected an ICD-10-CM code, got \"{}\"", code));
      }
      CCM_TRY_ASSIGN(const json::Array* targets,
                     OptionalArray(element, "target", element_path, origin));
      if (targets == nullptr) continue;
      for (std::size_t t = 0; t < targets->size(); ++t) {
        const json::Value& target = (*targets)[t];
        target_path.clear();
        fmt::format_to(std::back_inserter(target_path), "{}.target[{}]", element_path, t);
        if (!target.is_object()) {
          return InvalidAt(origin, target_path,
                           fmt::format("expected an object, got {}", Describe(target)));
        }
        CCM_TRY_ASSIGN(std::string_view equivalence,
                       RequireString(target, "equivalence", target_path, origin,
                                     "the equivalence (e.g. \"wider\"; R4 requires it)"));
        static constexpr std::array<std::string_view, 8> kMapped = {
            "relatedto", "equivalent", "equal",       "wider",
            "subsumes",  "narrower",   "specializes", "inexact"};
        if (equivalence == "unmatched" || equivalence == "disjoint") continue;
        if (std::find(kMapped.begin(), kMapped.end(), equivalence) == kMapped.end()) {
          return InvalidAt(origin, target_path + ".equivalence",
                           fmt::format("expected one of relatedto, equivalent, equal, wider, "
                                       "subsumes, narrower, specializes, inexact, unmatched, "
                                       "disjoint; got \"{}\"",
                                       equivalence));
        }
        CCM_TRY_ASSIGN(std::string_view category,
                       RequireString(target, "code", target_path, origin,
                                     "the chronic category code (e.g. \"diabetes\")"));
        const json::Value& display = target["display"];
        if (!display.is_null() && !display.is_string()) {
          return InvalidAt(origin, target_path + ".display",
                           fmt::format("expected a string, got {}", Describe(display)));
        }
        staged.push_back(Staged{std::string(system), std::string(key.view()), std::string(category),
                                std::string(display.str()), g, e});
      }
    }
  }

  // Conflicts: within this ConceptMap, then against what is already loaded.
  StringMap<std::size_t> first_in_file;  // system '|' key -> index into staged
  for (std::size_t i = 0; i < staged.size(); ++i) {
    const Staged& s = staged[i];
    auto [it, inserted] = first_in_file.try_emplace(s.system + '|' + s.key, i);
    const Staged& first = staged[it->second];
    if (!inserted && first.category != s.category) {
      return InvalidAt(
          origin, path_of(s),
          fmt::format("{}|{} maps to category \"{}\" but {} already maps it to \"{}\"; "
                      "a code may belong to one category only",
                      s.system, s.key, s.category, path_of(first), first.category));
    }
    if (const Impl::Entry* existing = impl_->FindEntry(s.system, s.key)) {
      const ChronicCategory& category = impl_->categories[existing->category];
      if (category.code != s.category) {
        return InvalidAt(origin, path_of(s),
                         fmt::format("{}|{} maps to category \"{}\" but {} already maps it to "
                                     "\"{}\"; a code may belong to one category only",
                                     s.system, s.key, s.category, impl_->origins[existing->origin],
                                     category.code));
      }
    }
  }
  if (impl_->origins.size() >= std::numeric_limits<std::uint32_t>::max() ||
      impl_->categories.size() + staged.size() >= std::numeric_limits<std::uint32_t>::max()) {
    return MakeError(Errc::kInvalidArgument, fmt::format("{}: too many mappings", origin));
  }

  // Commit.
  const auto origin_index = static_cast<std::uint32_t>(impl_->origins.size());
  impl_->origins.emplace_back(origin);
  for (Staged& s : staged) {
    auto [cat_it, new_category] = impl_->category_index.try_emplace(
        s.category, static_cast<std::uint32_t>(impl_->categories.size()));
    if (new_category) {
      impl_->categories.push_back(
          ChronicCategory{s.category, s.display.empty() ? s.category : s.display});
    } else if (ChronicCategory& c = impl_->categories[cat_it->second];
               c.display == c.code && !s.display.empty()) {
      c.display = s.display;
    }
    Impl::SystemTable& table = impl_->GetSystem(s.system);
    auto [entry_it, new_entry] =
        table.codes.try_emplace(std::move(s.key), Impl::Entry{cat_it->second, origin_index});
    if (new_entry) ++impl_->size;
  }
  return {};
}

const ChronicCategory* ChronicConditionMap::Find(std::string_view system,
                                                 std::string_view code) const {
  if (!impl_) return nullptr;
  const Impl::Entry* entry = impl_->FindEntry(system, code);
  return entry == nullptr ? nullptr : &impl_->categories[entry->category];
}

std::size_t ChronicConditionMap::size() const noexcept { return impl_ ? impl_->size : 0; }

std::size_t ChronicConditionMap::category_count() const noexcept {
  return impl_ ? impl_->categories.size() : 0;
}

// ---------------------------------------------------------------------------------------------
// CodeSet

struct CodeSet::Impl {
  struct SystemCodes {
    std::string system;
    bool icd = false;
    StringSet codes;
  };
  std::vector<SystemCodes> systems;

  const SystemCodes* Find(std::string_view system) const {
    for (const SystemCodes& s : systems) {
      if (s.system == system) return &s;
    }
    return nullptr;
  }
  SystemCodes& Get(std::string_view system) {
    for (SystemCodes& s : systems) {
      if (s.system == system) return s;
    }
    SystemCodes& s = systems.emplace_back();
    s.system = std::string(system);
    s.icd = IsIcd10Cm(system);
    return s;
  }
};

CodeSet::CodeSet() : impl_(std::make_unique<Impl>()) {}
CodeSet::~CodeSet() = default;
CodeSet::CodeSet(const CodeSet& other)
    : impl_(std::make_unique<Impl>(other.impl_ ? *other.impl_ : Impl{})) {}
CodeSet& CodeSet::operator=(const CodeSet& other) {
  if (this != &other) impl_ = std::make_unique<Impl>(other.impl_ ? *other.impl_ : Impl{});
  return *this;
}
CodeSet::CodeSet(CodeSet&&) noexcept = default;
CodeSet& CodeSet::operator=(CodeSet&&) noexcept = default;

void CodeSet::Add(std::string_view system, std::string_view code) {
  if (!impl_) impl_ = std::make_unique<Impl>();
  Impl::SystemCodes& s = impl_->Get(system);
  CodeKey key(s.icd, code);
  if (!key.view().empty()) s.codes.emplace(key.view());
}

bool CodeSet::Contains(std::string_view system, std::string_view code) const {
  if (!impl_) return false;
  const Impl::SystemCodes* s = impl_->Find(system);
  if (s == nullptr) return false;
  CodeKey key(s->icd, code);
  return s->codes.find(key.view()) != s->codes.end();
}

bool CodeSet::empty() const noexcept { return size() == 0; }

std::size_t CodeSet::size() const noexcept {
  std::size_t n = 0;
  if (impl_) {
    for (const Impl::SystemCodes& s : impl_->systems) n += s.codes.size();
  }
  return n;
}

std::vector<std::pair<std::string, std::string>> CodeSet::Entries() const {
  std::vector<std::pair<std::string, std::string>> out;
  if (impl_) {
    for (const Impl::SystemCodes& s : impl_->systems) {
      for (const std::string& code : s.codes) out.emplace_back(s.system, code);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

Result<CodeSet> CodeSet::FromValueSet(const fhir::json::Value& value_set, std::string_view origin) {
  CCM_TRY(CheckResourceType(value_set, "ValueSet", origin));
  const json::Value& compose = value_set["compose"];
  if (!compose.is_object()) {
    return InvalidAt(
        origin, "ValueSet.compose",
        fmt::format("expected compose.include listing the codes, got {}", Describe(compose)));
  }
  // Reads compose.include or compose.exclude into (system, code) pairs.
  using Codes = std::vector<std::pair<std::string_view, std::string_view>>;
  auto read = [&](std::string_view part) -> Result<Codes> {
    Codes codes;
    const std::string part_path = fmt::format("ValueSet.compose.{}", part);
    CCM_TRY_ASSIGN(const json::Array* items,
                   OptionalArray(compose, part, "ValueSet.compose", origin));
    if (items == nullptr) return codes;
    for (std::size_t i = 0; i < items->size(); ++i) {
      const json::Value& item = (*items)[i];
      const std::string path = fmt::format("{}[{}]", part_path, i);
      if (!item.is_object()) {
        return InvalidAt(origin, path, fmt::format("expected an object, got {}", Describe(item)));
      }
      if (item.find("filter") != nullptr) {
        return UnsupportedAt(origin, path + ".filter",
                             "filters are not supported: list the codes in concept[] instead");
      }
      if (item.find("valueSet") != nullptr) {
        return UnsupportedAt(origin, path + ".valueSet",
                             "importing other value sets is not supported: list the codes in "
                             "concept[] instead");
      }
      CCM_TRY_ASSIGN(std::string_view system,
                     RequireString(item, "system", path, origin,
                                   "the code system (e.g. \"http://www.ama-assn.org/go/cpt\")"));
      CCM_TRY_ASSIGN(const json::Array* concepts, OptionalArray(item, "concept", path, origin));
      if (concepts == nullptr || concepts->empty()) {
        return UnsupportedAt(origin, path + ".concept",
                             fmt::format("a whole code system ({}) is not supported: list the "
                                         "codes in concept[]",
                                         system));
      }
      for (std::size_t c = 0; c < concepts->size(); ++c) {
        const json::Value& concept_value = (*concepts)[c];
        const std::string concept_path = fmt::format("{}.concept[{}]", path, c);
        if (!concept_value.is_object()) {
          return InvalidAt(origin, concept_path,
                           fmt::format("expected an object, got {}", Describe(concept_value)));
        }
        CCM_TRY_ASSIGN(std::string_view code,
                       RequireString(concept_value, "code", concept_path, origin, "a code"));
        codes.emplace_back(system, code);
      }
    }
    return codes;
  };
  CCM_TRY_ASSIGN(Codes include, read("include"));
  if (include.empty()) {
    return InvalidAt(origin, "ValueSet.compose.include",
                     "expected at least one include with concept[] codes");
  }
  CCM_TRY_ASSIGN(Codes exclude, read("exclude"));
  CodeSet set;
  for (const auto& [system, code] : include) set.Add(system, code);
  if (!exclude.empty()) {
    CodeSet excluded;
    for (const auto& [system, code] : exclude) excluded.Add(system, code);
    CodeSet kept;
    for (const Impl::SystemCodes& s : set.impl_->systems) {
      for (const std::string& code : s.codes) {
        if (!excluded.Contains(s.system, code)) kept.Add(s.system, code);
      }
    }
    set = std::move(kept);
  }
  return set;
}

// ---------------------------------------------------------------------------------------------
// Files and built-in defaults

Result<ChronicConditionMap> LoadChronicConditionMaps(
    const std::vector<std::filesystem::path>& files, ChronicConditionMap start) {
  ChronicConditionMap map = std::move(start);
  for (const std::filesystem::path& file : files) {
    const std::string origin = file.string();
    CCM_TRY_ASSIGN(std::string text, ReadWholeFile(file));
    CCM_TRY_ASSIGN(json::Value resource, ParseResource(text, "ConceptMap", origin));
    CCM_TRY(map.AddConceptMap(resource, origin));
  }
  return map;
}

Result<CodeSet> LoadCodeSet(const std::filesystem::path& file) {
  const std::string origin = file.string();
  CCM_TRY_ASSIGN(std::string text, ReadWholeFile(file));
  CCM_TRY_ASSIGN(json::Value resource, ParseResource(text, "ValueSet", origin));
  return CodeSet::FromValueSet(resource, origin);
}

Result<ChronicConditionMap> DefaultChronicConditionMap() {
  ChronicConditionMap map;
  for (std::string_view file : {kCcwFile, kSnomedFile}) {
    CCM_TRY_ASSIGN(json::Value resource, ParseEmbedded(file, "ConceptMap"));
    CCM_TRY(map.AddConceptMap(resource, BuiltInOrigin(file)));
  }
  return map;
}

Status CodeTranslation::AddConceptMap(const json::Value& cm, std::string_view origin) {
  auto error = [&](const std::string& path, std::string_view what) {
    return MakeError(Errc::kInvalidArgument, fmt::format("{}: {}: {}", origin, path, what));
  };
  std::map<std::pair<std::string, std::string>, Target, std::less<>> added;
  const json::Value& groups = cm["group"];
  for (std::size_t g = 0; g < groups.size(); ++g) {
    std::string gp = fmt::format("ConceptMap.group[{}]", g);
    std::string source(groups[g]["source"].str()), target(groups[g]["target"].str());
    if (source.empty() || target.empty())
      return error(gp, "needs source and target (code systems)");
    const json::Value& elements = groups[g]["element"];
    for (std::size_t e = 0; e < elements.size(); ++e) {
      std::string ep = fmt::format("{}.element[{}]", gp, e);
      std::string code(elements[e]["code"].str());
      if (code.empty()) return error(ep + ".code", "missing");
      if (source == kIcd10Cm) code = NormalizeIcd10(code);
      for (const json::Value& t : elements[e]["target"].array()) {
        std::string_view eq = t["equivalence"].str();
        if (eq == "unmatched" || eq == "disjoint" || t["code"].str().empty()) continue;
        Target to{target, std::string(t["code"].str()), std::string(eq)};
        auto key = std::make_pair(source, code);
        for (auto* m : {&map_, &added}) {
          auto it = m->find(key);
          if (it != m->end() && it->second.code != to.code) {
            return error(
                ep, fmt::format("{} is mapped to both {} and {}", code, it->second.code, to.code));
          }
        }
        added.emplace(std::move(key), std::move(to));
        break;
      }
    }
  }
  map_.merge(added);
  return {};
}

const CodeTranslation::Target* CodeTranslation::Find(std::string_view system,
                                                     std::string_view code) const {
  auto it = system == kIcd10Cm
                ? map_.find(std::make_pair(std::string(system), NormalizeIcd10(code)))
                : map_.find(std::make_pair(std::string(system), std::string(code)));
  return it == map_.end() ? nullptr : &it->second;
}

Result<CodeTranslation> DefaultDiagnosisTranslation() {
  constexpr std::string_view kFile = "snomed-icd10cm-diagnoses.conceptmap.json";
  CCM_TRY_ASSIGN(json::Value resource, ParseEmbedded(kFile, "ConceptMap"));
  CodeTranslation t;
  CCM_TRY(t.AddConceptMap(resource, BuiltInOrigin(kFile)));
  return t;
}

Result<CodeSet> DefaultActivityCodes() {
  CCM_TRY_ASSIGN(json::Value resource, ParseEmbedded(kActivityFile, "ValueSet"));
  return CodeSet::FromValueSet(resource, BuiltInOrigin(kActivityFile));
}

Result<CodeSet> DefaultConsentCodes() {
  CCM_TRY_ASSIGN(json::Value resource, ParseEmbedded(kConsentFile, "ValueSet"));
  return CodeSet::FromValueSet(resource, BuiltInOrigin(kConsentFile));
}

std::string_view EmbeddedMappingFile(std::string_view file_name) {
  const StringMap<std::string>& texts = EmbeddedTexts();
  auto it = texts.find(file_name);
  return it == texts.end() ? std::string_view() : std::string_view(it->second);
}

std::vector<std::string_view> EmbeddedMappingFileNames() {
  std::vector<std::string_view> names;
  for (const embedded::EmbeddedFile& f : embedded::Files()) names.push_back(f.name);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace ccm::mappings
