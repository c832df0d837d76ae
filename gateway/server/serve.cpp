#include "gateway/server/serve.h"

#include <csignal>
#include <cstdio>

#include <fmt/format.h>
#include <boost/asio.hpp>

#include "fhir/datetime.h"
#include "fhir/json.h"
#include "gateway/server/http_server.h"
#include "gateway/server/service.h"

namespace ccm::gateway::server {
namespace {

namespace asio = boost::asio;
using fhir::json::Value;

void LogLine(std::string_view level, std::string_view event, std::string_view message,
             std::optional<std::uint16_t> port = std::nullopt) {
  Value e = Value::MakeObject();
  e.set("time", Value::String(fhir::NowUtc()));
  e.set("level", Value::String(std::string(level)));
  e.set("event", Value::String(std::string(event)));
  if (port) e.set("port", Value::Number(std::int64_t{*port}));
  e.set("message", Value::String(std::string(message)));
  std::string line = fhir::json::Serialize(e) + "\n";
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace

Status Serve(const GatewayConfig& config, const ServerConfig& server, const ServeOptions& options) {
  CCM_TRY_ASSIGN(auto tokens, LoadTokens(server));
  ServiceOptions so;
  so.version = options.version;
  so.commit = options.commit;
  so.log_patient_ids = server.log_patient_ids;
  so.billing_summary_max_age = server.billing_summary_max_age;
  so.log = [](std::string_view level, std::string_view event, std::string_view message) {
    LogLine(level, event, message);
  };
  GatewayService service(config, so);

  // The signals are handled by an io_context of their own on this thread, so that the server's
  // I/O threads never run the shutdown.
  asio::io_context control;
  asio::signal_set signals(control, SIGINT, SIGTERM, SIGHUP);

  HttpServerOptions ho;
  ho.address = server.address;
  ho.port = server.port;
  ho.io_threads = server.io_threads;
  ho.worker_threads = server.worker_threads;
  ho.limits = server.limits;
  ho.tls = server.tls;
  ho.tokens = tokens;
  // The page's sessions live in this process only: a restart signs everyone out.
  SessionStore::Options sessions;
  sessions.lifetime = std::chrono::duration_cast<std::chrono::seconds>(server.session_lifetime);
  ho.sessions = std::make_shared<SessionStore>(sessions);
  ho.on_access = [&service](const AccessRecord& a) { service.OnAccess(a); };
  CCM_TRY_ASSIGN(auto http, HttpServer::Start(std::move(ho), service.router()));
  if (tokens->empty() && !(server.tls && !server.tls->client_ca_file.empty())) {
    LogLine("warning", "no-tokens",
            "no tokens are configured (server.tokens, server.tokensFile) and no client "
            "certificates: every route but /healthz, /readyz and /metadata answers 401");
  }
  LogLine(
      "info", "listening",
      fmt::format("listening on {}:{}{}", server.address, http->port(), server.tls ? " (TLS)" : ""),
      http->port());

  // The schedule: a sync now and every sync.intervalSeconds (skipped while one runs).
  asio::steady_timer schedule(control);
  std::function<void()> tick = [&] {
    service.ScheduledSync();
    schedule.expires_after(config.sync.interval);
    schedule.async_wait([&](boost::system::error_code ec) {
      if (!ec) tick();
    });
  };
  if (config.sync.interval_set && !config.sync.sources.empty()) tick();

  bool stop = false;
  std::function<void()> wait_signal = [&] {
    signals.async_wait([&](boost::system::error_code ec, int sig) {
      if (ec) return;
      if (sig == SIGHUP) {
        auto reloaded = LoadTokens(server);
        if (reloaded) {
          http->SetTokens(*reloaded);
          LogLine("info", "tokens-reloaded", "SIGHUP: the tokens were read again");
        } else {
          LogLine("error", "tokens-reload-failed",
                  fmt::format("SIGHUP: the tokens could not be read again; keeping the old "
                              "ones: {}",
                              reloaded.error().message));
        }
        wait_signal();
        return;
      }
      stop = true;
      LogLine("info", "stopping",
              fmt::format("{}: stopping (no new connections; finishing requests and the sync)",
                          sig == SIGTERM ? "SIGTERM" : "SIGINT"));
      schedule.cancel();
      control.stop();
    });
  };
  wait_signal();
  control.run();
  static_cast<void>(stop);

  http->Stop(options.grace);
  if (!service.StopSync(options.sync_stop)) {
    LogLine("error", "stopped",
            fmt::format("the running sync did not stop within {} ms; exiting anyway (the next "
                        "sync resumes from the cursors)",
                        options.sync_stop.count()));
    return MakeError(Errc::kTimeout, "a running sync did not stop in time");
  }
  LogLine("info", "stopped", "stopped");
  return {};
}

}  // namespace ccm::gateway::server
