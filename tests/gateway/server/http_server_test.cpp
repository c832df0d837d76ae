// The service's HTTP machinery on real sockets on 127.0.0.1: routing, errors as
// OperationOutcomes, bearer tokens and client certificates, limits, concurrency, graceful stop.
#include "gateway/server/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "fhir/client/http_client.h"
#include "fhir/json.h"
#include "gateway/server/metrics.h"
#include "gateway/server/server_config.h"
#include "test_certs.h"
#include "test_util.h"

namespace ccm::gateway::server {
namespace {

using fhir::json::Value;

constexpr std::string_view kToken = "s3cret-token-for-tests";

std::shared_ptr<const TokenAuth> Tokens() {
  auto auth = TokenAuth::Make({{ToHex(HashToken(kToken)), "test-client"}});
  EXPECT_TRUE(auth) << auth.error().message;
  return std::make_shared<const TokenAuth>(std::move(*auth));
}

// Raw bytes to the server, and everything it answers until it closes (or `wait` passes).
std::string Raw(std::uint16_t port, std::string_view bytes,
                std::chrono::milliseconds wait = std::chrono::milliseconds(3000)) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return "(connect failed)";
  }
  if (!bytes.empty()) static_cast<void>(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL));
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char buf[4096];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    router_.Add(
        "GET", "/healthz",
        [](const Request&) {
          Response r;
          r.content_type = "text/plain";
          r.body = "ok";
          return r;
        },
        /*needs_auth=*/false);
    router_.Add("GET", "/Patient/{id}/$echo", [](const Request& req) {
      Value v = Value::MakeObject();
      v.set("id", Value::String(req.params.at("id")));
      v.set("month", Value::String(req.Query("month").value_or("")));
      v.set("who", Value::String(req.principal));
      return JsonResponse(200, v, "application/json");
    });
    router_.Add("POST", "/Patient/{id}/$echo", [](const Request& req) {
      Response r;
      r.body = req.body;
      return r;
    });
    router_.Add("GET", "/slow", [this](const Request&) {
      ++slow_started_;
      std::this_thread::sleep_for(std::chrono::milliseconds(400));
      Response r;
      r.body = "done";
      return r;
    });
    router_.Add("GET", "/boom",
                [](const Request&) -> Response { throw std::runtime_error("handler failed"); });
  }
  std::unique_ptr<HttpServer> Start(HttpServerOptions o = {}) {
    if (!o.tokens) o.tokens = Tokens();
    o.on_access = [this](const AccessRecord& a) {
      std::lock_guard lock(access_m_);
      access_.push_back(a);
    };
    auto s = HttpServer::Start(std::move(o), router_);
    EXPECT_TRUE(s) << s.error().message;
    return std::move(*s);
  }
  fhir::HttpResponse Get(std::uint16_t port, const std::string& path, bool token = true,
                         fhir::HttpOptions options = {}, const std::string& scheme = "http") {
    fhir::HttpClient client(std::move(options));
    fhir::HttpRequest r;
    r.url = fmt::format("{}://127.0.0.1:{}{}", scheme, port, path);
    if (token) r.headers.emplace_back("Authorization", fmt::format("Bearer {}", kToken));
    auto resp = client.Send(r);
    EXPECT_TRUE(resp) << resp.error().message;
    return resp ? std::move(*resp) : fhir::HttpResponse{};
  }
  static Value Outcome(const fhir::HttpResponse& r) {
    auto v = fhir::json::Parse(r.body);
    EXPECT_TRUE(v) << r.body;
    if (!v) return Value();
    EXPECT_EQ((*v)["resourceType"].str(), "OperationOutcome") << r.body;
    return std::move(*v);
  }

  Router router_;
  std::atomic<int> slow_started_{0};
  std::mutex access_m_;
  std::vector<AccessRecord> access_;
};

