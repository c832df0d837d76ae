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
    Request req;
    req.method = access.method;
    req.path = std::move(target->path);
    req.query = std::move(target->query);
    req.params = std::move(match.params);
    req.body = raw.body();
    for (const auto& field : raw) {
      std::string name(field.name_string());
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      req.headers[name] = std::string(field.value());
    }
    if (match.route->needs_auth) {
      std::optional<std::string> who;
      if (!certificate.empty()) who = certificate;
      std::string_view authorization = req.Header("authorization");
      if (auto tokens = Tokens(); !who && tokens && !authorization.empty()) {
        who = tokens->Authenticate(authorization);
      }
      if (!who) {
        Response r = ErrorResponse(MakeHttpError(
            401, authorization.empty()
                     ? "this endpoint needs Authorization: Bearer <token>"
                     : "the bearer token is not one of the tokens this gateway accepts"));
        r.headers.emplace_back(
            "WWW-Authenticate",
            authorization.empty()
                ? std::string(R"(Bearer realm="ccm-gateway")")
                : std::string(R"(Bearer realm="ccm-gateway", error="invalid_token")"));
        return r;
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
    for (auto& [k, v] : r.headers) res.set(k, v);
    res.body() = std::move(r.body);
    res.keep_alive(keep_alive);
    res.prepare_payload();
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
