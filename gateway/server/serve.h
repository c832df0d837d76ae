// `ccm-gateway serve`: the long-running service -- the HTTP server with the gateway's routes
// (server/service.h), the scheduled sync, and the process's signals.
//
// Contract
// - Listens on server.address:server.port (TLS when configured); logs one JSON line
//   {"event": "listening", "port": N} on stderr once it accepts connections.
// - Runs a sync every sync.intervalSeconds when that key is set (skipped while one runs; the first
//   one at start).
// - SIGTERM/SIGINT: stops accepting, lets in-flight requests finish (up to `grace`), asks a running
//   sync to stop after the store transaction it is in and waits for it (up to `sync_stop`), then
//   returns. SIGHUP re-reads the tokens (server.tokens and server.tokensFile); a file that cannot
//   be read keeps the old tokens (logged).
#pragma once

#include <chrono>
#include <string>

#include "fhir/result.h"
#include "gateway/config/gateway_config.h"
#include "gateway/server/server_config.h"

namespace ccm::gateway::server {

struct ServeOptions {
  std::string version = "unknown", commit = "unknown";
  std::chrono::milliseconds grace{10'000};
  std::chrono::milliseconds sync_stop{30'000};
};

// Blocks until SIGTERM or SIGINT. Errc::kIo when the address cannot be bound, kInvalidArgument for
// unusable TLS files or tokens; kTimeout when a running sync did not stop within sync_stop.
Status Serve(const GatewayConfig& config, const ServerConfig& server, const ServeOptions& options);

}  // namespace ccm::gateway::server
