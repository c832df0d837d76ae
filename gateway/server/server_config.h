// The `server` section of the config (docs/configuration.md, "server"): where `ccm-gateway
// serve` listens, who may call it, and its limits.
//
// Contract
// - Tokens are never in the config: `tokens` lists `{"sha256": "<hex>", "name": "..."}`, or
//   `tokensFile` names a JSON file holding that list (so it can be rotated and re-read on SIGHUP
//   without touching the config). A key `token` is refused, as every inline secret is.
// - Defaults are safe: loopback only, no TLS, and the limits of ServerLimits.
// - Errors name the file, the key path and the fix.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fhir/json.h"
#include "fhir/result.h"
#include "gateway/server/http_server.h"
#include "gateway/server/token_auth.h"

namespace ccm::gateway::server {

struct ServerConfig {
  std::string address = "127.0.0.1";
  std::uint16_t port = 8080;
  unsigned io_threads = 1;
  unsigned worker_threads = 2;
  ServerLimits limits;
  std::optional<TlsFiles> tls;
  std::vector<TokenAuth::Entry> tokens;  // inline hashes
  std::filesystem::path tokens_file;     // or a file of them ("" when none)
  bool log_patient_ids = false;          // access log: patient ids in clear (else hashed)
  // sessionMinutes: how long a browser session (POST /$login) lasts, from the login.
  std::chrono::minutes session_lifetime{480};
  // billingSummaryMaxAgeSeconds: how long a billing summary that read the EHR (write-back
  // configured) is served from the cache; 0 = computed for every request.
  std::chrono::seconds billing_summary_max_age{60};
};

// `server` may be null (no section: the defaults). `base_dir` resolves relative file names.
Result<ServerConfig> ServerConfigFromJson(const fhir::json::Value* server, std::string_view origin,
                                          const std::filesystem::path& base_dir);

// The accepted tokens: the inline ones plus those of tokens_file (read now: call again to
// re-read after the file changed).
Result<std::shared_ptr<const TokenAuth>> LoadTokens(const ServerConfig& config);

}  // namespace ccm::gateway::server
