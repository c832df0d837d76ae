// Browser sessions of the HTTP server (gateway/server/http_server.h, session_store.h) on real
// sockets on 127.0.0.1: POST /$login exchanges a token for an HttpOnly, SameSite=Strict cookie
// (Secure under TLS), the cookie authenticates GET routes, expires, is ended by POST /$logout, and
// a cookie-authenticated POST from another origin is refused.
#include "gateway/server/session_store.h"

#include <chrono>
#include <regex>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "fhir/client/http_client.h"
#include "fhir/json.h"
#include "gateway/server/http_server.h"
#include "gateway/server/server_config.h"
#include "test_certs.h"
#include "test_util.h"

namespace ccm::gateway::server {
namespace {

using fhir::json::Value;
using Headers = std::vector<std::pair<std::string, std::string>>;

constexpr std::string_view kSessionToken = "session-test-token";

std::shared_ptr<const TokenAuth> SessionTokens() {
  auto auth = TokenAuth::Make({{ToHex(HashToken(kSessionToken)), "night-nurse"}});
  EXPECT_TRUE(auth) << auth.error().message;
  return std::make_shared<const TokenAuth>(std::move(*auth));
}

struct Reply {
  long status = 0;
  std::string body;
  fhir::HttpResponse raw;
  std::string Header(std::string_view name) const {
    auto v = raw.Header(name);
    return v ? std::string(*v) : std::string();
  }
  // The ccm_session value a Set-Cookie header sets ("" when none).
  std::string Cookie() const {
    std::smatch m;
    std::string set = Header("set-cookie");
    if (!std::regex_search(set, m, std::regex("^ccm_session=([0-9a-f]*);"))) return "";
    return m[1];
  }
};

class SessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    router_.Add("GET", "/Patient/{id}/$echo", [](const Request& req) {
      Value v = Value::MakeObject();
      v.set("who", Value::String(req.principal));
      return JsonResponse(200, v, "application/json");
    });
    router_.Add("POST", "/$change", [](const Request& req) {
      Value v = Value::MakeObject();
      v.set("who", Value::String(req.principal));
      return JsonResponse(200, v, "application/json");
    });
  }
  void Start(std::chrono::seconds lifetime = std::chrono::seconds(8 * 3600),
             std::optional<TlsFiles> tls = std::nullopt) {
    HttpServerOptions o;
    o.tokens = SessionTokens();
    o.tls = std::move(tls);
    SessionStore::Options so;
    so.lifetime = lifetime;
    sessions_ = std::make_shared<SessionStore>(so);
    o.sessions = sessions_;
    auto s = HttpServer::Start(std::move(o), router_);
    ASSERT_TRUE(s) << s.error().message;
    server_ = std::move(*s);
  }
  Reply Send(const std::string& method, const std::string& path, Headers headers = {},
             std::string body = "") {
    fhir::HttpClient client(client_options_);
    fhir::HttpRequest r;
    r.method = method;
    r.url = fmt::format("{}://127.0.0.1:{}{}", scheme_, server_->port(), path);
    r.headers = std::move(headers);
    r.body = std::move(body);
    auto resp = client.Send(r);
    EXPECT_TRUE(resp) << resp.error().message;
    Reply out;
    if (!resp) return out;
    out.status = resp->status;
    out.body = resp->body;
    out.raw = std::move(*resp);
    return out;
  }
  // POST /$login as the page sends it: JSON, with X-Requested-With.
  Reply Login(std::string_view token) {
    return Send("POST", "/$login",
                {{"Content-Type", "application/json"}, {"X-Requested-With", "ccm-gateway"}},
                fmt::format(R"({{"token": "{}"}})", token));
  }
  std::string Origin() const { return fmt::format("{}://127.0.0.1:{}", scheme_, server_->port()); }
  static Headers WithCookie(const std::string& value, Headers more = {}) {
    more.emplace_back("Cookie", fmt::format("theme=dark; ccm_session={}; lang=en", value));
    return more;
  }
  static std::string OutcomeIssue(const Reply& r) {
    auto v = fhir::json::Parse(r.body);
    if (!v || (*v)["resourceType"].str() != "OperationOutcome") return "(not an OperationOutcome)";
    return std::string((*v)["issue"][0]["code"].str());
  }

  Router router_;
  std::shared_ptr<SessionStore> sessions_;
  std::unique_ptr<HttpServer> server_;
  fhir::HttpOptions client_options_;
  std::string scheme_ = "http";
};

