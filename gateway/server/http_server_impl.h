// Internal to the HTTP server (gateway/server/http_server*.cpp include it; nothing else may): the
// server's state and its per-connection loop, shared by three translation units so that the plain
// and the TLS sessions -- the two instantiations of the Beast/Asio coroutine Serve<Stream>, by far
// the costliest code of the project to compile -- build in parallel.
#pragma once

#include "gateway/server/http_server.h"

#include <fmt/format.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace ccm::gateway::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using beast::error_code;
inline constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

// The Date header's value for now.
inline std::string HttpDate() {
  auto now = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

struct HttpServer::Impl {
  HttpServerOptions options;
  const Router& router;
  asio::io_context ioc;
  asio::thread_pool workers;
  std::optional<ssl::context> tls;
  tcp::acceptor acceptor;
  std::vector<std::thread> io_threads;
  std::atomic<bool> stopping{false};
  bool stopped = false;
  std::atomic<std::size_t> active{0};
  std::mutex m;
  std::condition_variable cv;  // `active` went down
  // Closers of the connections waiting for a request, so that Stop() can end them.
  std::mutex idle_m;
  std::map<std::uint64_t, std::function<void()>> idle;
  std::uint64_t next_id = 0;
  std::uint16_t port = 0;
  std::mutex tokens_m;  // options.tokens, replaced by SetTokens

  std::shared_ptr<const TokenAuth> Tokens() {
    std::lock_guard lock(tokens_m);
    return options.tokens;
  }

  Impl(HttpServerOptions o, const Router& r)
      : options(std::move(o)),
        router(r),
        ioc(static_cast<int>(std::max(1u, options.io_threads))),
        workers(std::max(1u, options.worker_threads)),
        acceptor(ioc) {}

  void SessionEnded() {
    {
      std::lock_guard lock(m);
      --active;
    }
    cv.notify_all();
  }

  // --- browser sessions (http_server.h; docs/api.md "Browser sessions") -------------------------
  static constexpr std::string_view kCookie = "ccm_session";

  // The Set-Cookie value for a session `value` (empty with max_age 0: the cookie is cleared).
  // HttpOnly: the page's script never sees it; SameSite=Strict: no other site's page sends it;
  // Secure under TLS, so that it never travels in clear.
  std::string SessionCookie(std::string_view value, std::chrono::seconds max_age) const {
    return fmt::format("{}={}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}", kCookie, value,
                       max_age.count(), options.tls ? "; Secure" : "");
  }

  // Whether `req` comes from a page of this gateway's own origin: a request a browser sends
  // with the session cookie and that changes something must (defence in depth beside
  // SameSite=Strict, which an old browser may not honour). Either of two proofs will do:
  // - X-Requested-With (the page's script always sends it): a browser adds a custom header to a
  //   cross-origin request only after a CORS preflight, which the gateway never grants; an HTML
  //   form cannot add one at all. It keeps working behind a TLS-terminating reverse proxy, whose
  //   public origin the gateway cannot know.
  // - An Origin equal to this server's scheme and Host (browsers send the true Origin with every
  //   POST): a plain form of the gateway's own page.
  std::optional<HttpError> CrossSite(const Request& req) const {
    if (!req.Header("x-requested-with").empty()) return std::nullopt;
    std::string_view origin = req.Header("origin");
    if (origin.empty()) {
      return MakeHttpError(403,
                           "refused: a browser request that changes something must come from the "
                           "gateway's own page (X-Requested-With, or an Origin of this server)");
    }
    std::string expected =
        fmt::format("{}://{}", options.tls ? "https" : "http", req.Header("host"));
    bool same = origin.size() == expected.size() &&
                std::equal(origin.begin(), origin.end(), expected.begin(), [](char a, char b) {
                  return std::tolower(static_cast<unsigned char>(a)) ==
                         std::tolower(static_cast<unsigned char>(b));
                });
    if (same) return std::nullopt;
    // The Origin is the caller's text: not echoed.
    return MakeHttpError(403, "refused: the request's Origin is not this gateway");
  }

  static Response Unauthorized(std::string message, bool token_given) {
    Response r = ErrorResponse(MakeHttpError(401, std::move(message)));
    r.headers.emplace_back("WWW-Authenticate",
                           token_given
                               ? std::string(R"(Bearer realm="ccm-gateway", error="invalid_token")")
                               : std::string(R"(Bearer realm="ccm-gateway")"));
    return r;
  }

  // POST /$login: a token (form field or JSON member `token`) for a session cookie.
  Response Login(const Request& req, AccessRecord& access) {
    if (auto e = CrossSite(req)) return ErrorResponse(*e);
    std::optional<std::string> token;
    std::string_view type = req.Header("content-type");
    if (type.starts_with("application/json")) {
      auto v = fhir::json::Parse(req.body);
      if (v && v->is_object() && v->find("token") != nullptr && (*v)["token"].is_string()) {
        token = std::string((*v)["token"].str());
      }
    } else if (type.starts_with("application/x-www-form-urlencoded")) {
      if (auto form = ParseTarget("/?" + req.body)) {
        for (auto& [k, v] : form->query) {
          if (k == "token") token = std::move(v);
        }
      }
    }
    if (!token) {
      return ErrorResponse(MakeHttpError(
          400, "expected a form (application/x-www-form-urlencoded) or JSON body with `token`"));
    }
    auto tokens = Tokens();
    std::optional<std::string> who;
    if (tokens) who = tokens->AuthenticateToken(*token);
    if (!who) {
      return Unauthorized("the token is not one of the tokens this gateway accepts", true);
    }
    auto value = options.sessions->Create(*who, SessionStore::Clock::now());
    if (!value) return ErrorResponse(MakeHttpError(500, value.error().message));
    access.principal = *who;
    fhir::json::Value body = fhir::json::Value::MakeObject();
    body.set("principal", fhir::json::Value::String(*who));
    body.set("expiresInSeconds",
             fhir::json::Value::Number(std::int64_t{options.sessions->lifetime().count()}));
    Response r = JsonResponse(200, body, "application/json");
    r.headers.emplace_back("Set-Cookie", SessionCookie(*value, options.sessions->lifetime()));
    return r;
  }

  // POST /$logout: ends the cookie's session (if any) and clears the cookie.
  Response Logout(const Request& req, AccessRecord& access) {
    if (auto e = CrossSite(req)) return ErrorResponse(*e);
    if (auto value = CookieValue(req.Header("cookie"), kCookie)) {
      if (auto who = options.sessions->Find(*value, SessionStore::Clock::now())) {
        access.principal = *who;
      }
      options.sessions->Remove(*value);
    }
    Response r;
    r.status = 204;
    r.headers.emplace_back("Set-Cookie", SessionCookie("", std::chrono::seconds(0)));
    return r;
  }

  // GET /$session: whether the request's cookie opens a live session, and whose -- always 200, so
  // that a page that is merely signed out logs no failed request.
  Response Session(const Request& req, AccessRecord& access) {
    fhir::json::Value body = fhir::json::Value::MakeObject();
    std::optional<std::string> who;
    if (auto value = CookieValue(req.Header("cookie"), kCookie)) {
      who = options.sessions->Find(*value, SessionStore::Clock::now());
    }
    body.set("authenticated", fhir::json::Value::Bool(who.has_value()));
    if (who) {
      body.set("principal", fhir::json::Value::String(*who));
      access.principal = *who;
    }
    return JsonResponse(200, body, "application/json");
  }

  // What a request gets, decided on a worker thread: routing, authentication, the handler.
  Response Dispatch(const http::request<http::string_body>& raw, const std::string& certificate,
                    AccessRecord& access) {
    auto target = ParseTarget(std::string_view(raw.target().data(), raw.target().size()));
    access.method = std::string(raw.method_string());
    if (!target) {
      access.route = "(bad target)";
      return ErrorResponse(MakeHttpError(400,
                                         "the request target is not a path with a valid "
                                         "percent-encoded query"));
    }
    Request req;
    req.method = access.method;
    req.body = raw.body();
    for (const auto& field : raw) {
      std::string name(field.name_string());
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      req.headers[name] = std::string(field.value());
    }
    if (options.sessions &&
        (target->path == "/$login" || target->path == "/$logout" || target->path == "/$session")) {
      access.route = target->path;
      const std::string allowed = target->path == "/$session" ? "GET" : "POST";
      if (req.method != allowed) {
        Response r = ErrorResponse(MakeHttpError(
            405,
            fmt::format("{} is not supported on this path (allowed: {})", req.method, allowed)));
        r.headers.emplace_back("Allow", allowed);
        return r;
      }
      if (target->path == "/$session") return Session(req, access);
      return target->path == "/$login" ? Login(req, access) : Logout(req, access);
    }
    Router::Match match = router.Find(access.method, target->path);
    if (match.route == nullptr) {
      access.route = "(no route)";
      Response r = ErrorResponse(*match.error);
      if (!match.allow.empty()) r.headers.emplace_back("Allow", match.allow);
      return r;
    }
    access.route = match.route->pattern;
    access.params = match.params;
    access.query = target->query;
    req.path = std::move(target->path);
    req.query = std::move(target->query);
    req.params = std::move(match.params);
    if (match.route->needs_auth) {
      std::optional<std::string> who;
      if (!certificate.empty()) who = certificate;
      std::string_view authorization = req.Header("authorization");
      if (auto tokens = Tokens(); !who && tokens && !authorization.empty()) {
        who = tokens->Authenticate(authorization);
      }
      // The cookie only when no Authorization header was given: explicit credentials that fail
      // are a failure, whatever else the request carries.
      std::optional<std::string_view> cookie;
      if (!who && authorization.empty() && options.sessions) {
        cookie = CookieValue(req.Header("cookie"), kCookie);
        if (cookie) who = options.sessions->Find(*cookie, SessionStore::Clock::now());
        if (who && req.method != "GET" && req.method != "HEAD") {
          if (auto e = CrossSite(req)) return ErrorResponse(*e);
        }
      }
      if (!who) {
        if (cookie) {
          Response r = Unauthorized("the session has ended or is unknown: sign in again", false);
          r.headers.emplace_back("Set-Cookie", SessionCookie("", std::chrono::seconds(0)));
          return r;
        }
        return Unauthorized(authorization.empty()
                                ? "this endpoint needs Authorization: Bearer <token>"
                                : "the bearer token is not one of the tokens this gateway accepts",
                            !authorization.empty());
      }
      req.principal = *who;
      access.principal = *who;
    }
    try {
      return match.route->handler(req);
    } catch (const std::exception& e) {
      // The boundary: an unexpected failure is a 500, never a dropped connection. Its text is
      // ours (no server or patient text reaches a handler's exception).
      return ErrorResponse(MakeHttpError(500, fmt::format("internal error: {}", e.what())));
    }
  }

  static http::response<http::string_body> ToBeast(Response r, unsigned version, bool keep_alive) {
    http::response<http::string_body> res{static_cast<http::status>(r.status), version};
    res.set(http::field::server, "ccm-gateway");
    res.set(http::field::date, HttpDate());
    res.set(http::field::content_type, r.content_type);
    // Responses may hold patient data: never cached by intermediaries or browsers.
    res.set(http::field::cache_control, "no-store");
    // A browser must take every answer as the type it says (a JSON body is never run as HTML).
    res.set("X-Content-Type-Options", "nosniff");
    for (auto& [k, v] : r.headers) res.set(k, v);
    res.body() = std::move(r.body);
    res.keep_alive(keep_alive);
    res.prepare_payload();
    // 204 and 304 have no body by definition: RFC 9110 §8.6 forbids a Content-Length on a 204, and
    // on a 304 it would have to be the length of the body not sent.
    if (r.status == 204 || r.status == 304) res.erase(http::field::content_length);
    return res;
  }

  // The request/response loop of one connection.
  template <class Stream>
  asio::awaitable<void> Serve(std::shared_ptr<Stream> stream, std::string certificate) {
    beast::flat_buffer buffer;
    auto& lowest = beast::get_lowest_layer(*stream);
    bool first = true;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(static_cast<std::uint32_t>(options.limits.header_bytes));
      parser.body_limit(options.limits.body_bytes);
      // The read deadline cancels the read instead of closing the socket (what the stream's own
      // timeout does), so that a client that sent half a request still gets its 408.
      lowest.expires_never();
      auto timed_out = std::make_shared<bool>(false);
      asio::steady_timer deadline(stream->get_executor());
      deadline.expires_after(first ? options.limits.read_timeout : options.limits.idle_timeout);
      deadline.async_wait([timed_out, weak = std::weak_ptr<Stream>(stream)](error_code e) {
        if (e) return;
        *timed_out = true;
        if (auto s = weak.lock()) {
          error_code ignored;
          beast::get_lowest_layer(*s).socket().cancel(ignored);
        }
      });
      first = false;
      std::uint64_t id = 0;
      {
        std::lock_guard lock(idle_m);
        if (stopping) co_return;
        id = ++next_id;
        std::weak_ptr<Stream> weak = stream;
        auto executor = stream->get_executor();
        idle.emplace(id, [weak, executor] {
          asio::post(executor, [weak] {
            if (auto s = weak.lock()) beast::get_lowest_layer(*s).cancel();
          });
        });
      }
      auto [ec, n] = co_await http::async_read(*stream, buffer, parser, kTuple);
      deadline.cancel();
      {
        std::lock_guard lock(idle_m);
        idle.erase(id);
      }
      if (*timed_out && ec) ec = beast::error::timeout;
      std::optional<HttpError> refused;
      if (ec == http::error::header_limit) {
        refused = MakeHttpError(
            431, fmt::format("request headers larger than {} bytes", options.limits.header_bytes));
      } else if (ec == http::error::body_limit) {
        refused = MakeHttpError(
            413, fmt::format("request body larger than {} bytes", options.limits.body_bytes));
      } else if (ec == beast::error::timeout && parser.got_some()) {
        refused = MakeHttpError(408, "the request did not arrive in time");
      } else if (ec && ec.category() == http::make_error_code(http::error::bad_method).category() &&
                 ec != http::error::end_of_stream && ec != http::error::partial_message) {
        refused = MakeHttpError(400, fmt::format("malformed HTTP request ({})", ec.message()));
      } else if (ec) {
        break;  // closed, reset, idle timeout, stop
      }
      AccessRecord access;
      auto started = std::chrono::steady_clock::now();
      Response response;
      unsigned version = 11;
      bool keep_alive = false;
      if (refused) {
        access.method = "(unread)";
        access.route = "(refused)";
        response = ErrorResponse(*refused);
      } else {
        http::request<http::string_body> req = parser.release();
        version = req.version();
        keep_alive = req.keep_alive();
        // Blocking work (SQLite, HTTP to an EHR) runs on the workers, never on an I/O thread.
        response = co_await asio::co_spawn(
            workers,
            [&]() -> asio::awaitable<Response> { co_return Dispatch(req, certificate, access); },
            asio::use_awaitable);
      }
      access.status = response.status;
      auto res = ToBeast(std::move(response), version, keep_alive && !refused && !stopping);
      access.bytes_out = res.body().size();
      lowest.expires_after(options.limits.write_timeout);
      auto [wec, wn] = co_await http::async_write(*stream, res, kTuple);
      access.seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      if (options.on_access) options.on_access(access);
      if (wec || !res.keep_alive()) break;
    }
    error_code ignored;
    lowest.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  // One connection, plain (http_session_plain.cpp) or TLS (http_session_tls.cpp).
  asio::awaitable<void> Plain(tcp::socket socket);
  asio::awaitable<void> Secure(tcp::socket socket);

  // One more connection than allowed: a short 503 and close, without touching the others.
  asio::awaitable<void> Busy(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    if (!tls) {
      auto res = ToBeast(
          ErrorResponse(MakeHttpError(503, "too many connections; try again shortly")), 11, false);
      res.set(http::field::retry_after, "1");
      stream.expires_after(std::chrono::seconds(2));
      co_await http::async_write(stream, res, kTuple);
    }
    error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  }

  asio::awaitable<void> Accept() {
    for (;;) {
      auto [ec, socket] = co_await acceptor.async_accept(asio::make_strand(ioc), kTuple);
      if (stopping) co_return;
      if (ec) continue;  // e.g. too many open files: keep serving the others
      auto executor = socket.get_executor();
      if (active.load() >= options.limits.max_connections) {
        asio::co_spawn(executor, Busy(std::move(socket)), asio::detached);
        continue;
      }
      ++active;
      auto session = tls ? Secure(std::move(socket)) : Plain(std::move(socket));
      asio::co_spawn(executor, std::move(session), [this](std::exception_ptr) { SessionEnded(); });
    }
  }
};

}  // namespace ccm::gateway::server