TEST_F(HttpServerTest, RoutesCapturesAndErrorsAsOperationOutcomes) {
  auto server = Start();
  auto ok = Get(server->port(), "/Patient/p%2D1/$echo?month=2026-10");
  EXPECT_EQ(ok.status, 200);
  auto body = fhir::json::Parse(ok.body);
  ASSERT_TRUE(body) << ok.body;
  EXPECT_EQ((*body)["id"].str(), "p-1") << "captures are percent-decoded";
  EXPECT_EQ((*body)["month"].str(), "2026-10");
  EXPECT_EQ((*body)["who"].str(), "test-client");
  EXPECT_EQ(ok.Header("cache-control").value_or(""), "no-store");

  auto missing = Get(server->port(), "/nothing/here");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(Outcome(missing)["issue"][0]["code"].str(), "not-found");
  fhir::HttpClient client;
  auto del = client.Send({"DELETE",
                          fmt::format("http://127.0.0.1:{}/Patient/x/$echo", server->port()),
                          {{"Authorization", fmt::format("Bearer {}", kToken)}},
                          ""});
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 405);
  EXPECT_EQ(del->Header("allow").value_or(""), "GET, POST");
  auto boom = Get(server->port(), "/boom");
  EXPECT_EQ(boom.status, 500);
  EXPECT_NE(Outcome(boom)["issue"][0]["diagnostics"].str().find("handler failed"),
            std::string::npos);
  auto bad = Raw(server->port(),
                 "GET /Patient/%zz/$echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(bad.starts_with("HTTP/1.1 400")) << bad;
  // Every request is in the access log under its route's pattern, never the raw path.
  std::lock_guard lock(access_m_);
  ASSERT_GE(access_.size(), 4u);
  EXPECT_EQ(access_[0].route, "/Patient/{id}/$echo");
  for (const auto& a : access_) EXPECT_EQ(a.route.find("p-1"), std::string::npos);
}

TEST_F(HttpServerTest, EveryRouteButTheOpenOnesNeedsAKnownBearerToken) {
  auto server = Start();
  EXPECT_EQ(Get(server->port(), "/healthz", /*token=*/false).status, 200);
  auto none = Get(server->port(), "/Patient/x/$echo", /*token=*/false);
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(none.Header("www-authenticate").value_or(""), R"(Bearer realm="ccm-gateway")");
  EXPECT_EQ(Outcome(none)["issue"][0]["code"].str(), "security");
  fhir::HttpClient client;
  for (const std::string& h : {std::string("Bearer wrong"), std::string("Basic dXNlcjpwYXNz"),
                               fmt::format("Bearer {}x", kToken), std::string("Bearer ")}) {
    auto r = client.Send({"GET",
                          fmt::format("http://127.0.0.1:{}/Patient/x/$echo", server->port()),
                          {{"Authorization", h}},
                          ""});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401) << h;
  }
  auto wrong = client.Send({"GET",
                            fmt::format("http://127.0.0.1:{}/Patient/x/$echo", server->port()),
                            {{"Authorization", "Bearer wrong"}},
                            ""});
  EXPECT_NE(wrong->Header("www-authenticate").value_or("").find(R"(error="invalid_token")"),
            std::string::npos);
  // The scheme is case-insensitive (RFC 7235 §2.1).
  auto lower = client.Send({"GET",
                            fmt::format("http://127.0.0.1:{}/Patient/x/$echo", server->port()),
                            {{"Authorization", fmt::format("bearer {}", kToken)}},
                            ""});
  EXPECT_EQ(lower->status, 200);
}

TEST(TokenAuthTest, ConfigHoldsHashesNeverTokens) {
  EXPECT_FALSE(TokenAuth::Make({{"not-hex", "a"}}));
  EXPECT_FALSE(TokenAuth::Make({{std::string(kToken), "a"}})) << "a token itself is refused";
  std::string h = ToHex(HashToken("x"));
  EXPECT_EQ(h, "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881");
  EXPECT_FALSE(TokenAuth::Make({{h, "a"}, {ToHex(HashToken("y")), "a"}})) << "names are unique";
  EXPECT_FALSE(TokenAuth::Make({{h, ""}}));
  auto auth = TokenAuth::Make({{h, "a"}, {ToHex(HashToken("y")), "b"}});
  ASSERT_TRUE(auth);
  EXPECT_EQ(auth->Authenticate("Bearer y"), std::optional<std::string>("b"));
  EXPECT_EQ(auth->Authenticate("Bearer x"), std::optional<std::string>("a"));
  EXPECT_FALSE(auth->Authenticate("Bearer z"));
  EXPECT_FALSE(auth->Authenticate("Bearerx"));
}

