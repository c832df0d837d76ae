#include "gateway/config/sync_config.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "fhir/datatypes.h"
#include "fhir/reader.h"
#include "gateway/base/config_keys.h"

namespace ccm::gateway {
namespace {

using fhir::json::Value;
using namespace config;  // NOLINT(google-build-using-namespace): the key readers

// Reads a secret named by `<stem>File` or `<stem>Env` (exactly one); refuses `<stem>` itself.
// `source` says where it comes from ("tokenFile /abs/path"). With Credentials::kSkip the secret is
// named but not read: an empty string.
Result<std::optional<std::string>> Secret(const Value& auth, std::string_view stem,
                                          std::string_view origin, std::string_view path,
                                          const std::filesystem::path& base, const EnvLookup& env,
                                          Credentials credentials, std::string& source) {
  if (auth.find(stem) != nullptr) {
    return ConfigError(origin, Join(path, stem),
                       fmt::format("secrets are not taken from the config file; put it in a file "
                                   "and set {0}File, or in an environment variable and set {0}Env",
                                   stem));
  }
  std::string file_key = fmt::format("{}File", stem);
  std::string env_key = fmt::format("{}Env", stem);
  CCM_TRY_ASSIGN(auto file, StringKey(auth, file_key, origin, path));
  CCM_TRY_ASSIGN(auto var, StringKey(auth, env_key, origin, path));
  if (file && var) {
    return ConfigError(origin, Join(path, file_key),
                       fmt::format("set either {} or {}, not both", file_key, env_key));
  }
  std::string value;
  if (file) source = fmt::format("{} {}", file_key, Resolve(base, *file).string());
  if (var) source = fmt::format("{} {}", env_key, *var);
  if ((file || var) && credentials == Credentials::kSkip) return std::optional<std::string>("");
  if (file) {
    std::filesystem::path p = Resolve(base, *file);
    std::ifstream in(p, std::ios::binary);
    if (!in) {
      return ConfigError(
          origin, Join(path, file_key),
          fmt::format("cannot read {} (check the path and its permissions)", p.string()));
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    value = ss.str();
  } else if (var) {
    auto v = env(*var);
    if (!v) {
      return ConfigError(origin, Join(path, env_key),
                         fmt::format("the environment variable {} is not set", *var));
    }
    value = *v;
  } else {
    return std::optional<std::string>();
  }
  // Token and secret files usually end with a newline; a PEM key keeps its text as is.
  if (stem != "privateKey") {
    while (!value.empty() &&
           (value.back() == '\n' || value.back() == '\r' || value.back() == ' ')) {
      value.pop_back();
    }
  }
  if (value.empty()) {
    return ConfigError(origin, Join(path, file ? file_key : env_key), "the secret is empty");
  }
  return std::optional<std::string>(std::move(value));
}

Status ParseAuth(const Value* a, std::string_view origin, std::string_view path,
                 const std::filesystem::path& base, const EnvLookup& env, Credentials credentials,
                 AuthConfig& auth) {
  if (a == nullptr) return {};
  CCM_TRY(CheckKeys(*a, origin, path,
                    {"type", "token", "tokenFile", "tokenEnv", "tokenUrl", "clientId",
                     "clientSecret", "clientSecretFile", "clientSecretEnv", "scope", "privateKey",
                     "privateKeyFile", "privateKeyEnv", "keyId", "algorithm"}));
  CCM_TRY_ASSIGN(auto type, StringKey(*a, "type", origin, path));
  std::string t = type.value_or("none");
  auto required = [&](std::string_view key) -> Result<std::string> {
    CCM_TRY_ASSIGN(auto v, StringKey(*a, key, origin, path));
    if (!v) {
      return ConfigError(origin, Join(path, key),
                         fmt::format("required when auth.type is \"{}\"", t));
    }
    return *v;
  };
  auto secret = [&](std::string_view stem) -> Result<std::string> {
    CCM_TRY_ASSIGN(auto v,
                   Secret(*a, stem, origin, path, base, env, credentials, auth.secret_source));
    if (!v) {
      return ConfigError(origin, Join(path, fmt::format("{}File", stem)),
                         fmt::format("auth.type \"{}\" needs {}File or {}Env", t, stem, stem));
    }
    return *v;
  };
  CCM_TRY_ASSIGN(auto token_url, StringKey(*a, "tokenUrl", origin, path));
  if (token_url) {
    // Some token endpoints take a query (?api-version=...); none takes credentials in the URL.
    CCM_TRY(CheckEndpointUrl(*token_url, origin, Join(path, "tokenUrl"), /*query_allowed=*/true));
  }
  auth.token_url = token_url.value_or("");
  CCM_TRY_ASSIGN(auto scope, StringKey(*a, "scope", origin, path));
  if (t == "none") {
    auth.kind = AuthKind::kNone;
  } else if (t == "bearer") {
    auth.kind = AuthKind::kBearer;
    CCM_TRY_ASSIGN(auth.token, secret("token"));
  } else if (t == "client-credentials") {
    auth.kind = AuthKind::kClientCredentials;
    CCM_TRY_ASSIGN(auth.client_id, required("clientId"));
    CCM_TRY_ASSIGN(auth.client_secret, secret("clientSecret"));
    if (auth.token_url.empty()) {
      return ConfigError(origin, Join(path, "tokenUrl"),
                         "required when auth.type is \"client-credentials\"");
    }
    auth.scope = scope.value_or("");
  } else if (t == "smart-backend-services") {
    auth.kind = AuthKind::kSmartBackendServices;
    CCM_TRY_ASSIGN(auth.client_id, required("clientId"));
    CCM_TRY_ASSIGN(auth.key_id, required("keyId"));
    CCM_TRY_ASSIGN(auth.private_key_pem, secret("privateKey"));
    CCM_TRY_ASSIGN(auto alg, StringKey(*a, "algorithm", origin, path));
    if (!alg || *alg == "RS384") {
      auth.algorithm = fhir::JwtAlgorithm::kRs384;
    } else if (*alg == "ES384") {
      auth.algorithm = fhir::JwtAlgorithm::kEs384;
    } else {
      return ConfigError(origin, Join(path, "algorithm"),
                         fmt::format("\"{}\": expected \"RS384\" or \"ES384\" (the algorithms "
                                     "SMART Backend Services requires servers to support)",
                                     *alg));
    }
    auth.scope = scope.value_or("system/*.rs");
  } else {
    return ConfigError(origin, Join(path, "type"),
                       fmt::format("\"{}\": expected \"none\", \"bearer\", \"client-credentials\" "
                                   "or \"smart-backend-services\"",
                                   t));
  }
  return {};
}

Result<BulkConfig> ParseBulk(const Value& b, std::string_view origin, const std::string& path,
                             const std::vector<std::string>& resource_types) {
  if (!b.is_object()) return ConfigError(origin, path, "expected an object");
  CCM_TRY(CheckKeys(b, origin, path,
                    {"level", "group", "parallelDownloads", "maxWaitMinutes", "typeFilters"}));
  BulkConfig out;
  CCM_TRY_ASSIGN(auto level, StringKey(b, "level", origin, path));
  std::string l = level.value_or("system");
  if (l == "system") {
    out.level = fhir::BulkLevel::kSystem;
  } else if (l == "patient") {
    out.level = fhir::BulkLevel::kPatient;
  } else if (l == "group") {
    out.level = fhir::BulkLevel::kGroup;
  } else {
    return ConfigError(origin, Join(path, "level"),
                       fmt::format("\"{}\": expected \"system\" ([base]/$export), \"patient\" "
                                   "([base]/Patient/$export) or \"group\" "
                                   "([base]/Group/<id>/$export)",
                                   l));
  }
  CCM_TRY_ASSIGN(auto group, StringKey(b, "group", origin, path));
  if (out.level == fhir::BulkLevel::kGroup) {
    if (!group) {
      return ConfigError(origin, Join(path, "group"),
                         "required when level is \"group\": the Group to export, \"Group/<id>\"");
    }
    std::string id = group->starts_with("Group/") ? group->substr(6) : *group;
    if (!fhir::IsValidId(id)) {
      return ConfigError(origin, Join(path, "group"),
                         fmt::format("\"{}\" is not \"Group/<id>\" with a valid FHIR id", *group));
    }
    out.group = "Group/" + id;
  } else if (group) {
    return ConfigError(origin, Join(path, "group"), "only for level \"group\"");
  }
  CCM_TRY_ASSIGN(auto parallel, IntKey(b, "parallelDownloads", origin, path, 1, 10));
  if (parallel) out.parallel_downloads = static_cast<int>(*parallel);
  CCM_TRY_ASSIGN(auto wait, IntKey(b, "maxWaitMinutes", origin, path, 1, 7 * 24 * 60));
  if (wait) out.max_wait = std::chrono::minutes(*wait);
  CCM_TRY_ASSIGN(const Value* filters, Section(b, "typeFilters", origin, path));
  if (filters != nullptr) {
    std::string fp = Join(path, "typeFilters");
    for (const auto& member : filters->object()) {
      std::string at = Join(fp, member.key);
      if (std::string problem = fhir::ResourceTypeProblem(member.key); !problem.empty()) {
        return ConfigError(origin, at, problem);
      }
      if (!resource_types.empty() && std::find(resource_types.begin(), resource_types.end(),
                                               member.key) == resource_types.end()) {
        return ConfigError(origin, at,
                           fmt::format("{} is not among the source's resourceTypes", member.key));
      }
      std::string_view query = member.value.str();
      if (!member.value.is_string() || !query.starts_with(member.key + "?") ||
          query.size() == member.key.size() + 1) {
        return ConfigError(
            origin, at,
            fmt::format("expected a search of the type, e.g. \"{}?_lastUpdated=ge2026-01-01\"",
                        member.key));
      }
      out.type_filters.emplace_back(member.key, std::string(query));
    }
  }
  return out;
}

}  // namespace

std::string_view ToCode(fhir::BulkLevel level) noexcept {
  switch (level) {
    case fhir::BulkLevel::kSystem:
      return "system";
    case fhir::BulkLevel::kPatient:
      return "patient";
    case fhir::BulkLevel::kGroup:
      return "group";
  }
  return "system";
}

Result<SourceConfig> SourceConfigFromJson(const Value& s, std::string_view origin,
                                          const std::string& path,
                                          const std::filesystem::path& base, const EnvLookup& env,
                                          Credentials credentials) {
  if (!s.is_object()) return ConfigError(origin, path, "expected an object");
  CCM_TRY(CheckKeys(s, origin, path,
                    {"name", "baseUrl", "auth", "pageSize", "resourceTypes", "scope",
                     "maxConcurrency", "splitByLastUpdated", "safetyMarginSeconds", "compression",
                     "timeouts", "retry", "tls", "maxPagesPerSearch", "bulk"}));
  SourceConfig src;
  CCM_TRY_ASSIGN(auto name, StringKey(s, "name", origin, path));
  if (!name) return ConfigError(origin, Join(path, "name"), "required: a short unique name");
  src.name = *name;
  CCM_TRY_ASSIGN(auto url, StringKey(s, "baseUrl", origin, path));
  if (!url || !(url->starts_with("https://") || url->starts_with("http://"))) {
    return ConfigError(origin, Join(path, "baseUrl"),
                       "required: the FHIR base URL, e.g. \"https://ehr.example.org/fhir/R4\"");
  }
  CCM_TRY(CheckEndpointUrl(*url, origin, Join(path, "baseUrl"), /*query_allowed=*/false));
  src.base_url = *url;
  CCM_TRY_ASSIGN(const Value* auth, Section(s, "auth", origin, path));
  CCM_TRY(ParseAuth(auth, origin, Join(path, "auth"), base, env, credentials, src.auth));
  CCM_TRY_ASSIGN(auto page, IntKey(s, "pageSize", origin, path, 1, 1000));
  if (page) src.page_size = static_cast<int>(*page);
  CCM_TRY_ASSIGN(src.resource_types, StringListKey(s, "resourceTypes", origin, path));
  for (std::size_t i = 0; i < src.resource_types.size(); ++i) {
    if (std::string problem = fhir::ResourceTypeProblem(src.resource_types[i]); !problem.empty()) {
      return ConfigError(origin, fmt::format("{}[{}]", Join(path, "resourceTypes"), i), problem);
    }
  }
  CCM_TRY_ASSIGN(auto conc, IntKey(s, "maxConcurrency", origin, path, 1, 16));
  if (conc) src.max_concurrency = static_cast<int>(*conc);
  CCM_TRY_ASSIGN(auto compression, BoolKey(s, "compression", origin, path));
  src.http.compression = compression.value_or(true);
  CCM_TRY_ASSIGN(auto split, BoolKey(s, "splitByLastUpdated", origin, path));
  src.split_by_last_updated = split.value_or(true);
  CCM_TRY_ASSIGN(auto margin, IntKey(s, "safetyMarginSeconds", origin, path, 0, 7 * 86400));
  if (margin) src.safety_margin = std::chrono::seconds(*margin);
  CCM_TRY_ASSIGN(auto max_pages, IntKey(s, "maxPagesPerSearch", origin, path, 1, 100'000'000));
  if (max_pages) src.max_pages_per_search = static_cast<std::size_t>(*max_pages);

  CCM_TRY_ASSIGN(const Value* scope, Section(s, "scope", origin, path));
  CCM_TRY_ASSIGN(const Value* bulk, Section(s, "bulk", origin, path));
  if (bulk != nullptr) {
    if (scope != nullptr) {
      return ConfigError(origin, Join(path, "scope"),
                         "a bulk source is scoped by bulk.level and bulk.group; remove scope");
    }
    CCM_TRY_ASSIGN(src.bulk, ParseBulk(*bulk, origin, Join(path, "bulk"), src.resource_types));
  }
  if (scope != nullptr) {
    std::string sp = Join(path, "scope");
    CCM_TRY(CheckKeys(*scope, origin, sp, {"group", "patients"}));
    CCM_TRY_ASSIGN(auto group, StringKey(*scope, "group", origin, sp));
    CCM_TRY_ASSIGN(auto patients, StringListKey(*scope, "patients", origin, sp));
    if (group && !patients.empty()) {
      return ConfigError(origin, sp, "set either group or patients, not both");
    }
    if (group) {
      src.scope = ScopeKind::kGroup;
      src.group = group->starts_with("Group/") ? *group : "Group/" + *group;
    } else if (scope->find("patients") != nullptr) {
      if (patients.empty()) {
        return ConfigError(origin, Join(sp, "patients"), "an empty list would sync no patient");
      }
      src.scope = ScopeKind::kPatients;
      for (auto& p : patients) {
        src.patients.push_back(p.starts_with("Patient/") ? p.substr(8) : p);
      }
    }
  }

  // A whole-number duration key (in units of `unit_ms` milliseconds) into `target`, if present.
  auto millis = [&](const Value& object, std::string_view key, std::string_view at, long long min,
                    long long max, long long unit_ms, std::chrono::milliseconds& target) -> Status {
    CCM_TRY_ASSIGN(auto n, IntKey(object, key, origin, at, min, max));
    if (n) target = std::chrono::milliseconds(*n * unit_ms);
    return {};
  };
  CCM_TRY_ASSIGN(const Value* t, Section(s, "timeouts", origin, path));
  if (t != nullptr) {
    std::string tp = Join(path, "timeouts");
    CCM_TRY(CheckKeys(*t, origin, tp, {"connectSeconds", "totalSeconds", "lowSpeedSeconds"}));
    CCM_TRY(millis(*t, "connectSeconds", tp, 1, 600, 1000, src.http.connect_timeout));
    CCM_TRY(millis(*t, "totalSeconds", tp, 0, 86400, 1000, src.http.total_timeout));
    CCM_TRY_ASSIGN(auto low, IntKey(*t, "lowSpeedSeconds", origin, tp, 1, 3600));
    if (low) src.http.low_speed_time = std::chrono::seconds(*low);
  }
  CCM_TRY_ASSIGN(const Value* r, Section(s, "retry", origin, path));
  if (r != nullptr) {
    std::string rp = Join(path, "retry");
    CCM_TRY(CheckKeys(
        *r, origin, rp,
        {"maxAttempts", "initialBackoffMs", "maxBackoffSeconds", "maxRetryAfterSeconds"}));
    CCM_TRY_ASSIGN(auto n, IntKey(*r, "maxAttempts", origin, rp, 1, 20));
    if (n) src.retry.max_attempts = static_cast<int>(*n);
    CCM_TRY(millis(*r, "initialBackoffMs", rp, 0, 60'000, 1, src.retry.initial_backoff));
    CCM_TRY(millis(*r, "maxBackoffSeconds", rp, 0, 3600, 1000, src.retry.max_backoff));
    CCM_TRY(millis(*r, "maxRetryAfterSeconds", rp, 0, 3600, 1000, src.retry.max_retry_after));
  }
  CCM_TRY_ASSIGN(const Value* tls, Section(s, "tls", origin, path));
  if (tls != nullptr) {
    std::string tp = Join(path, "tls");
    CCM_TRY(CheckKeys(*tls, origin, tp, {"verify", "caFile", "clientCertFile", "clientKeyFile"}));
    CCM_TRY_ASSIGN(auto verify, BoolKey(*tls, "verify", origin, tp));
    src.http.tls.verify = verify.value_or(true);
    for (auto [key, target] : {std::pair{"caFile", &src.http.tls.ca_file},
                               std::pair{"clientCertFile", &src.http.tls.client_cert},
                               std::pair{"clientKeyFile", &src.http.tls.client_key}}) {
      CCM_TRY_ASSIGN(auto f, StringKey(*tls, key, origin, tp));
      if (!f) continue;
      std::filesystem::path p = Resolve(base, *f);
      std::error_code ec;
      if (credentials == Credentials::kRead && !std::filesystem::is_regular_file(p, ec)) {
        return ConfigError(origin, Join(tp, key), fmt::format("{}: no such file", p.string()));
      }
      *target = p.string();
    }
    if (src.http.tls.client_cert.empty() != src.http.tls.client_key.empty()) {
      return ConfigError(origin, tp, "mutual TLS needs both clientCertFile and clientKeyFile");
    }
  }
  return src;
}

std::string_view ToCode(AuthKind kind) noexcept {
  switch (kind) {
    case AuthKind::kNone:
      return "none";
    case AuthKind::kBearer:
      return "bearer";
    case AuthKind::kClientCredentials:
      return "client-credentials";
    case AuthKind::kSmartBackendServices:
      return "smart-backend-services";
  }
  return "none";
}

EnvLookup ProcessEnvironment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());  // NOLINT(concurrency-mt-unsafe): read-only use
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

Result<SyncConfig> SyncConfigFromJson(const Value& root, std::string_view origin,
                                      const std::filesystem::path& base_dir, const EnvLookup& env,
                                      Credentials credentials) {
  SyncConfig out;
  CCM_TRY_ASSIGN(LoggingConfig logging, LoggingFromJson(root, origin));
  out.state_path = base_dir.empty() ? std::filesystem::path("ccm-gateway-state.db")
                                    : base_dir / "ccm-gateway-state.db";
  if (const Value* sources = root.find("sources")) {
    if (!sources->is_array()) return ConfigError(origin, "sources", "expected an array of sources");
    std::set<std::string> names;
    for (std::size_t i = 0; i < sources->size(); ++i) {
      std::string path = fmt::format("sources[{}]", i);
      CCM_TRY_ASSIGN(SourceConfig src,
                     SourceConfigFromJson((*sources)[i], origin, path, base_dir, env, credentials));
      if (!names.insert(src.name).second) {
        return ConfigError(origin, Join(path, "name"),
                           fmt::format("\"{}\" is used by two sources; names must be unique (the "
                                       "state store keys cursors by them)",
                                       src.name));
      }
      src.server_diagnostics = logging.server_diagnostics;
      out.sources.push_back(std::move(src));
    }
  }
  CCM_TRY_ASSIGN(const Value* state, Section(root, "state", origin, ""));
  if (state != nullptr) {
    CCM_TRY(CheckKeys(*state, origin, "state", {"path"}));
    CCM_TRY_ASSIGN(auto p, StringKey(*state, "path", origin, "state"));
    if (p) out.state_path = Resolve(base_dir, *p);
  }
  CCM_TRY_ASSIGN(const Value* sync, Section(root, "sync", origin, ""));
  if (sync != nullptr) {
    CCM_TRY(CheckKeys(
        *sync, origin, "sync",
        {"intervalSeconds", "maxClockSkewSeconds", "maxDeletePercent", "lockWaitSeconds"}));
    CCM_TRY_ASSIGN(auto n, IntKey(*sync, "intervalSeconds", origin, "sync", 10, 7 * 86400));
    if (n) out.interval = std::chrono::seconds(*n);
    out.interval_set = n.has_value();
    CCM_TRY_ASSIGN(auto skew, IntKey(*sync, "maxClockSkewSeconds", origin, "sync", 1, 86400));
    if (skew) out.max_clock_skew = std::chrono::seconds(*skew);
    CCM_TRY_ASSIGN(auto share, IntKey(*sync, "maxDeletePercent", origin, "sync", 0, 100));
    if (share) out.max_delete_percent = static_cast<int>(*share);
    CCM_TRY_ASSIGN(auto wait, IntKey(*sync, "lockWaitSeconds", origin, "sync", 0, 86400));
    if (wait) out.lock_wait = std::chrono::seconds(*wait);
  }
  return out;
}

Result<SyncConfig> LoadSyncConfig(const std::filesystem::path& file, const EnvLookup& env) {
  CCM_TRY_ASSIGN(Value v, ReadJsonFile(file, "config"));
  return SyncConfigFromJson(v, file.string(), file.parent_path(), env);
}

std::vector<std::string> DefaultResourceTypes(const EngineConfig& engine) {
  std::vector<std::string> t = {"Patient", "Condition", "Encounter", "CarePlan", "Consent"};
  if (!engine.practice.billing_practitioner_npis.empty() ||
      !engine.practice.billing_practitioner_refs.empty()) {
    t.emplace_back("Practitioner");
    t.emplace_back("PractitionerRole");
  }
  return t;
}

std::vector<std::string> SourceResourceTypes(const SourceConfig& source,
                                             const EngineConfig& engine) {
  return source.resource_types.empty() ? DefaultResourceTypes(engine) : source.resource_types;
}

}  // namespace ccm::gateway
