// The gateway's whole configuration, read once from one file into one typed struct.
//
// Contract
// - LoadGatewayConfig reads the file once and parses every section: the engine's (`practice`,
//   `mappings`, `rules`, `billing` fee schedule -- gateway/ccm/engine_config.h), the sync's
//   (`sources`, `state`, `sync` -- sync_config.h), the bill's (`writeBack`, `billing.provider`,
//   `billing.identifierSystem`, `billing.payers` -- writeback_config.h), `logging` and `program`
//   (gateway/ccm/program.h). Every command checks every section, so a file is valid or not
//   whatever command reads it.
// - Errors are Errc::kInvalidArgument (a wrong key or value), kNotFound (the file cannot be
//   opened) or kInternal (the built-in defaults are broken); the message names the file, the key
//   as a dotted path (`sources[0].auth.tokenFile`) and what is expected (docs/configuration.md).
//   The first error found is returned, sections in the order above.
// - Credentials (secrets and TLS files) are read only with Credentials::kRead; the config then
//   holds the secrets, so it is never logged or printed whole.
// - No network access, no state store: loading a config contacts nothing.
#pragma once

#include <filesystem>

#include "fhir/json.h"
#include "fhir/result.h"
#include "gateway/base/config_keys.h"
#include "gateway/ccm/engine_config.h"
#include "gateway/ccm/program.h"
#include "gateway/config/sync_config.h"
#include "gateway/config/writeback_config.h"

namespace ccm::gateway {

struct ConfigLoadOptions {
  EnvLookup env;  // where tokenEnv and friends are looked up; empty: the process environment
  Credentials credentials = Credentials::kRead;
};

struct GatewayConfig {
  std::filesystem::path file;  // the config file; empty for the built-in defaults
  EngineConfig engine;         // practice, mappings, rules, fee schedule
  SyncConfig sync;             // sources, state, sync
  WriteBackConfig write_back;  // writeBack, billing.provider, billing.identifierSystem, payers
  config::LoggingConfig logging;
  ProgramAssumptions program;  // program.assumptions (GET /$ccm-program)
  // Whether the secrets and TLS files were read (Credentials::kRead). Workflows that contact a
  // FHIR server refuse a config without them.
  bool credentials_read = false;
};

// The built-in defaults (no file): UTC, the shipped mappings and fee schedules, no sources, the
// state file "ccm-gateway-state.db" in the working directory.
Result<GatewayConfig> DefaultGatewayConfig();
// Reads and parses `file` once (comments and trailing commas accepted); relative paths in it are
// resolved against its directory.
Result<GatewayConfig> LoadGatewayConfig(const std::filesystem::path& file,
                                        const ConfigLoadOptions& options = {});
// The same from an already parsed file; `origin` names it in errors.
Result<GatewayConfig> GatewayConfigFromJson(const fhir::json::Value& root, std::string_view origin,
                                            const std::filesystem::path& base_dir,
                                            const ConfigLoadOptions& options = {});

}  // namespace ccm::gateway