TEST_F(HttpServerTest, LimitsRefuseOversizedSlowAndMalformedRequests) {
  HttpServerOptions o;
  o.limits.header_bytes = 1024;
  o.limits.body_bytes = 64;
  o.limits.read_timeout = std::chrono::milliseconds(300);
  auto server = Start(std::move(o));
  std::string auth = fmt::format("Authorization: Bearer {}\r\n", kToken);
  auto big_header = Raw(
      server->port(),
      fmt::format("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", std::string(2000, 'a')));
  EXPECT_TRUE(big_header.starts_with("HTTP/1.1 431")) << big_header;
  auto big_body = Raw(server->port(), fmt::format("POST /Patient/x/$echo HTTP/1.1\r\nHost: x\r\n{}"
                                                  "Content-Length: 100\r\n\r\n{}",
                                                  auth, std::string(100, 'b')));
  EXPECT_TRUE(big_body.starts_with("HTTP/1.1 413")) << big_body;
  auto garbage = Raw(server->port(), "HELLO THERE\r\n\r\n");
  EXPECT_TRUE(garbage.starts_with("HTTP/1.1 400")) << garbage;
  EXPECT_NE(garbage.find("OperationOutcome"), std::string::npos);
  // Half a request, then nothing: 408 once the read timeout passes, and the connection closes.
  auto t0 = std::chrono::steady_clock::now();
  auto slow = Raw(server->port(), "GET /healthz HTTP/1.1\r\nHost: x\r\n");
  EXPECT_TRUE(slow.starts_with("HTTP/1.1 408")) << slow;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(2500));
  // None of that stopped the server from serving.
  EXPECT_EQ(Get(server->port(), "/healthz", false).status, 200);
}