TEST_F(SessionTest, LoginSetsAnHttpOnlyStrictCookieForTheTokensName) {
  Start();
  Reply r = Login(kSessionToken);
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string set = r.Header("set-cookie");
  SCOPED_TRACE(set);
  EXPECT_TRUE(std::regex_search(set, std::regex("^ccm_session=[0-9a-f]{64}; "))) << "256 bits, hex";
  EXPECT_NE(set.find("; HttpOnly"), std::string::npos);
  EXPECT_NE(set.find("; SameSite=Strict"), std::string::npos);
  EXPECT_NE(set.find("; Path=/"), std::string::npos);
  EXPECT_NE(set.find("; Max-Age=28800"), std::string::npos);
  EXPECT_EQ(set.find("Secure"), std::string::npos) << "plain HTTP: a Secure cookie would be lost";
  auto body = fhir::json::Parse(r.body);
  ASSERT_TRUE(body);
  EXPECT_EQ((*body)["principal"].str(), "night-nurse");
  EXPECT_EQ(set.find(kSessionToken), std::string::npos);
  EXPECT_EQ(r.body.find(kSessionToken), std::string::npos);

  // Two logins, two sessions: never the same value.
  Reply again = Login(kSessionToken);
  EXPECT_NE(again.Cookie(), r.Cookie());
  EXPECT_EQ(sessions_->size(), 2u);

  // A form post (what a plain HTML form sends) works the same.
  Reply form = Send("POST", "/$login",
                    {{"Content-Type", "application/x-www-form-urlencoded"}, {"Origin", Origin()}},
                    fmt::format("token={}", kSessionToken));
  EXPECT_EQ(form.status, 200) << form.body;
  EXPECT_EQ(form.Cookie().size(), 64u);
}

TEST_F(SessionTest, AWrongTokenIs401AndSetsNoCookie) {
  Start();
  Reply r = Login("not-the-token");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(OutcomeIssue(r), "security") << r.body;
  EXPECT_TRUE(r.Header("set-cookie").empty());
  EXPECT_NE(r.Header("www-authenticate").find("invalid_token"), std::string::npos);
  EXPECT_EQ(sessions_->size(), 0u);
  Reply empty = Login("");
  EXPECT_EQ(empty.status, 401);
  Reply none = Send("POST", "/$login",
                    {{"Content-Type", "application/json"}, {"X-Requested-With", "x"}}, "{}");
  EXPECT_EQ(none.status, 400);
  EXPECT_EQ(OutcomeIssue(none), "invalid");
  Reply get = Send("GET", "/$login");
  EXPECT_EQ(get.status, 405);
  EXPECT_EQ(get.Header("allow"), "POST");
}

TEST_F(SessionTest, TheCookieAuthenticatesGetRoutesAndTheBearerHeaderStillWorks) {
  Start();
  const std::string cookie = Login(kSessionToken).Cookie();
  ASSERT_EQ(cookie.size(), 64u);
  Reply r = Send("GET", "/Patient/p1/$echo", WithCookie(cookie));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ((*fhir::json::Parse(r.body))["who"].str(), "night-nurse");
  Reply bearer = Send("GET", "/Patient/p1/$echo",
                      {{"Authorization", fmt::format("Bearer {}", kSessionToken)}});
  EXPECT_EQ(bearer.status, 200);
  EXPECT_EQ(Send("GET", "/Patient/p1/$echo").status, 401);
  // Explicit credentials that fail are a failure, whatever cookie comes with them.
  Reply wrong = Send("GET", "/Patient/p1/$echo",
                     WithCookie(cookie, {{"Authorization", "Bearer not-the-token"}}));
  EXPECT_EQ(wrong.status, 401);

  Reply session = Send("GET", "/$session", WithCookie(cookie));
  ASSERT_EQ(session.status, 200);
  EXPECT_TRUE((*fhir::json::Parse(session.body))["authenticated"].as_bool());
  EXPECT_EQ((*fhir::json::Parse(session.body))["principal"].str(), "night-nurse");
  Reply anonymous = Send("GET", "/$session");
  ASSERT_EQ(anonymous.status, 200) << "signed out is not an error";
  EXPECT_FALSE((*fhir::json::Parse(anonymous.body))["authenticated"].as_bool());
}

