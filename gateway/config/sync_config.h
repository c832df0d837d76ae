// Configuration of the FHIR sources, the state store and the sync schedule: the `sources`,
// `state` and `sync` sections of the config file (docs/configuration.md, key by key).
//
// Secrets (bearer tokens, client secrets, private keys) are never written in the config itself:
// the config names a file (`tokenFile`, `clientSecretFile`, `privateKeyFile`) or an environment
// variable (`tokenEnv`, `clientSecretEnv`, `privateKeyEnv`) and they are read from there when the
// config is loaded. A key such as `token` or `clientSecret` is refused with an error saying so.
//
// The whole file is read once, by LoadGatewayConfig (gateway/config/gateway_config.h); the
// functions here parse its sections.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "fhir/client/auth.h"
#include "fhir/client/bulk_export.h"
#include "fhir/client/fhir_client.h"
#include "fhir/json.h"
#include "fhir/result.h"
#include "gateway/ccm/engine_config.h"

namespace ccm::gateway {

enum class AuthKind { kNone, kBearer, kClientCredentials, kSmartBackendServices };
// "none", "bearer", "client-credentials", "smart-backend-services": the config's auth.type.
std::string_view ToCode(AuthKind kind) noexcept;

// Whether parsing reads the credentials a config names -- the secrets (tokenFile/tokenEnv,
// clientSecretFile/..., privateKeyFile/...) and the TLS files (caFile, clientCertFile,
// clientKeyFile, which must then exist). Commands that contact no FHIR server (evaluate, ledger)
// skip them: they run where the credentials are not, and never hold them. With kSkip every other
// check still applies (a secret must still be named, by exactly one of File or Env).
enum class Credentials { kRead, kSkip };

struct AuthConfig {
  AuthKind kind = AuthKind::kNone;
  std::string token;  // bearer (the secret itself, read from tokenFile/tokenEnv)
  std::string token_url;
  std::string client_id;
  std::string client_secret;  // client-credentials
  std::string scope;
  std::string private_key_pem;  // smart-backend-services
  fhir::JwtAlgorithm algorithm = fhir::JwtAlgorithm::kRs384;
  std::string key_id;
  // Where the secret comes from, for people: "tokenFile /etc/ccm/token", "clientSecretEnv
  // EHR_SECRET"; "" for type none. Never the secret itself.
  std::string secret_source;
};

enum class ScopeKind { kAll, kGroup, kPatients };

// A source pulled with Bulk Data $export instead of searches (`sources[].bulk`;
// gateway/sync/bulk_sync.h, docs/design/bulk.md).
struct BulkConfig {
  fhir::BulkLevel level = fhir::BulkLevel::kSystem;  // "system" | "patient" | "group"
  std::string group;                                 // "Group/<id>" when level is kGroup
  int parallel_downloads = 4;                        // files downloaded at once, 1-10
  std::chrono::minutes max_wait{240};                // from kick-off to the manifest
  // _typeFilter per type ("Encounter" -> "Encounter?date=ge2026-01-01"), in config order.
  std::vector<std::pair<std::string, std::string>> type_filters;
};
// "system", "patient", "group".
std::string_view ToCode(fhir::BulkLevel level) noexcept;

struct SourceConfig {
  std::string name;
  std::string base_url;
  AuthConfig auth;
  int page_size = 100;
  std::vector<std::string> resource_types;  // empty: the engine's types (sync.h)
  ScopeKind scope = ScopeKind::kAll;
  std::string group;                  // "Group/<id>" when scope is kGroup
  std::vector<std::string> patients;  // ids when scope is kPatients
  int max_concurrency = 2;
  // With max_concurrency > 1, a search over every patient may be split into _lastUpdated windows
  // pulled concurrently (sync.cpp, docs/configuration.md).
  bool split_by_last_updated = true;
  std::chrono::seconds safety_margin{300};
  // Pages read from one search at most (a last guard against endless paging).
  std::size_t max_pages_per_search = 100'000;
  // Set: the source is pulled with $export (its `bulk` object); scope and paging do not apply.
  std::optional<BulkConfig> bulk;
  fhir::HttpOptions http;
  fhir::RetryPolicy retry;
  // Not a key of the source: the top-level logging.serverDiagnostics, set by the loaders for every
  // FHIR endpoint (sources, writeBack.target, payer endpoints); fhir::FhirClientOptions takes it.
  bool server_diagnostics = false;
};

struct SyncConfig {
  std::vector<SourceConfig> sources;
  std::filesystem::path state_path;  // default "ccm-gateway-state.db" beside the config file
  std::chrono::seconds interval{900};
  bool interval_set = false;  // sync.intervalSeconds was given (`serve` then syncs on schedule)
  // A server Date further than this from our clock (or behind the newest meta.lastUpdated seen)
  // is not used for a cursor.
  std::chrono::seconds max_clock_skew{300};
  // A full pull that would remove more than this share of a type's stored rows stops and asks
  // for --allow-mass-delete.
  int max_delete_percent = 5;
  // How long a sync waits for another sync (or bill) on the same state file.
  std::chrono::seconds lock_wait{600};
};

// Looks up an environment variable (std::getenv in production; a map in tests).
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
EnvLookup ProcessEnvironment();

// Reads the `sources`, `state`, `sync` and `logging` sections of a config (already parsed;
// `origin` names the file in errors, `base_dir` resolves relative paths). Missing sections give no
// sources and the defaults.
Result<SyncConfig> SyncConfigFromJson(const fhir::json::Value& root, std::string_view origin,
                                      const std::filesystem::path& base_dir, const EnvLookup& env,
                                      Credentials credentials = Credentials::kRead);
// One `sources[]`-style object (also used for other FHIR endpoints, such as a payer's);
// `path` is its dotted key path in errors. Its server_diagnostics is left false: the caller sets
// it from the `logging` section.
Result<SourceConfig> SourceConfigFromJson(const fhir::json::Value& object, std::string_view origin,
                                          const std::string& path,
                                          const std::filesystem::path& base_dir,
                                          const EnvLookup& env,
                                          Credentials credentials = Credentials::kRead);
// The `sources`, `state` and `sync` sections of a config file, credentials read: the sync part of
// LoadGatewayConfig (kept for tests; the commands load the whole file once).
Result<SyncConfig> LoadSyncConfig(const std::filesystem::path& file, const EnvLookup& env);

// The resource types pulled when a source does not list them: the engine's, with Practitioner
// and PractitionerRole only when billing practitioners are configured by NPI (then encounter
// performers must be resolved to NPIs).
std::vector<std::string> DefaultResourceTypes(const EngineConfig& engine);

}  // namespace ccm::gateway
