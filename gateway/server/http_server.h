// The gateway's HTTP/1.1 server (Boost.Beast on Asio, C++20 coroutines): accepts connections on
// I/O threads, runs each request's handler on a worker pool (handlers block: SQLite, curl), and
// writes the response. HTTP handling only; what a route does is the handler's business.
//
// Contract
// - Limits (ServerLimits) bound every client: header and body size (431, 413), the time to read a
//   request (408) and to write a response, idle keep-alive, and concurrent connections (503 for
//   one more). A slow or malformed client costs one connection, never another client's request.
// - Authentication: a route that needs it is refused (401, WWW-Authenticate: Bearer) unless the
//   request carries a configured bearer token, or (with TLS client certificates) the client
//   presented a certificate the configured CA signed. Request.principal says who: the token's
//   name, or "certificate:<subject CN>".
// - Browser sessions (when `sessions` is set; docs/api.md "Browser sessions"): the server itself
//   answers POST /$login (a form or JSON `token`, checked as a bearer token is: 200 and
//   Set-Cookie ccm_session=<256 random bits>; HttpOnly; SameSite=Strict; Path=/; Max-Age; Secure
//   under TLS -- or 401), POST /$logout (204, the session ended, the cookie cleared) and GET
//   /$session (200 {"authenticated": bool, "principal"}: whether the cookie opens one). A route
//   that needs authentication then also accepts that cookie when no Authorization header is
//   given; the principal is the session's token name. An unknown or expired cookie is 401 (and
//   cleared). A request authenticated by the cookie with a method other than GET/HEAD, and every
//   POST to /$login and /$logout, must come from the gateway's own page: an X-Requested-With
//   header (which no HTML form can send, and a browser sends cross-origin only after a CORS
//   preflight the gateway never grants), or an Origin header equal to this server's scheme and
//   Host. Otherwise 403 -- defence in depth beside SameSite=Strict.
// - Every response carries X-Content-Type-Options: nosniff.
// - Every error is an OperationOutcome (server/http_error.h). A handler that throws gives 500.
// - Stop(grace) stops accepting, lets in-flight requests finish (their responses say
//   Connection: close), closes idle connections, and returns once every connection is gone or
//   `grace` has passed.
// - on_access (optional) is called once per request, from a worker or I/O thread, after the
//   response is written (or the connection failed): for the access log and metrics.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "fhir/result.h"
#include "gateway/server/router.h"
#include "gateway/server/session_store.h"
#include "gateway/server/token_auth.h"

namespace ccm::gateway::server {

struct ServerLimits {
  std::size_t header_bytes = 16 * 1024;
  std::size_t body_bytes = 1024 * 1024;
  std::chrono::milliseconds read_timeout{30'000};   // from the first byte to the whole request
  std::chrono::milliseconds write_timeout{30'000};  // one response
  std::chrono::milliseconds idle_timeout{60'000};   // keep-alive, between requests
  std::size_t max_connections = 512;
};

struct TlsFiles {
  std::string cert_file, key_file;  // PEM; the certificate file may hold the chain
  std::string client_ca_file;       // PEM; set: client certificates are required and verified
};

struct AccessRecord {
  std::string method;
  std::string route;  // the route's pattern ("/Patient/{id}/$ccm-status"), never the raw path
  // The route's captures and the query, decoded (empty when no route matched): what was asked
  // for, for the audit trail. May hold patient ids: never logged as they are.
  std::map<std::string, std::string> params;
  std::vector<std::pair<std::string, std::string>> query;
  std::string principal;  // "" when not authenticated
  unsigned status = 0;
  double seconds = 0;
  std::size_t bytes_out = 0;
};

struct HttpServerOptions {
  std::string address = "127.0.0.1";
  std::uint16_t port = 0;  // 0: any free port (see HttpServer::port)
  unsigned io_threads = 1;
  unsigned worker_threads = 2;
  ServerLimits limits;
  std::optional<TlsFiles> tls;
  std::shared_ptr<const TokenAuth> tokens;  // null or empty: only certificates authenticate
  // Browser sessions (POST /$login, /$logout, the ccm_session cookie); null: none (404).
  std::shared_ptr<SessionStore> sessions;
  std::function<void(const AccessRecord&)> on_access;
};

class HttpServer {
 public:
  // Binds, listens and starts the threads. Errc::kIo when the address cannot be bound,
  // Errc::kInvalidArgument for unusable TLS files. `router` must outlive the server.
  static Result<std::unique_ptr<HttpServer>> Start(HttpServerOptions options, const Router& router);
  ~HttpServer();  // Stop(0) if not stopped
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  std::uint16_t port() const noexcept;
  std::size_t connections() const noexcept;  // open now
  // Replaces the accepted tokens (SIGHUP re-reads the tokens file): requests dispatched after this
  // returns use the new ones. Thread-safe.
  void SetTokens(std::shared_ptr<const TokenAuth> tokens);
  void Stop(std::chrono::milliseconds grace);

 private:
  struct Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ccm::gateway::server