TEST_F(SessionTest, AnUnknownCookieIs401AndIsCleared) {
  Start();
  // A well-formed value no login made; and the hash of a real one (what the store keeps).
  const std::string real = Login(kSessionToken).Cookie();
  for (const std::string& value :
       {std::string(64, 'a'), ToHex(HashToken(real)), std::string("x"), std::string()}) {
    Reply r = Send("GET", "/Patient/p1/$echo", WithCookie(value));
    EXPECT_EQ(r.status, 401) << value;
    EXPECT_EQ(OutcomeIssue(r), "security");
    EXPECT_NE(r.Header("set-cookie").find("ccm_session=; Path=/; Max-Age=0"), std::string::npos)
        << r.Header("set-cookie");
  }
}

TEST_F(SessionTest, ASessionExpiresAfterItsLifetime) {
  Start(std::chrono::seconds(1));
  Reply login = Login(kSessionToken);
  EXPECT_NE(login.Header("set-cookie").find("; Max-Age=1;"), std::string::npos)
      << login.Header("set-cookie");
  const std::string cookie = login.Cookie();
  const auto made = std::chrono::steady_clock::now();
  Reply before = Send("GET", "/Patient/p1/$echo", WithCookie(cookie));
  // Asked within the second the session lives (a slow machine may not manage it: then this
  // check says nothing, and the one after expiry still holds).
  if (std::chrono::steady_clock::now() - made < std::chrono::milliseconds(900)) {
    EXPECT_EQ(before.status, 200);
  }
  std::this_thread::sleep_until(made + std::chrono::milliseconds(1100));
  EXPECT_EQ(Send("GET", "/Patient/p1/$echo", WithCookie(cookie)).status, 401);
}

TEST_F(SessionTest, LogoutEndsTheSession) {
  Start();
  const std::string cookie = Login(kSessionToken).Cookie();
  ASSERT_EQ(Send("GET", "/Patient/p1/$echo", WithCookie(cookie)).status, 200);
  Reply out = Send("POST", "/$logout", WithCookie(cookie, {{"X-Requested-With", "ccm-gateway"}}));
  EXPECT_EQ(out.status, 204);
  EXPECT_NE(out.Header("set-cookie").find("ccm_session=; Path=/; Max-Age=0; HttpOnly"),
            std::string::npos)
      << out.Header("set-cookie");
  EXPECT_EQ(Send("GET", "/Patient/p1/$echo", WithCookie(cookie)).status, 401);
  EXPECT_EQ(sessions_->size(), 0u);
}

TEST_F(SessionTest, ACookiePostMustComeFromTheGatewaysOwnOrigin) {
  Start();
  const std::string cookie = Login(kSessionToken).Cookie();
  // What a cross-site form would send: the cookie (were SameSite ignored), no custom header.
  Reply bare = Send("POST", "/$change", WithCookie(cookie));
  EXPECT_EQ(bare.status, 403);
  EXPECT_EQ(OutcomeIssue(bare), "security");
  Reply evil = Send("POST", "/$change", WithCookie(cookie, {{"Origin", "http://evil.example"}}));
  EXPECT_EQ(evil.status, 403);
  // A page of another port of the same host is another origin.
  Reply other_port =
      Send("POST", "/$change", WithCookie(cookie, {{"Origin", "http://127.0.0.1:1"}}));
  EXPECT_EQ(other_port.status, 403);
  Reply null_origin = Send("POST", "/$change", WithCookie(cookie, {{"Origin", "null"}}));
  EXPECT_EQ(null_origin.status, 403) << "a sandboxed frame's Origin";
  Reply same = Send("POST", "/$change", WithCookie(cookie, {{"Origin", Origin()}}));
  EXPECT_EQ(same.status, 200) << same.body;
  // The page's script sends X-Requested-With, which a cross-origin page could only send after a
  // CORS preflight the gateway never grants (behind a TLS proxy the Origin is the proxy's).
  Reply header = Send("POST", "/$change", WithCookie(cookie, {{"X-Requested-With", "x"}}));
  EXPECT_EQ(header.status, 200) << header.body;
  Reply proxied = Send("POST", "/$change",
                       WithCookie(cookie, {{"Origin", "https://ccm.example.org"},
                                           {"X-Requested-With", "ccm-gateway"}}));
  EXPECT_EQ(proxied.status, 200) << proxied.body;
  // API clients with the bearer header are not browsers: no origin to check.
  Reply api =
      Send("POST", "/$change", {{"Authorization", fmt::format("Bearer {}", kSessionToken)}});
  EXPECT_EQ(api.status, 200);
  // Login and logout from another origin are refused too (login CSRF, forced sign-out).
  Reply login = Send("POST", "/$login",
                     {{"Content-Type", "application/json"}, {"Origin", "http://evil.example"}},
                     fmt::format(R"({{"token": "{}"}})", kSessionToken));
  EXPECT_EQ(login.status, 403);
  EXPECT_TRUE(login.Header("set-cookie").empty());
  EXPECT_EQ(Send("POST", "/$logout", WithCookie(cookie)).status, 403);
  EXPECT_EQ(Send("GET", "/Patient/p1/$echo", WithCookie(cookie)).status, 200)
      << "the refused logout ended nothing";
}

