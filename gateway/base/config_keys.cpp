#include "gateway/base/config_keys.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>

namespace ccm::gateway::config {

using fhir::json::Value;

Error ConfigError(std::string_view origin, std::string_view key, std::string_view what) {
  return MakeError(Errc::kInvalidArgument,
                   fmt::format("{}: {}: {}", origin.empty() ? "config" : origin, key, what));
}

std::string Join(std::string_view parent, std::string_view key) {
  return parent.empty() ? std::string(key) : fmt::format("{}.{}", parent, key);
}

Status CheckKeys(const Value& object, std::string_view origin, std::string_view path,
                 std::initializer_list<std::string_view> known) {
  for (const auto& m : object.object()) {
    if (std::find(known.begin(), known.end(), m.key) != known.end()) continue;
    std::string list;
    for (std::string_view k : known) list += fmt::format("{}{}", list.empty() ? "" : ", ", k);
    return ConfigError(origin, Join(path, m.key),
                       fmt::format("unknown key (expected one of: {})", list));
  }
  return {};
}

Result<const Value*> Section(const Value& parent, std::string_view key, std::string_view origin,
                             std::string_view parent_path) {
  const Value* v = parent.find(key);
  if (v == nullptr) return static_cast<const Value*>(nullptr);
  if (!v->is_object()) {
    return ConfigError(origin, Join(parent_path, key),
                       fmt::format("expected an object, found {}", KindName(v->kind())));
  }
  return v;
}

Result<std::optional<std::string>> StringKey(const Value& parent, std::string_view key,
                                             std::string_view origin, std::string_view path) {
  const Value* v = parent.find(key);
  if (v == nullptr) return std::optional<std::string>();
  if (!v->is_string() || v->str().empty()) {
    return ConfigError(origin, Join(path, key), "expected a non-empty string");
  }
  return std::optional<std::string>(std::string(v->str()));
}

Result<std::optional<long long>> IntKey(const Value& parent, std::string_view key,
                                        std::string_view origin, std::string_view path,
                                        long long min, long long max) {
  const Value* v = parent.find(key);
  if (v == nullptr) return std::optional<long long>();
  long long n = 0;
  std::string_view text = v->number_text();
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (!v->is_number() || ec != std::errc() || end != text.data() + text.size() || n < min ||
      n > max) {
    return ConfigError(origin, Join(path, key),
                       fmt::format("expected a whole number from {} to {}", min, max));
  }
  return std::optional<long long>(n);
}

Result<std::vector<std::string>> StringListKey(const Value& parent, std::string_view key,
                                               std::string_view origin, std::string_view path) {
  std::vector<std::string> out;
  const Value* v = parent.find(key);
  if (v == nullptr) return out;
  if (!v->is_array()) return ConfigError(origin, Join(path, key), "expected an array of strings");
  for (std::size_t i = 0; i < v->size(); ++i) {
    const Value& e = (*v)[i];
    if (!e.is_string() || e.str().empty()) {
      return ConfigError(origin, fmt::format("{}[{}]", Join(path, key), i),
                         "expected a non-empty string");
    }
    out.emplace_back(e.str());
  }
  return out;
}

Result<std::optional<bool>> BoolKey(const Value& parent, std::string_view key,
                                    std::string_view origin, std::string_view path) {
  const Value* v = parent.find(key);
  if (v == nullptr) return std::optional<bool>();
  if (!v->is_bool()) return ConfigError(origin, Join(path, key), "expected true or false");
  return std::optional<bool>(v->as_bool());
}

Result<std::optional<mappings::CodeSet>> CodeListKey(const Value& parent, std::string_view key,
                                                     std::string_view origin,
                                                     std::string_view path) {
  const Value* v = parent.find(key);
  if (v == nullptr) return std::optional<mappings::CodeSet>();
  std::string p = Join(path, key);
  if (!v->is_array()) {
    return ConfigError(origin, p, R"(expected an array of {"system": "...", "code": "..."})");
  }
  mappings::CodeSet set;
  for (std::size_t i = 0; i < v->size(); ++i) {
    const Value& e = (*v)[i];
    std::string ep = fmt::format("{}[{}]", p, i);
    if (!e.is_object() || !e["system"].is_string() || !e["code"].is_string() ||
        e["system"].str().empty() || e["code"].str().empty()) {
      return ConfigError(origin, ep, R"(expected {"system": "...", "code": "..."})");
    }
    set.Add(e["system"].str(), e["code"].str());
  }
  return std::optional<mappings::CodeSet>(std::move(set));
}

Status CheckEndpointUrl(std::string_view url, std::string_view origin, std::string_view key,
                        bool query_allowed) {
  std::size_t scheme_end = url.find("://");
  std::string_view scheme = url.substr(0, scheme_end);
  if (scheme_end == std::string_view::npos || (scheme != "https" && scheme != "http") ||
      scheme_end + 3 == url.size()) {
    return ConfigError(origin, key, "expected an http:// or https:// URL");
  }
  std::string_view rest = url.substr(scheme_end + 3);
  std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (authority.find('@') != std::string_view::npos) {
    return ConfigError(origin, key,
                       "the URL carries a user name or password; credentials never go in a URL "
                       "(it is logged and sent as it is): remove them and configure auth "
                       "(tokenFile, clientSecretFile or privateKeyFile, or their ...Env)");
  }
  if (!query_allowed && rest.find('?') != std::string_view::npos) {
    return ConfigError(origin, key,
                       "the URL has a query string (?...); a FHIR base URL has none (searches add "
                       "their own parameters, and a query may carry a secret): remove it");
  }
  if (rest.find('#') != std::string_view::npos) {
    return ConfigError(origin, key, "the URL has a fragment (#...): remove it");
  }
  return {};
}

Result<LoggingConfig> LoggingFromJson(const Value& root, std::string_view origin) {
  LoggingConfig out;
  CCM_TRY_ASSIGN(const Value* s, Section(root, "logging", origin, ""));
  if (s == nullptr) return out;
  CCM_TRY(CheckKeys(*s, origin, "logging", {"serverDiagnostics"}));
  CCM_TRY_ASSIGN(auto diagnostics, BoolKey(*s, "serverDiagnostics", origin, "logging"));
  out.server_diagnostics = diagnostics.value_or(false);
  return out;
}

std::filesystem::path Resolve(const std::filesystem::path& base, const std::string& file) {
  std::filesystem::path p(file);
  return p.is_absolute() || base.empty() ? p : base / p;
}

// (Mapping files are FHIR resources and go through the mappings loaders, strictly.)
Result<Value> ReadJsonFile(const std::filesystem::path& file, std::string_view what) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    return MakeError(Errc::kNotFound, fmt::format("{}: cannot open {} file", file.string(), what));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  fhir::json::ParseOptions options;
  options.relaxed = true;
  auto v = fhir::json::Parse(ss.str(), options);
  if (!v)
    return MakeError(Errc::kInvalidArgument,
                     fmt::format("{}: {}", file.string(), v.error().message));
  if (!v->is_object()) {
    return MakeError(Errc::kInvalidArgument,
                     fmt::format("{}: expected a JSON object at the top level", file.string()));
  }
  return std::move(*v);
}

}  // namespace ccm::gateway::config