TEST_F(HttpServerTest, ConnectionsBeyondTheLimitGet503AndTheOthersCarryOn) {
  HttpServerOptions o;
  o.limits.max_connections = 2;
  auto server = Start(std::move(o));
  // Two idle connections hold both places.
  std::vector<std::thread> holders;
  for (int i = 0; i < 2; ++i) {
    holders.emplace_back([&] { Raw(server->port(), "", std::chrono::milliseconds(800)); });
  }
  for (int i = 0; i < 100 && server->connections() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(server->connections(), 2u);
  auto busy = Raw(server->port(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_TRUE(busy.starts_with("HTTP/1.1 503")) << busy;
  EXPECT_NE(busy.find("Retry-After: 1"), std::string::npos);
  for (auto& t : holders) t.join();
  for (int i = 0; i < 100 && server->connections() > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(Get(server->port(), "/healthz", false).status, 200);
}

TEST_F(HttpServerTest, ManyConcurrentClientsGetTheirOwnAnswers) {
  HttpServerOptions o;
  o.io_threads = 2;
  o.worker_threads = 4;
  auto server = Start(std::move(o));
  std::atomic<int> wrong{0}, done{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < 8; ++c) {
    clients.emplace_back([&, c] {
      fhir::HttpClient client;  // one keep-alive connection per client
      for (int i = 0; i < 40; ++i) {
        std::string id = fmt::format("c{}-{}", c, i);
        auto r =
            client.Send({"GET",
                         fmt::format("http://127.0.0.1:{}/Patient/{}/$echo", server->port(), id),
                         {{"Authorization", fmt::format("Bearer {}", kToken)}},
                         ""});
        auto v = r ? fhir::json::Parse(r->body) : Result<Value>(Error(Errc::kInternal, ""));
        if (!r || r->status != 200 || !v || (*v)["id"].str() != id) ++wrong;
        ++done;
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(done.load(), 320);
  EXPECT_EQ(wrong.load(), 0);
}

TEST_F(HttpServerTest, StopFinishesWhatIsInFlightAndAcceptsNothingNew) {
  auto server = Start();
  std::uint16_t port = server->port();
  fhir::HttpResponse slow;
  std::thread t([&] { slow = Get(port, "/slow"); });
  for (int i = 0; i < 200 && slow_started_.load() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(slow_started_.load(), 1);
  server->Stop(std::chrono::seconds(5));
  t.join();
  EXPECT_EQ(slow.status, 200);
  EXPECT_EQ(slow.body, "done");
  EXPECT_EQ(slow.Header("connection").value_or(""), "close");
  EXPECT_EQ(Raw(port, "GET /healthz HTTP/1.1\r\n\r\n", std::chrono::milliseconds(300)),
            "(connect failed)");
}

TEST_F(HttpServerTest, TlsAndClientCertificates) {
  ccm::testing::TempDir dir;
  ccm::testing::MakeCertificates(dir);
  HttpServerOptions o;
  o.tls = TlsFiles{(dir / "server.pem").string(), (dir / "server.key").string(),
                   (dir / "ca.pem").string()};
  auto server = Start(std::move(o));
  fhir::HttpOptions with_cert;
  with_cert.tls.ca_file = (dir / "ca.pem").string();
  with_cert.tls.client_cert = (dir / "client.pem").string();
  with_cert.tls.client_key = (dir / "client.key").string();
  // The certificate stands in for a token.
  auto r = Get(server->port(), "/Patient/x/$echo", /*token=*/false, with_cert, "https");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ((*fhir::json::Parse(r.body))["who"].str(), "certificate:ccm-gateway");
  // Without one, or with one from another CA, the handshake fails: nothing is served.
  fhir::HttpOptions no_cert;
  no_cert.tls.ca_file = (dir / "ca.pem").string();
  fhir::HttpClient plain(no_cert);
  EXPECT_FALSE(
      plain.Send({"GET", fmt::format("https://127.0.0.1:{}/healthz", server->port()), {}, ""}));
  fhir::HttpOptions other = with_cert;
  other.tls.client_cert = (dir / "other-client.pem").string();
  other.tls.client_key = (dir / "other-client.key").string();
  fhir::HttpClient intruder(other);
  EXPECT_FALSE(
      intruder.Send({"GET", fmt::format("https://127.0.0.1:{}/healthz", server->port()), {}, ""}));
  // Plain HTTP to a TLS port is not answered either.
  EXPECT_EQ(Raw(server->port(), "GET /healthz HTTP/1.1\r\n\r\n", std::chrono::milliseconds(500))
                .find("HTTP/1.1 200"),
            std::string::npos);
}

TEST(MetricsTest, PrometheusTextFormat) {
  Metrics m;
  m.Declare("ccm_requests_total", "Requests by route and status.", Metrics::Kind::kCounter);
  m.Declare("ccm_request_seconds", "Request latency.", Metrics::Kind::kHistogram, {0.01, 0.1});
  m.Declare("ccm_up", "1 when serving.", Metrics::Kind::kGauge);
  m.Add("ccm_requests_total", {{"route", "/a \"b\""}, {"status", "200"}});
  m.Add("ccm_requests_total", {{"route", "/a \"b\""}, {"status", "200"}}, 2);
  m.Observe("ccm_request_seconds", {{"route", "/a"}}, 0.005);
  m.Observe("ccm_request_seconds", {{"route", "/a"}}, 0.05);
  m.Observe("ccm_request_seconds", {{"route", "/a"}}, 5);
  m.Set("ccm_up", {}, 1);
  EXPECT_EQ(m.Render(),
            "# HELP ccm_requests_total Requests by route and status.\n"
            "# TYPE ccm_requests_total counter\n"
            "ccm_requests_total{route=\"/a \\\"b\\\"\",status=\"200\"} 3\n"
            "# HELP ccm_request_seconds Request latency.\n"
            "# TYPE ccm_request_seconds histogram\n"
            "ccm_request_seconds_bucket{route=\"/a\",le=\"0.01\"} 1\n"
            "ccm_request_seconds_bucket{route=\"/a\",le=\"0.1\"} 2\n"
            "ccm_request_seconds_bucket{route=\"/a\",le=\"+Inf\"} 3\n"
            "ccm_request_seconds_sum{route=\"/a\"} 5.055\n"
            "ccm_request_seconds_count{route=\"/a\"} 3\n"
            "# HELP ccm_up 1 when serving.\n"
            "# TYPE ccm_up gauge\n"
            "ccm_up 1\n");
}

TEST(RouterTest, TargetsAreDecodedStrictly) {
  auto t = ParseTarget("/Patient/a%20b/$ccm-status?month=2026-10&x=a+b&flag");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->path, "/Patient/a b/$ccm-status");
  ASSERT_EQ(t->query.size(), 3u);
  EXPECT_EQ(t->query[1].second, "a b");
  EXPECT_EQ(t->query[2].first, "flag");
  EXPECT_FALSE(ParseTarget("http://elsewhere/x")) << "absolute-form is not served";
  EXPECT_FALSE(ParseTarget("/a%2Fb")) << "an encoded slash would change the route";
  EXPECT_FALSE(ParseTarget("/a%zz"));
  EXPECT_FALSE(ParseTarget("/a%2"));
  Router r;
  r.Add("GET", "/Patient/{id}/$ccm-status", [](const Request&) { return Response{}; });
  EXPECT_TRUE(r.Find("GET", "/Patient/1/$ccm-status").route);
  EXPECT_FALSE(r.Find("GET", "/Patient//$ccm-status").route) << "a capture is never empty";
  EXPECT_EQ(r.Find("GET", "/Patient/1/$ccm-status/x").error->status, 404u);
  EXPECT_EQ(r.Find("PUT", "/Patient/1/$ccm-status").error->status, 405u);
}

}  // namespace
}  // namespace ccm::gateway::server

namespace ccm::gateway::server {
namespace {

TEST(ServerConfigTest, DefaultsAreSafeAndTokensNeverInline) {
  auto none = ServerConfigFromJson(nullptr, "c.json", "/");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->address, "127.0.0.1") << "loopback unless told otherwise";
  EXPECT_FALSE(none->tls);
  ccm::testing::TempDir dir;
  auto parse = [&](const std::string& text) {
    auto v = fhir::json::Parse(text);
    EXPECT_TRUE(v) << text;
    return ServerConfigFromJson(&*v, "c.json", dir.path());
  };
  auto inline_token = parse(R"({"tokens": [{"token": "abc", "name": "x"}]})");
  ASSERT_FALSE(inline_token);
  EXPECT_NE(inline_token.error().message.find("server.tokens[0].token: tokens are never written"),
            std::string::npos)
      << inline_token.error().message;
  EXPECT_FALSE(parse(R"({"token": "abc"})"));
  EXPECT_FALSE(parse(R"({"limits": {"bodyBytes": -1}})"));
  EXPECT_FALSE(parse(R"({"tls": {"certFile": "missing.pem", "keyFile": "k"}})"));
  auto unknown = parse(R"({"prot": 1})");
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("server.prot: unknown key"), std::string::npos);

  std::string a = ToHex(HashToken("token-a")), b = ToHex(HashToken("token-b"));
  ccm::testing::WriteFile(
      dir / "tokens.json",
      fmt::format(R"({{"tokens": [{{"sha256": "{}", "name": "file-client"}}]}})", b));
  auto both = parse(fmt::format(R"({{"port": 0, "tokens": [{{"sha256": "{}", "name": "inline"}}],
      "tokensFile": "tokens.json", "limits": {{"maxConnections": 10, "readTimeoutMs": 500}}}})",
                                a));
  ASSERT_TRUE(both) << both.error().message;
  EXPECT_EQ(both->limits.max_connections, 10u);
  EXPECT_EQ(both->limits.read_timeout, std::chrono::milliseconds(500));
  auto tokens = LoadTokens(*both);
  ASSERT_TRUE(tokens) << tokens.error().message;
  EXPECT_EQ((*tokens)->Authenticate("Bearer token-a"), std::optional<std::string>("inline"));
  EXPECT_EQ((*tokens)->Authenticate("Bearer token-b"), std::optional<std::string>("file-client"));
  // The file changes (a token rotated): loading again sees the new list.
  ccm::testing::WriteFile(dir / "tokens.json", R"({"tokens": []})");
  auto rotated = LoadTokens(*both);
  ASSERT_TRUE(rotated);
  EXPECT_FALSE((*rotated)->Authenticate("Bearer token-b"));
}

}  // namespace
}  // namespace ccm::gateway::server