TEST_F(SessionTest, UnderTlsTheCookieIsSecure) {
  ccm::testing::TempDir dir;
  ccm::testing::MakeCertificates(dir);
  Start(std::chrono::seconds(600),
        TlsFiles{(dir / "server.pem").string(), (dir / "server.key").string(), ""});
  scheme_ = "https";
  client_options_.tls.ca_file = (dir / "ca.pem").string();
  Reply r = Login(kSessionToken);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.Header("set-cookie").find("; Secure"), std::string::npos) << r.Header("set-cookie");
  const std::string cookie = r.Cookie();
  EXPECT_EQ(Send("GET", "/Patient/p1/$echo", WithCookie(cookie)).status, 200);
  // The origin of a TLS server is https: the plain-http spelling of it is another origin.
  EXPECT_EQ(Send("POST", "/$change", WithCookie(cookie, {{"Origin", Origin()}})).status, 200);
  EXPECT_EQ(
      Send("POST", "/$change",
           WithCookie(cookie, {{"Origin", fmt::format("http://127.0.0.1:{}", server_->port())}}))
          .status,
      403);
}

TEST(SessionStoreTest, ExpiresBoundsAndKeepsOnlyHashes) {
  SessionStore::Options o;
  o.lifetime = std::chrono::seconds(60);
  o.max_sessions = 2;
  SessionStore store(o);
  const auto t0 = SessionStore::Clock::time_point{} + std::chrono::hours(1);
  auto a = store.Create("a", t0);
  ASSERT_TRUE(a);
  EXPECT_EQ(store.Find(*a, t0 + std::chrono::seconds(59)), "a");
  EXPECT_EQ(store.Find(*a, t0 + std::chrono::seconds(60)), std::nullopt) << "expired";
  auto b = store.Create("b", t0 + std::chrono::seconds(1));
  auto c = store.Create("c", t0 + std::chrono::seconds(2));
  ASSERT_TRUE(b && c);
  EXPECT_EQ(store.size(), 2u) << "bounded";
  EXPECT_EQ(store.Find(*a, t0), std::nullopt) << "the oldest went first";
  EXPECT_EQ(store.Find(*b, t0 + std::chrono::seconds(3)), "b");
  EXPECT_EQ(store.Find(*c, t0 + std::chrono::seconds(3)), "c");
  // Creating at a time when both have expired drops them, not a live one.
  auto d = store.Create("d", t0 + std::chrono::hours(1));
  ASSERT_TRUE(d);
  EXPECT_EQ(store.size(), 1u);
  store.Remove(*d);
  EXPECT_EQ(store.size(), 0u);
}

TEST(SessionStoreTest, SessionMinutesFromTheConfig) {
  auto parse = [](const std::string& text) {
    auto v = fhir::json::Parse(text);
    EXPECT_TRUE(v) << text;
    return ServerConfigFromJson(&*v, "c.json", "/");
  };
  auto none = parse("{}");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->session_lifetime, std::chrono::minutes(480)) << "a working day by default";
  auto thirty = parse(R"({"sessionMinutes": 30})");
  ASSERT_TRUE(thirty);
  EXPECT_EQ(thirty->session_lifetime, std::chrono::minutes(30));
  for (const char* bad :
       {R"({"sessionMinutes": 0})", R"({"sessionMinutes": 1441})", R"({"sessionMinutes": "8h"})"}) {
    auto r = parse(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().message.find("server.sessionMinutes"), std::string::npos)
        << r.error().message;
  }
}

TEST(SessionStoreTest, CookieValueReadsOneCookieOfTheHeader) {
  EXPECT_EQ(CookieValue("ccm_session=abc", "ccm_session"), "abc");
  EXPECT_EQ(CookieValue("a=1; ccm_session=abc; b=2", "ccm_session"), "abc");
  EXPECT_EQ(CookieValue("a=1;ccm_session=\"abc\"", "ccm_session"), "abc");
  EXPECT_EQ(CookieValue("xccm_session=abc; ccm_session_old=d", "ccm_session"), std::nullopt);
  EXPECT_EQ(CookieValue("", "ccm_session"), std::nullopt);
}

}  // namespace
}  // namespace ccm::gateway::server
