// Shared pieces of config-file parsing: typed key readers whose errors name the file, the dotted
// key path and what was expected. Used by the engine config (ccm_config) and the sync config.
#pragma once

#include <filesystem>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fhir/json.h"
#include "fhir/result.h"
#include "mappings/code_maps.h"

namespace ccm::gateway::config {

// "<origin>: <key>: <what>" as an Errc::kInvalidArgument.
Error ConfigError(std::string_view origin, std::string_view key, std::string_view what);
// "parent.key" (or "key" at the top).
std::string Join(std::string_view parent, std::string_view key);
// Rejects keys that are not in `known` (a typo must not silently fall back to a default).
Status CheckKeys(const fhir::json::Value& object, std::string_view origin, std::string_view path,
                 std::initializer_list<std::string_view> known);
// The object at `key`, nullptr when absent; error when it is not an object.
Result<const fhir::json::Value*> Section(const fhir::json::Value& parent, std::string_view key,
                                         std::string_view origin, std::string_view parent_path);
Result<std::optional<std::string>> StringKey(const fhir::json::Value& parent, std::string_view key,
                                             std::string_view origin, std::string_view path);
Result<std::optional<long long>> IntKey(const fhir::json::Value& parent, std::string_view key,
                                        std::string_view origin, std::string_view path,
                                        long long min, long long max);
Result<std::vector<std::string>> StringListKey(const fhir::json::Value& parent,
                                               std::string_view key, std::string_view origin,
                                               std::string_view path);
Result<std::optional<bool>> BoolKey(const fhir::json::Value& parent, std::string_view key,
                                    std::string_view origin, std::string_view path);
// A list of {"system": ..., "code": ...} objects.
Result<std::optional<mappings::CodeSet>> CodeListKey(const fhir::json::Value& parent,
                                                     std::string_view key, std::string_view origin,
                                                     std::string_view path);
// Checks the URL of an endpoint (`key`, a dotted path, e.g. sources[0].baseUrl): http:// or
// https://, no user name or password in it (a URL is logged and sent as is; credentials go in the
// auth keys), no fragment, and -- unless `query_allowed` -- no query string (a FHIR base URL has
// none: searches add their own). Errors never repeat the URL, which may hold a secret.
Status CheckEndpointUrl(std::string_view url, std::string_view origin, std::string_view key,
                        bool query_allowed);

// The top-level `logging` section.
struct LoggingConfig {
  // Copy text that servers write (OperationOutcome diagnostics and details.text, OAuth
  // error_description) into messages and logs. Servers echo patient data there, so off by default.
  bool server_diagnostics = false;
};
Result<LoggingConfig> LoggingFromJson(const fhir::json::Value& root, std::string_view origin);

// `file` relative to `base` unless absolute.
std::filesystem::path Resolve(const std::filesystem::path& base, const std::string& file);
// Reads a hand-edited settings file (config, fee schedule): comments and trailing commas are
// accepted. Error when it is not a JSON object.
Result<fhir::json::Value> ReadJsonFile(const std::filesystem::path& file, std::string_view what);

}  // namespace ccm::gateway::config
