#include "gateway/config/gateway_config.h"

namespace ccm::gateway {

Result<GatewayConfig> DefaultGatewayConfig() {
  GatewayConfig c;
  CCM_TRY_ASSIGN(c.engine, DefaultEngineConfig());
  // The sync defaults come from its parser, so that they are stated once.
  CCM_TRY_ASSIGN(
      c.sync, SyncConfigFromJson(fhir::json::Value::MakeObject(), "", "", {}, Credentials::kSkip));
  c.credentials_read = true;  // there are none to read
  return c;
}

Result<GatewayConfig> GatewayConfigFromJson(const fhir::json::Value& root, std::string_view origin,
                                            const std::filesystem::path& base_dir,
                                            const ConfigLoadOptions& options) {
  const EnvLookup env = options.env ? options.env : ProcessEnvironment();
  GatewayConfig c;
  c.file = std::filesystem::path(origin);
  // The engine's parser also owns the top-level keys (an unknown section is an error there) and
  // checks `logging`; the order of the sections is the order their errors are found in.
  CCM_TRY_ASSIGN(c.engine, EngineConfigFromJson(root, origin, base_dir));
  CCM_TRY_ASSIGN(c.logging, config::LoggingFromJson(root, origin));
  CCM_TRY_ASSIGN(c.sync, SyncConfigFromJson(root, origin, base_dir, env, options.credentials));
  CCM_TRY_ASSIGN(c.write_back,
                 WriteBackConfigFromJson(root, origin, base_dir, env, c.sync, options.credentials));
  CCM_TRY_ASSIGN(c.program, ProgramAssumptionsFromJson(root.find("program"), origin));
  c.credentials_read = options.credentials == Credentials::kRead;
  return c;
}

Result<GatewayConfig> LoadGatewayConfig(const std::filesystem::path& file,
                                        const ConfigLoadOptions& options) {
  CCM_TRY_ASSIGN(fhir::json::Value root, config::ReadJsonFile(file, "config"));
  return GatewayConfigFromJson(root, file.string(), file.parent_path(), options);
}

}  // namespace ccm::gateway
