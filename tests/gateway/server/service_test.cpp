// The gateway's HTTP API (gateway/server/service.h, docs/api.md) on real sockets on 127.0.0.1,
// over a state store filled by a sync from the loopback FHIR server (tests/server/): every route
// and its errors, authentication, $ccm-status against `evaluate`, the billing summary against
// `bill --dry-run`, POST /$sync and its status; and the built binary's `serve` stopped by SIGTERM
// during a sync, then resuming.
#include "gateway/server/service.h"

#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>

#include <chrono>
#include <cmath>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "fhir/client/http_client.h"
#include "fhir/datetime.h"
#include "fhir/json.h"
#include "gateway/app/workflow.h"
#include "gateway/server/access_audit.h"
#include "gateway/server/http_server.h"
#include "gateway/server/token_auth.h"
#include "gateway/store/sqlite_state_store.h"
#include "gateway/store/state_store.h"
#include "store/state_store_conformance.h"
#include "sync/sync_support.h"
#include "test_server.h"
#include "test_util.h"

namespace ccm::gateway::server {
namespace {

using ccm::testing::GatewayRun;
using ccm::testing::ReadFile;
using ccm::testing::TempDir;
using ccm::testing::TestFhirServer;
using ccm::testing::WriteFile;
using fhir::json::Value;
namespace st = ccm::gateway::sync_testing;

constexpr std::string_view kServiceToken = "service-test-token";
constexpr auto kPatience = std::chrono::seconds(60);

std::shared_ptr<const TokenAuth> ServiceTokens() {
  auto auth = TokenAuth::Make({{ToHex(HashToken(kServiceToken)), "care-team"}});
  EXPECT_TRUE(auth) << auth.error().message;
  return std::make_shared<const TokenAuth>(std::move(*auth));
}

struct Answer {
  long status = 0;
  std::string body, content_type, content_location, www_authenticate, age;
};

Answer Call(std::uint16_t port, const std::string& method, const std::string& path,
            std::optional<std::string> token = std::string(kServiceToken),
            const std::string& accept = "") {
  fhir::HttpClient client{fhir::HttpOptions{}};
  fhir::HttpRequest r;
  r.method = method;
  r.url = fmt::format("http://127.0.0.1:{}{}", port, path);
  if (token) r.headers.emplace_back("Authorization", fmt::format("Bearer {}", *token));
  if (!accept.empty()) r.headers.emplace_back("Accept", accept);
  auto resp = client.Send(r);
  EXPECT_TRUE(resp) << resp.error().message;
  Answer a;
  if (!resp) return a;
  a.status = resp->status;
  a.body = resp->body;
  for (const auto& [k, v] : resp->headers) {
    std::string name = k;
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (name == "content-type") a.content_type = v;
    if (name == "content-location") a.content_location = v;
    if (name == "www-authenticate") a.www_authenticate = v;
    if (name == "age") a.age = v;
  }
  return a;
}

// A request with any headers (no token unless given), the whole response.
fhir::HttpResponse Fetch(std::uint16_t port, const std::string& method, const std::string& path,
                         std::vector<std::pair<std::string, std::string>> headers = {},
                         std::string body = "") {
  fhir::HttpClient client{fhir::HttpOptions{}};
  fhir::HttpRequest r;
  r.method = method;
  r.url = fmt::format("http://127.0.0.1:{}{}", port, path);
  r.headers = std::move(headers);
  r.body = std::move(body);
  auto resp = client.Send(r);
  EXPECT_TRUE(resp) << resp.error().message;
  return resp ? std::move(*resp) : fhir::HttpResponse{};
}
std::string HeaderOf(const fhir::HttpResponse& r, std::string_view name) {
  auto v = r.Header(name);
  return v ? std::string(*v) : std::string();
}
// Signs in as the page does; the session cookie's value ("" when refused).
std::string SignIn(std::uint16_t port, std::string_view token = kServiceToken) {
  auto r = Fetch(port, "POST", "/$login",
                 {{"Content-Type", "application/json"}, {"X-Requested-With", "ccm-gateway"}},
                 fmt::format(R"({{"token": "{}"}})", token));
  std::string set = HeaderOf(r, "set-cookie");
  if (r.status != 200 || !set.starts_with("ccm_session=")) return "";
  return set.substr(12, set.find(';') - 12);
}

// The single issue of an OperationOutcome body ("" when the body is none).
std::string OutcomeText(const Answer& a) {
  auto v = fhir::json::Parse(a.body);
  if (!v || (*v)["resourceType"].str() != "OperationOutcome") return "";
  return std::string((*v)["issue"][0]["diagnostics"].str()) +
         std::string((*v)["issue"][0]["details"]["text"].str());
}

// Polls a sync's status resource until it is no longer running.
std::string SyncLocation(std::int64_t id) { return fmt::format("/$sync-status/{}", id); }

Value AwaitSync(std::uint16_t port, const std::string& location) {
  auto deadline = std::chrono::steady_clock::now() + kPatience;
  for (;;) {
    Answer a = Call(port, "GET", location);
    EXPECT_EQ(a.status, 200) << a.body;
    auto v = fhir::json::Parse(a.body);
    if (!v) return Value();
    if ((*v)["state"].str() != "running" || std::chrono::steady_clock::now() > deadline) {
      return std::move(*v);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// Lifts every fault still queued (POST /__admin/faults only adds to the queue).
void ClearFaults(TestFhirServer& ehr) { ehr.Send("DELETE", "/__admin/faults"); }

// One FHIR server, state store and service for the tests of this executable's process.
class ServiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ehr_ = new TestFhirServer(ccm::testing::SampleInputs());
    dir_ = new TempDir();
    config_path_ = st::WriteConfig(*dir_, *ehr_);
    auto config = LoadGatewayConfig(config_path_);
    ASSERT_TRUE(config) << config.error().message;
    ServiceOptions options;
    options.version = "test";
    options.access_log = false;
    options.log = [](std::string_view, std::string_view, std::string_view) {};
    service_ = new GatewayService(std::move(*config), options);
    HttpServerOptions ho;
    ho.tokens = ServiceTokens();
    ho.worker_threads = 4;
    ho.sessions = std::make_shared<SessionStore>(SessionStore::Options{});
    ho.on_access = [](const AccessRecord& a) { service_->OnAccess(a); };
    auto http = HttpServer::Start(std::move(ho), service_->router());
    ASSERT_TRUE(http) << http.error().message;
    http_ = http->release();
    // The store filled through the API itself.
    Answer posted = Call(http_->port(), "POST", "/$sync");
    ASSERT_EQ(posted.status, 202) << posted.body;
    Value done = AwaitSync(http_->port(), posted.content_location);
    ASSERT_EQ(done["state"].str(), "succeeded") << fhir::json::Serialize(done);
  }
  static void TearDownTestSuite() {
    if (http_ != nullptr) http_->Stop(std::chrono::seconds(5));
    delete http_;
    delete service_;
    delete dir_;
    delete ehr_;
  }
  static std::uint16_t port() { return http_->port(); }

  static TestFhirServer* ehr_;
  static TempDir* dir_;
  static std::filesystem::path config_path_;
  static GatewayService* service_;
  static HttpServer* http_;
};
TestFhirServer* ServiceTest::ehr_ = nullptr;
TempDir* ServiceTest::dir_ = nullptr;
std::filesystem::path ServiceTest::config_path_;
GatewayService* ServiceTest::service_ = nullptr;
HttpServer* ServiceTest::http_ = nullptr;

TEST_F(ServiceTest, HealthReadinessAndMetadataNeedNoToken) {
  Answer health = Call(port(), "GET", "/healthz", std::nullopt);
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, R"({"status":"ok"})");
  Answer ready = Call(port(), "GET", "/readyz", std::nullopt);
  EXPECT_EQ(ready.status, 200) << ready.body;
  Answer meta = Call(port(), "GET", "/metadata", std::nullopt);
  ASSERT_EQ(meta.status, 200);
  auto cs = fhir::json::Parse(meta.body);
  ASSERT_TRUE(cs);
  EXPECT_EQ((*cs)["resourceType"].str(), "CapabilityStatement");
  EXPECT_NE(meta.body.find("ccm-status"), std::string::npos);
  EXPECT_NE(meta.body.find("ccm-billing-summary"), std::string::npos);
}

TEST_F(ServiceTest, EveryOtherRouteNeedsAValidToken) {
  for (const auto& [method, path] : std::vector<std::pair<std::string, std::string>>{
           {"GET", "/metrics"},
           {"GET", "/Patient/x/$ccm-status?month=2026-10"},
           {"GET", "/$ccm-billing-summary?month=2026-10"},
           {"GET", "/$ccm-worklist?month=2026-10"},
           {"GET", "/$ccm-program?month=2026-10"},
           {"POST", "/$sync"},
           {"GET", "/$sync-status/1"}}) {
    Answer none = Call(port(), method, path, std::nullopt);
    EXPECT_EQ(none.status, 401) << path;
    EXPECT_NE(none.www_authenticate.find("Bearer"), std::string::npos) << path;
    EXPECT_FALSE(OutcomeText(none).empty()) << none.body;
    Answer wrong = Call(port(), method, path, std::string("not-the-token"));
    EXPECT_EQ(wrong.status, 401) << path;
    EXPECT_NE(wrong.www_authenticate.find("invalid_token"), std::string::npos) << path;
  }
  EXPECT_FALSE(service_->SyncRunning()) << "a refused POST /$sync started nothing";
}

TEST_F(ServiceTest, StatusIsTheEvaluateRecordOfEverySamplePatient) {
  // `evaluate` over the resources the FHIR server holds (what the store was synced from).
  std::string report = st::EvaluateServer(*ehr_);
  std::size_t start = 0, patients = 0;
  while (start < report.size()) {
    std::size_t end = report.find('\n', start);
    std::string line = report.substr(start, end - start);
    start = end + 1;
    auto record = fhir::json::Parse(line);
    ASSERT_TRUE(record) << line;
    std::string patient(std::string((*record)["patient"].str()).substr(8));  // "Patient/"
    Answer a = Call(port(), "GET", fmt::format("/Patient/{}/$ccm-status?month=2026-10", patient));
    ASSERT_EQ(a.status, 200) << a.body;
    EXPECT_EQ(a.content_type, "application/json");
    EXPECT_EQ(a.body, line) << patient;
    ++patients;
  }
  EXPECT_GE(patients, 12u) << "every sample patient";
}

TEST_F(ServiceTest, StatusErrors) {
  Answer unknown = Call(port(), "GET", "/Patient/no-such-patient/$ccm-status?month=2026-10");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_NE(OutcomeText(unknown).find("no such patient"), std::string::npos) << unknown.body;
  EXPECT_EQ(unknown.body.find("no-such-patient"), std::string::npos) << "the id is not echoed";
  for (const char* month : {"2026-13", "October", "2026-1"}) {
    Answer bad = Call(port(), "GET", fmt::format("/Patient/x/$ccm-status?month={}", month));
    EXPECT_EQ(bad.status, 400) << month;
    EXPECT_FALSE(OutcomeText(bad).empty()) << bad.body;
  }
  Answer wrong_method = Call(port(), "POST", "/Patient/x/$ccm-status");
  EXPECT_EQ(wrong_method.status, 405);
  Answer nothing = Call(port(), "GET", "/nothing-here");
  EXPECT_EQ(nothing.status, 404);
  EXPECT_FALSE(OutcomeText(nothing).empty());
}

// The worklist of the sample practice against `evaluate`'s records: each item's reason is what
// the patient's record says, the near-threshold figures add up from the record's own minutes,
// every consent-less eligible patient is listed, and the items come most valuable first.
TEST_F(ServiceTest, WorklistAgreesWithEvaluate) {
  std::map<std::string, Value> records;
  std::string report = st::EvaluateServer(*ehr_);
  for (std::size_t start = 0; start < report.size();) {
    std::size_t end = report.find('\n', start);
    auto record = fhir::json::Parse(report.substr(start, end - start));
    ASSERT_TRUE(record);
    records[std::string((*record)["patient"].str())] = std::move(*record);
    start = end + 1;
  }
  ASSERT_GE(records.size(), 12u);

  Answer a = Call(port(), "GET", "/$ccm-worklist?month=2026-10");
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(a.content_type, "application/json");
  auto v = fhir::json::Parse(a.body);
  ASSERT_TRUE(v);
  const Value& w = *v;
  EXPECT_EQ(w["month"].str(), "2026-10");
  EXPECT_FALSE(std::string(w["asOf"].str()).empty());
  const bool open = w["open"].as_bool();
  EXPECT_EQ(open, st::Num(w, "daysLeft") > 0);
  const auto& items = w["items"].array();
  ASSERT_FALSE(items.empty());

  auto cents = [](const Value& amount) {
    auto c = ParseCents(amount.number_text());
    EXPECT_TRUE(c) << amount.number_text();
    return c ? *c : Cents{0};
  };
  std::set<std::string> no_consent_listed;  // eligible-no-consent or blocked
  Cents previous = INT64_MAX;
  std::map<std::string, int> reasons;
  for (const Value& item : items) {
    SCOPED_TRACE(fhir::json::Serialize(item));
    const std::string patient(item["patient"].str());
    ASSERT_TRUE(records.contains(patient));
    const Value& r = records[patient];
    const std::string reason(item["reason"].str());
    ++reasons[reason];
    EXPECT_FALSE(std::string(item["summary"].str()).empty());
    const Cents value = cents(item["value"]);
    EXPECT_LE(value, previous) << "most valuable first";
    previous = value;
    const bool deceased = r["deceased"].as_bool();
    if (reason == "blocked") {
      no_consent_listed.insert(patient);  // blocked instead: nothing else is listed for it
      continue;
    }
    EXPECT_FALSE(deceased);
    EXPECT_FALSE(r["program"].is_null()) << "only eligible patients have work";
    if (reason == "eligible-no-consent") {
      EXPECT_NE(r["consent"].str(), "active");
      no_consent_listed.insert(patient);
    } else if (reason == "consented-no-active-care-plan") {
      EXPECT_EQ(r["consent"].str(), "active");
      EXPECT_NE(r["carePlan"].str(), "active");
    } else if (reason == "near-threshold") {
      EXPECT_EQ(r["consent"].str(), "active");
      const std::int64_t logged = st::Num(item, "secondsLogged");
      const std::int64_t to_next = st::Num(item, "secondsToNext");
      EXPECT_GT(to_next, 0);
      EXPECT_EQ(logged + to_next, st::Num(item, "thresholdMinutes") * 60);
      EXPECT_EQ(st::Num(item, "minutesToNext"), (to_next + 59) / 60);
      // The record's whole minutes are the exact seconds floored (rule 6): the pool the code
      // draws on is the practitioner's own or both.
      const Value& m = r["billableMinutes"];
      const std::int64_t pool = item["practitionerTime"].as_bool()
                                    ? st::Num(m, "practitioner")
                                    : st::Num(m, "clinicalStaff") + st::Num(m, "practitioner");
      EXPECT_LE(logged / 60 - 1, pool);  // the pools are floored apart, the sum once
      EXPECT_GE(logged / 60, pool);
      EXPECT_EQ(item["missed"].as_bool(), !open);
      EXPECT_EQ(item.find("minutesPerDayNeeded") != nullptr, open);
      EXPECT_EQ(cents(item["valueOfNext"]), value);
      EXPECT_FALSE(item["evidence"].array().empty()) << "the encounters that counted";
    }
  }
  for (const auto& [patient, r] : records) {
    if (!r["program"].is_null() && r["consent"].str() != "active" && !r["deceased"].as_bool()) {
      bool blocked = false;
      for (const Value& b : r["blockedBy"].array()) {
        blocked = blocked || b.str() == "merged" || b.str() == "inactive-record";
      }
      if (!blocked) {
        EXPECT_TRUE(no_consent_listed.contains(patient)) << patient;
      }
    }
  }
  EXPECT_GE(reasons["near-threshold"] + reasons["eligible-no-consent"], 1) << a.body;

  Answer bad = Call(port(), "GET", "/$ccm-worklist?month=2026-13");
  EXPECT_EQ(bad.status, 400);
  EXPECT_FALSE(OutcomeText(bad).empty()) << bad.body;
  Answer current = Call(port(), "GET", "/$ccm-worklist");
  EXPECT_EQ(current.status, 200) << "the current month when none is asked for";
}

// The program picture of the sample practice: the funnel counted from `evaluate`'s records, the
// revenue billed their expected payments, the revenue at stake the worklist's near-threshold
// values, and the projection the published defaults applied to the population.
TEST_F(ServiceTest, ProgramPictureAgreesWithEvaluateAndTheWorklist) {
  std::size_t population = 0, eligible = 0, consented = 0, billable = 0;
  Cents billed = 0;
  std::string report = st::EvaluateServer(*ehr_);
  for (std::size_t start = 0; start < report.size();) {
    std::size_t end = report.find('\n', start);
    auto r = fhir::json::Parse(report.substr(start, end - start));
    ASSERT_TRUE(r);
    start = end + 1;
    ++population;
    const bool is_eligible = !(*r)["program"].is_null() && !(*r)["deceased"].as_bool();
    if (is_eligible) ++eligible;
    if (is_eligible && (*r)["consent"].str() == "active") ++consented;
    if (!(*r)["billing"].array().empty()) ++billable;
    billed += *ParseCents((*r)["expectedPayment"].number_text());
  }
  Answer a = Call(port(), "GET", "/$ccm-program?month=2026-10");
  ASSERT_EQ(a.status, 200) << a.body;
  auto v = fhir::json::Parse(a.body);
  ASSERT_TRUE(v);
  const Value& p = *v;
  SCOPED_TRACE(a.body);
  EXPECT_EQ(p["month"].str(), "2026-10");
  const auto& funnel = p["funnel"].array();
  ASSERT_EQ(funnel.size(), 4u);
  EXPECT_EQ(st::Num(funnel[0], "count"), static_cast<long>(population));
  EXPECT_EQ(st::Num(funnel[1], "count"), static_cast<long>(eligible));
  EXPECT_EQ(st::Num(funnel[2], "count"), static_cast<long>(consented));
  EXPECT_EQ(st::Num(funnel[3], "count"), static_cast<long>(billable));
  EXPECT_EQ(*ParseCents(p["revenue"]["billed"].number_text()), billed);

  Answer w = Call(port(), "GET", "/$ccm-worklist?month=2026-10");
  ASSERT_EQ(w.status, 200);
  auto wv = fhir::json::Parse(w.body);
  ASSERT_TRUE(wv);
  Cents at_stake = 0;
  for (const Value& item : (*wv)["items"].array()) {
    if (item["reason"].str() == "near-threshold" && !item["valueOfNext"].is_null()) {
      at_stake += *ParseCents(item["valueOfNext"].number_text());
    }
  }
  EXPECT_EQ(*ParseCents(p["revenue"]["atStake"].number_text()), at_stake);
  // population x 0.68 x 0.40 x 46.67, rounded down to the cent.
  const Value& assumed = p["projection"]["assumed"];
  EXPECT_EQ(assumed["qualifyShare"].number_text(), "0.6800");
  EXPECT_EQ(assumed["enrolShare"].number_text(), "0.4000");
  EXPECT_EQ(assumed["netPerPatientMonth"].number_text(), "46.67");
  EXPECT_EQ(*ParseCents(assumed["projectedMonthly"].number_text()),
            static_cast<Cents>(population) * 68 * 40 * 4667 / 10000);
  EXPECT_FALSE(p["projection"]["observed"]["enrolShare"].number_text().empty());

  Answer bad = Call(port(), "GET", "/$ccm-program?month=10-2026");
  EXPECT_EQ(bad.status, 400);
  EXPECT_FALSE(OutcomeText(bad).empty());
}

TEST_F(ServiceTest, EvaluationsAreCachedPerMonth) {
  auto evaluations = [] {
    Answer m = Call(port(), "GET", "/metrics");
    std::smatch match;
    std::regex re(R"(ccm_evaluations_total\{month="2026-09"\} (\d+))");
    return std::regex_search(m.body, match, re) ? std::stoi(match[1]) : 0;
  };
  int before = evaluations();
  for (int i = 0; i < 5; ++i) {
    Call(port(), "GET", "/Patient/x/$ccm-status?month=2026-09");
  }
  EXPECT_EQ(evaluations(), before + 1) << "five calls, one evaluation";
}

TEST_F(ServiceTest, BillingSummaryHasTheFiguresOfBillDryRun) {
  GatewayRun bill =
      st::Gateway(fmt::format("bill --dry-run --month 2026-10 --config {}", config_path_.string()));
  ASSERT_EQ(bill.status, 0) << bill.err << bill.out;
  std::smatch m;
  std::regex re(R"((\d+) billable patient-month\(s\), ([0-9.]+) (\w+) expected)");
  ASSERT_TRUE(std::regex_search(bill.out, m, re)) << bill.out;

  Answer json = Call(port(), "GET", "/$ccm-billing-summary?month=2026-10");
  ASSERT_EQ(json.status, 200) << json.body;
  auto v = fhir::json::Parse(json.body);
  ASSERT_TRUE(v);
  EXPECT_EQ((*v)["billable"].number_text(), m[1].str());
  EXPECT_EQ((*v)["expectedPayment"].number_text(), m[2].str());
  EXPECT_EQ((*v)["currency"].str(), m[3].str());
  EXPECT_EQ((*v)["changes"].array().size(), static_cast<std::size_t>(std::stoi(m[1])))
      << "an empty ledger: one new entry per billable patient-month";

  Answer csv = Call(port(), "GET", "/$ccm-billing-summary?month=2026-10",
                    std::string(kServiceToken), "text/csv");
  ASSERT_EQ(csv.status, 200);
  EXPECT_TRUE(csv.content_type.starts_with("text/csv")) << csv.content_type;
  EXPECT_TRUE(csv.body.starts_with("action,patient,month,kind,program,codes,amount\r\n"));
  EXPECT_EQ(static_cast<long>(std::count(csv.body.begin(), csv.body.end(), '\n')),
            std::stol(m[1]) + 1);

  Answer missing = Call(port(), "GET", "/$ccm-billing-summary");
  EXPECT_EQ(missing.status, 400);
  Answer open = Call(port(), "GET", "/$ccm-billing-summary?month=2099-01");
  EXPECT_EQ(open.status, 400) << "a month that has not ended, as bill refuses it";
  EXPECT_FALSE(OutcomeText(open).empty()) << open.body;
}

// The FHIR form: a collection Bundle of a Parameters resource with the JSON form's figures and,
// per ledger line the JSON form lists, the ChargeItem bill would write.
TEST_F(ServiceTest, BillingSummaryBundleHasTheFiguresOfTheJson) {
  Answer json = Call(port(), "GET", "/$ccm-billing-summary?month=2026-10");
  ASSERT_EQ(json.status, 200) << json.body;
  auto v = fhir::json::Parse(json.body);
  ASSERT_TRUE(v);
  Answer fhir_answer = Call(port(), "GET", "/$ccm-billing-summary?month=2026-10",
                            std::string(kServiceToken), "application/fhir+json");
  ASSERT_EQ(fhir_answer.status, 200) << fhir_answer.body;
  EXPECT_EQ(fhir_answer.content_type, "application/fhir+json");
  auto b = fhir::json::Parse(fhir_answer.body);
  ASSERT_TRUE(b);
  const Value& bundle = *b;
  EXPECT_EQ(bundle["resourceType"].str(), "Bundle");
  EXPECT_EQ(bundle["type"].str(), "collection");
  const auto& entries = bundle["entry"].array();
  ASSERT_GE(entries.size(), 1u);
  const Value& params = entries[0]["resource"];
  ASSERT_EQ(params["resourceType"].str(), "Parameters");
  auto param = [&](std::string_view name) -> const Value& {
    for (const Value& p : params["parameter"].array()) {
      if (p["name"].str() == name) return p;
    }
    ADD_FAILURE() << "no parameter " << name;
    return params["nothing"];
  };
  EXPECT_EQ(param("month")["valueString"].str(), "2026-10");
  EXPECT_EQ(param("billable")["valueUnsignedInt"].number_text(), (*v)["billable"].number_text());
  EXPECT_EQ(param("expectedPayment")["valueMoney"]["value"].number_text(),
            (*v)["expectedPayment"].number_text());
  EXPECT_EQ(param("expectedPayment")["valueMoney"]["currency"].str(), (*v)["currency"].str());
  for (const Value& part : param("ledger")["part"].array()) {
    EXPECT_EQ(part["valueUnsignedInt"].number_text(),
              (*v)["ledger"][part["name"].str()].number_text())
        << part["name"].str();
  }
  // Every line of every change in the JSON is one billable ChargeItem (an empty ledger: all new),
  // and their expected payments add up to the JSON's.
  std::multiset<std::string> want, got;
  for (const Value& c : (*v)["changes"].array()) {
    ASSERT_EQ(c["action"].str(), "new");
    for (const Value& l : c["lines"].array()) {
      want.insert(fmt::format("{} {} {} {}", c["patient"].str(), l["code"].str(),
                              l["units"].number_text(), c["month"].str()));
    }
  }
  long cents = 0;
  for (std::size_t i = 1; i < entries.size(); ++i) {
    const Value& ci = entries[i]["resource"];
    ASSERT_EQ(ci["resourceType"].str(), "ChargeItem");
    EXPECT_EQ(ci["status"].str(), "billable");
    got.insert(fmt::format("{} {} {} {}", ci["subject"]["reference"].str(),
                           ci["code"]["coding"][0]["code"].str(),
                           ci["quantity"]["value"].number_text(),
                           std::string(ci["occurrencePeriod"]["start"].str()).substr(0, 7)));
    std::string amount(ci["extension"][0]["valueMoney"]["value"].number_text());
    cents += std::lround(std::stod(amount) * 100);
  }
  EXPECT_EQ(got, want);
  EXPECT_FALSE(want.empty());
  EXPECT_EQ(cents,
            std::lround(std::stod(std::string((*v)["expectedPayment"].number_text())) * 100));
}

TEST_F(ServiceTest, SyncRunsInTheBackgroundOneAtATime) {
  // Slow pages, so that the sync is still running when the second request comes.
  ehr_->Faults(R"([{"match": "GET /fhir/R4/Encounter?", "kind": "delay", "delayMs": 200,
                    "times": 1000}])");
  Answer first = Call(port(), "POST", "/$sync");
  ASSERT_EQ(first.status, 202) << first.body;
  ASSERT_TRUE(first.content_location.starts_with("/$sync-status/")) << first.content_location;
  Answer second = Call(port(), "POST", "/$sync");
  EXPECT_EQ(second.status, 409) << second.body;
  EXPECT_EQ(second.content_location, first.content_location);
  Answer running = Call(port(), "GET", first.content_location);
  EXPECT_EQ(running.status, 200);
  ClearFaults(*ehr_);
  Value done = AwaitSync(port(), first.content_location);
  EXPECT_EQ(done["state"].str(), "succeeded") << fhir::json::Serialize(done);
  EXPECT_EQ(done["result"]["pullsOk"].as_bool(), true);
  EXPECT_FALSE(done["finishedAt"].str().empty());

  Answer unknown_source = Call(port(), "POST", "/$sync?source=nope");
  EXPECT_EQ(unknown_source.status, 400);
  Answer one = Call(port(), "POST", "/$sync?source=ehr");
  ASSERT_EQ(one.status, 202) << one.body;
  EXPECT_EQ(AwaitSync(port(), one.content_location)["source"].str(), "ehr");
  EXPECT_EQ(Call(port(), "GET", "/$sync-status/999999").status, 404);
  EXPECT_EQ(Call(port(), "GET", "/$sync-status/abc").status, 404);
}

TEST_F(ServiceTest, MetricsInPrometheusText) {
  Call(port(), "GET", "/healthz", std::nullopt);
  Call(port(), "GET", "/Patient/x/$ccm-status?month=2026-10");
  Answer m = Call(port(), "GET", "/metrics");
  ASSERT_EQ(m.status, 200);
  EXPECT_TRUE(m.content_type.starts_with("text/plain")) << m.content_type;
  for (const char* want :
       {"# TYPE ccm_http_requests_total counter",
        R"(ccm_http_requests_total{route="/healthz",method="GET",status="200"})",
        R"(ccm_http_requests_total{route="/Patient/{id}/$ccm-status",method="GET",status="404"})",
        "# TYPE ccm_http_request_duration_seconds histogram", R"(ccm_build_info{version="test")",
        R"(ccm_ledger_entries{status="pending"} 0)",
        R"(ccm_source_types{source="ehr",state="complete"})"}) {
    EXPECT_NE(m.body.find(want), std::string::npos) << want << "\n" << m.body;
  }
  EXPECT_EQ(m.body.find("Patient/x"), std::string::npos) << "no patient id in a label";
}

// Every request for patient data -- answered, refused or not found -- is in the state store's
// access audit with who, what, when and the status; `ccm-gateway audit` reads it back.
TEST_F(ServiceTest, EveryAccessToPatientDataIsAuditedInTheStore) {
  std::string report = st::EvaluateServer(*ehr_);
  auto first = fhir::json::Parse(report.substr(0, report.find('\n')));
  ASSERT_TRUE(first);
  const std::string patient((*first)["patient"].str());  // "Patient/<id>"
  const std::string id = patient.substr(8);
  const std::string before =
      AccessInstant(std::chrono::time_point_cast<fhir::Micros>(std::chrono::system_clock::now()));
  const std::string status_path = fmt::format("/Patient/{}/$ccm-status?month=2026-10", id);
  EXPECT_EQ(Call(port(), "GET", status_path).status, 200);
  EXPECT_EQ(Call(port(), "GET", status_path, std::nullopt).status, 401);
  EXPECT_EQ(Call(port(), "GET", status_path, std::string("stolen")).status, 401);
  EXPECT_EQ(Call(port(), "GET", fmt::format("/Patient/{}/$ccm-status?month=2026-1", id)).status,
            400);
  EXPECT_EQ(Call(port(), "GET", "/$ccm-billing-summary?month=2026-10").status, 200);
  EXPECT_EQ(Call(port(), "GET", "/$ccm-worklist?month=2026-10").status, 200);
  EXPECT_EQ(Call(port(), "GET", "/$ccm-program?month=2026-10").status, 200);  // counts only
  EXPECT_EQ(Call(port(), "GET", "/healthz", std::nullopt).status, 200);       // no patient data
  ASSERT_TRUE(service_->FlushAudit(kPatience));

  GatewayRun run = st::Gateway(
      fmt::format("audit --config {} --since {} --format ndjson", config_path_.string(), before));
  ASSERT_EQ(run.status, 0) << run.err;
  std::vector<Value> rows;
  for (Value& v : st::Events(run.out)) rows.push_back(std::move(v));
  ASSERT_EQ(rows.size(), 6u) << run.out;
  auto expect = [&](std::size_t i, std::string_view principal, std::string_view route,
                    std::string_view who, std::string_view month, std::int64_t status) {
    SCOPED_TRACE(fhir::json::Serialize(rows[i]));
    EXPECT_EQ(rows[i]["principal"].str(), principal);
    EXPECT_EQ(rows[i]["method"].str(), "GET");
    EXPECT_EQ(rows[i]["route"].str(), route);
    EXPECT_EQ(rows[i]["patient"].str(), who);
    EXPECT_EQ(rows[i]["month"].str(), month);
    EXPECT_EQ(st::Num(rows[i], "status"), status);
    EXPECT_GE(std::string(rows[i]["at"].str()), before);
  };
  const std::string status_route = "/Patient/{id}/$ccm-status";
  expect(0, "care-team", status_route, patient, "2026-10", 200);
  expect(1, "", status_route, patient, "2026-10", 401);
  expect(2, "", status_route, patient, "2026-10", 401);
  expect(3, "care-team", status_route, patient, "(invalid)", 400);
  expect(4, "care-team", "/$ccm-billing-summary", "", "2026-10", 200);
  expect(5, "care-team", "/$ccm-worklist", "", "2026-10", 200);

  // Filters: by patient (a bare id names the patient too), by principal; CSV.
  GatewayRun by_patient = st::Gateway(fmt::format(
      "audit --config {} --since {} --patient {} --format csv", config_path_.string(), before, id));
  ASSERT_EQ(by_patient.status, 0) << by_patient.err;
  EXPECT_TRUE(by_patient.out.starts_with("id,at,principal,method,route,patient,month,status\n"));
  EXPECT_EQ(std::count(by_patient.out.begin(), by_patient.out.end(), '\n'), 5) << by_patient.out;
  GatewayRun bad =
      st::Gateway(fmt::format("audit --config {} --since yesterday", config_path_.string()));
  EXPECT_EQ(bad.status, 2) << bad.err;
}

// 16 clients x 50 requests on keep-alive connections, status and billing summaries interleaved:
// each answer is exactly the one for its own request (no cross-talk between handlers, cache and
// connections), and concurrent billing summaries of one process do not lock each other out.
TEST_F(ServiceTest, ManyConcurrentClientsEachGetTheirOwnPatient) {
  std::string report = st::EvaluateServer(*ehr_);
  std::vector<std::pair<std::string, std::string>> expected;  // id, the status body
  for (std::size_t start = 0; start < report.size();) {
    std::size_t end = report.find('\n', start);
    std::string line = report.substr(start, end - start);
    start = end + 1;
    auto record = fhir::json::Parse(line);
    ASSERT_TRUE(record);
    expected.emplace_back(std::string((*record)["patient"].str()).substr(8), line);
  }
  ASSERT_GE(expected.size(), 12u);
  Answer billing = Call(port(), "GET", "/$ccm-billing-summary?month=2026-10");
  ASSERT_EQ(billing.status, 200) << billing.body;

  constexpr int kClients = 16, kRequests = 50;
  std::vector<std::unique_ptr<fhir::HttpClient>> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.push_back(std::make_unique<fhir::HttpClient>(fhir::HttpOptions{}));
  }
  std::atomic<int> wrong{0}, done{0};
  std::mutex first_m;
  std::string first_wrong;
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      for (int i = 0; i < kRequests; ++i) {
        bool bill = i % 10 == 3;
        const auto& [id, body] =
            expected[static_cast<std::size_t>(c * kRequests + i) % expected.size()];
        fhir::HttpRequest r;
        r.method = "GET";
        r.url = bill ? fmt::format("http://127.0.0.1:{}/$ccm-billing-summary?month=2026-10", port())
                     : fmt::format("http://127.0.0.1:{}/Patient/{}/$ccm-status?month=2026-10",
                                   port(), id);
        r.headers.emplace_back("Authorization", fmt::format("Bearer {}", kServiceToken));
        auto resp = clients[static_cast<std::size_t>(c)]->Send(r);
        const std::string& want = bill ? billing.body : body;
        if (!resp || resp->status != 200 || resp->body != want) {
          ++wrong;
          std::lock_guard lock(first_m);
          if (first_wrong.empty()) {
            first_wrong =
                resp ? fmt::format("{} {}: {}", r.url, resp->status, resp->body.substr(0, 300))
                     : resp.error().message;
          }
        }
        ++done;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(done.load(), kClients * kRequests);
  EXPECT_EQ(wrong.load(), 0) << first_wrong;
  // Each client kept its one connection open (the clients still exist).
  EXPECT_GE(http_->connections(), static_cast<std::size_t>(kClients));
}

// The audit writer keeps a batch the store refused and stores it once the store is back; beyond
// its bound it drops (and counts) rather than grow.
TEST(AccessAuditTest, RetriesAFailedBatchAndBoundsTheQueue) {
  TempDir dir;
  std::atomic<int> opens{0};
  std::vector<std::string> errors;
  std::mutex errors_m;
  AccessAudit::Options options;
  options.retry = std::chrono::milliseconds(10);
  options.max_queued = 3;
  options.on_error = [&](std::string_view message) {
    std::lock_guard lock(errors_m);
    errors.emplace_back(message);
  };
  {
    AccessAudit audit(
        [&]() -> Result<std::unique_ptr<StateStore>> {
          if (opens++ == 0) return MakeError(Errc::kIo, "the disk is away");
          return OpenSqliteStateStore(dir / "state.db");
        },
        options);
    for (int i = 0; i < 20; ++i) {
      audit.Record(AccessRow{0, "", "p", "GET", "/$ccm-billing-summary", "", "2026-10", 200});
    }
    ASSERT_TRUE(audit.Flush(kPatience));
    EXPECT_EQ(audit.counts().written + audit.counts().dropped, 20u);
    EXPECT_GE(audit.counts().written, 1u);
    EXPECT_GE(audit.counts().dropped, 14u);
  }
  EXPECT_GE(opens.load(), 2) << "tried again after the failure";
  EXPECT_FALSE(errors.empty());
  auto store = OpenSqliteStateStore(dir / "state.db");
  ASSERT_TRUE(store);
  auto rows = (*store)->AccessRecords({});
  ASSERT_TRUE(rows);
  EXPECT_GE(rows->size(), 1u);
  // The batch the store refused (at most max_queued rows) and at most max_queued behind it.
  EXPECT_LE(rows->size(), 6u) << "at most max_queued waited beside the batch being stored";
}

// The samples of a Prometheus text exposition, by "name{labels}" (checked line by line against
// the format: every sample's family has # HELP and # TYPE before it).
std::map<std::string, double> ParsePrometheus(const std::string& text) {
  std::map<std::string, double> out;
  std::set<std::string> typed;
  static const std::regex sample(
      R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*\})? (\S+)$)");
  static const std::regex type(R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram)$)");
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_match(line, m, type)) {
      typed.insert(m[1]);
    } else if (line.starts_with("# HELP ")) {
      continue;
    } else if (std::regex_match(line, m, sample)) {
      std::string family = m[1];
      for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        if (!typed.contains(family) && family.ends_with(suffix)) {
          family.resize(family.size() - std::string_view(suffix).size());
        }
      }
      EXPECT_TRUE(typed.contains(family)) << "no # TYPE before " << line;
      out[m[1].str() + m[2].str()] = std::stod(m[3]);
    } else {
      ADD_FAILURE() << "not Prometheus text: " << line;
    }
  }
  return out;
}

// Per source, the counters move by what a sync did (its status resource says it), retries
// included; the store's pull records give the last complete sync; the current month's patients
// and billable patient-months are there without a status call before.
TEST_F(ServiceTest, MetricsPerSourceAndOfTheMonth) {
  auto before = ParsePrometheus(Call(port(), "GET", "/metrics").body);
  const std::string ehr = R"({source="ehr"})";
  for (const char* name :
       {"ccm_source_pages_total", "ccm_source_resources_total", "ccm_source_requests_total",
        "ccm_source_retries_total", "ccm_source_errors_total"}) {
    EXPECT_TRUE(before.contains(name + ehr)) << name;
  }
  ehr_->Faults(R"([{"match": "GET /fhir/R4/Condition?", "kind": "status", "status": 503,
                    "retryAfter": "0", "times": 1}])");
  Answer posted = Call(port(), "POST", "/$sync?source=ehr");
  ASSERT_EQ(posted.status, 202) << posted.body;
  Value done = AwaitSync(port(), posted.content_location);
  ClearFaults(*ehr_);
  ASSERT_EQ(done["state"].str(), "succeeded") << fhir::json::Serialize(done);
  auto after = ParsePrometheus(Call(port(), "GET", "/metrics").body);
  auto delta = [&](const std::string& name) { return after[name + ehr] - before[name + ehr]; };
  EXPECT_EQ(delta("ccm_source_pages_total"), st::Num(done["progress"], "pages"));
  EXPECT_GT(delta("ccm_source_pages_total"), 0);
  EXPECT_EQ(delta("ccm_source_resources_total"), st::Num(done["progress"], "resources"));
  EXPECT_EQ(delta("ccm_source_requests_total"), st::Num(done["result"], "requests"));
  EXPECT_EQ(delta("ccm_source_retries_total"), st::Num(done["result"], "retries"));
  EXPECT_GE(delta("ccm_source_retries_total"), 1) << "the 503 was retried";
  EXPECT_EQ(delta("ccm_source_errors_total"), 0);

  double last = after["ccm_source_last_success_timestamp_seconds" + ehr];
  auto finished = fhir::FhirDateTime::ParseInstant(done["finishedAt"].str());
  ASSERT_TRUE(finished);
  double finished_s =
      std::chrono::duration<double>(finished->Earliest().time_since_epoch()).count();
  EXPECT_LE(last, finished_s + 1);
  EXPECT_GT(last, finished_s - 600) << "this sync's pulls completed every type";

  // The current month: patients by program and consent add up to the month's records, and the
  // billable count is the evaluation's.
  const std::string month = app::CurrentMonth(LoadGatewayConfig(config_path_)->engine).ToString();
  double patients = 0;
  for (const auto& [key, value] : after) {
    if (key.starts_with("ccm_patients{month=\"" + month + "\"")) patients += value;
  }
  EXPECT_GT(patients, 0) << "the sample practice has patients this month";
  EXPECT_TRUE(after.contains(fmt::format(R"(ccm_billable_patient_months{{month="{}"}})", month)));
  for (const char* status : {"pending", "submitted", "acknowledged"}) {
    EXPECT_TRUE(after.contains(fmt::format(R"(ccm_ledger_entries{{status="{}"}})", status)));
  }
}

// server.logPatientIds: the access log names the patient of a status request by a salted hash
// (the same id the same hash within the process; never the id), or in clear when true.
TEST(AccessLogTest, PatientIdsAreHashedUnlessLogPatientIds) {
  TestFhirServer ehr;
  TempDir dir;
  auto config = LoadGatewayConfig(st::WriteConfig(dir, ehr));
  ASSERT_TRUE(config) << config.error().message;
  for (bool clear : {false, true}) {
    SCOPED_TRACE(clear ? "logPatientIds: true" : "logPatientIds: false");
    std::mutex m;
    std::string log;
    ServiceOptions options;
    options.log = [](std::string_view, std::string_view, std::string_view) {};
    options.log_patient_ids = clear;
    options.access_sink = [&](std::string_view line) {
      std::lock_guard lock(m);
      log += line;
    };
    GatewayService service(*config, options);
    HttpServerOptions ho;
    ho.tokens = ServiceTokens();
    ho.on_access = [&service](const AccessRecord& a) { service.OnAccess(a); };
    auto http = HttpServer::Start(std::move(ho), service.router());
    ASSERT_TRUE(http);
    for (const char* id : {"mrn-004711", "mrn-004711", "mrn-999"}) {
      Call((*http)->port(), "GET", fmt::format("/Patient/{}/$ccm-status?month=2026-10", id));
    }
    Call((*http)->port(), "GET", "/healthz", std::nullopt);
    (*http)->Stop(std::chrono::seconds(5));  // every access line is written
    std::vector<Value> lines = st::Events(log);
    ASSERT_EQ(lines.size(), 4u) << log;
    if (clear) {
      EXPECT_EQ(lines[0]["patient"].str(), "Patient/mrn-004711");
      EXPECT_EQ(lines[2]["patient"].str(), "Patient/mrn-999");
    } else {
      EXPECT_EQ(log.find("mrn-"), std::string::npos) << "no patient id in the log:\n" << log;
      std::regex hashed("sha256:[0-9a-f]{16}");
      EXPECT_TRUE(std::regex_match(std::string(lines[0]["patient"].str()), hashed)) << log;
      EXPECT_EQ(lines[0]["patient"].str(), lines[1]["patient"].str()) << "one patient, one hash";
      EXPECT_NE(lines[0]["patient"].str(), lines[2]["patient"].str());
      EXPECT_NE(lines[0]["patient"].str(),
                "sha256:" + ToHex(HashToken("Patient/mrn-004711")).substr(0, 16))
          << "salted";
    }
    EXPECT_EQ(lines[3]["route"].str(), "/healthz");
    EXPECT_EQ(lines[3].find("patient"), nullptr) << log;
  }
}

TEST(ServiceReadinessTest, NotReadyBeforeTheFirstSync) {
  TestFhirServer ehr;
  TempDir dir;
  auto config = LoadGatewayConfig(st::WriteConfig(dir, ehr));
  ASSERT_TRUE(config) << config.error().message;
  ServiceOptions options;
  options.access_log = false;
  options.log = [](std::string_view, std::string_view, std::string_view) {};
  GatewayService service(std::move(*config), options);
  auto http = HttpServer::Start(HttpServerOptions{}, service.router());
  ASSERT_TRUE(http);
  Answer ready = Call((*http)->port(), "GET", "/readyz", std::nullopt);
  EXPECT_EQ(ready.status, 503);
  EXPECT_NE(OutcomeText(ready).find("source ehr has not been synced yet"), std::string::npos)
      << ready.body;
}

// A service of its own over a fresh state store (tests that change the FHIR server's data or the
// store's records, or that need a sync to stay running).
struct OwnService {
  explicit OwnService(const std::vector<std::filesystem::path>& load,
                      std::function<void(GatewayConfig&)> adjust = {},
                      std::function<void(ServiceOptions&)> adjust_options = {})
      : ehr(load) {
    auto loaded = LoadGatewayConfig(st::WriteConfig(dir, ehr));
    EXPECT_TRUE(loaded) << loaded.error().message;
    if (adjust) adjust(*loaded);
    ServiceOptions options;
    if (adjust_options) adjust_options(options);
    options.access_log = false;
    options.log = [this](std::string_view, std::string_view event, std::string_view message) {
      std::lock_guard lock(m);
      events.push_back(fmt::format("{}: {}", event, message));
    };
    service = std::make_unique<GatewayService>(std::move(*loaded), options);
    HttpServerOptions ho;
    ho.tokens = ServiceTokens();
    ho.on_access = [this](const AccessRecord& a) { service->OnAccess(a); };
    auto started = HttpServer::Start(std::move(ho), service->router());
    EXPECT_TRUE(started);
    http = std::move(*started);
  }
  ~OwnService() { http->Stop(std::chrono::seconds(5)); }
  std::uint16_t port() const { return http->port(); }
  Value Sync() {
    Answer posted = Call(port(), "POST", "/$sync");
    EXPECT_EQ(posted.status, 202) << posted.body;
    return AwaitSync(port(), posted.content_location);
  }
  std::vector<std::string> Events() {
    std::lock_guard lock(m);
    return events;
  }

  TestFhirServer ehr;
  TempDir dir;
  std::mutex m;
  std::vector<std::string> events;
  std::unique_ptr<GatewayService> service;
  std::unique_ptr<HttpServer> http;
};

// /readyz says why it is not ready: the last pull of a type failed; or (sync.intervalSeconds set)
// a type's last complete pull is older than 3 intervals. A good sync makes it ready again.
TEST(ServiceReadinessTest, NotReadyWhenTheLastPullFailedOrIsStale) {
  OwnService own(ccm::testing::SampleInputs(), [](GatewayConfig& c) {
    c.sync.interval = std::chrono::seconds(3600);
    c.sync.interval_set = true;
  });
  // Every Encounter search answered 400 (not retried): that type's pull fails.
  own.ehr.Faults(R"([{"match": "GET /fhir/R4/Encounter?", "kind": "status", "status": 400,
                      "times": 1000}])");
  Value failed = own.Sync();
  EXPECT_EQ(failed["state"].str(), "problems") << fhir::json::Serialize(failed);
  Answer ready = Call(own.port(), "GET", "/readyz", std::nullopt);
  EXPECT_EQ(ready.status, 503);
  EXPECT_NE(OutcomeText(ready).find("source ehr: the last pull of Encounter is failed"),
            std::string::npos)
      << ready.body;

  ClearFaults(own.ehr);
  Value good = own.Sync();
  ASSERT_EQ(good["state"].str(), "succeeded") << fhir::json::Serialize(good);
  EXPECT_EQ(Call(own.port(), "GET", "/readyz", std::nullopt).status, 200);

  // The same pulls, as if they had ended long ago (written by another process: the service
  // reads the store on every call).
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((own.dir / "state.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "UPDATE pulls SET finished_at = '2020-01-01T00:00:00Z', "
                         "last_complete_finished = '2020-01-01T00:00:00Z' "
                         "WHERE state = 'complete'",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  Answer stale = Call(own.port(), "GET", "/readyz", std::nullopt);
  EXPECT_EQ(stale.status, 503);
  EXPECT_NE(OutcomeText(stale).find("was last pulled completely at 2020-01-01T00:00:00Z, more "
                                    "than 3 x sync.intervalSeconds (3600 s) ago"),
            std::string::npos)
      << stale.body;
  EXPECT_EQ(stale.body.find("Patient/"), std::string::npos) << "no patient data";
}

// The evaluation cache: a sync that changed nothing keeps it; a sync that changed a patient's data
// makes the next status call evaluate again and answer the new record.
TEST(ServiceCacheTest, ASyncThatChangedDataInvalidatesTheCache) {
  OwnService own(ccm::testing::SampleInputs());
  ASSERT_EQ(own.Sync()["state"].str(), "succeeded");
  auto evaluations = [&] {
    auto m = ParsePrometheus(Call(own.port(), "GET", "/metrics").body);
    return m[R"(ccm_evaluations_total{month="2026-10"})"];
  };
  // A patient with an encounter in the month (it is in the record's evidence).
  std::string before_report = st::EvaluateServer(own.ehr);
  std::string id, encounter, line;
  for (std::size_t start = 0; start < before_report.size() && id.empty();) {
    std::size_t end = before_report.find('\n', start);
    line = before_report.substr(start, end - start);
    start = end + 1;
    auto record = fhir::json::Parse(line);
    ASSERT_TRUE(record);
    const auto& encounters = (*record)["evidence"]["encounters"].array();
    if (encounters.empty()) continue;
    id = std::string((*record)["patient"].str()).substr(8);
    encounter = std::string(encounters[0]["reference"].str());
  }
  ASSERT_FALSE(id.empty()) << "a sample patient with encounters in 2026-10";
  ASSERT_TRUE(encounter.starts_with("Encounter/")) << encounter;
  const std::string path = fmt::format("/Patient/{}/$ccm-status?month=2026-10", id);
  Answer first = Call(own.port(), "GET", path);
  ASSERT_EQ(first.status, 200);
  EXPECT_EQ(first.body, line);
  double after_first = evaluations();

  Value unchanged = own.Sync();
  ASSERT_EQ(st::Num(unchanged["result"], "changed"), 0) << fhir::json::Serialize(unchanged);
  EXPECT_EQ(Call(own.port(), "GET", path).body, line);
  EXPECT_EQ(evaluations(), after_first) << "a sync that changed nothing keeps the cache";

  // Another encounter like that one, in the same month, for the same patient.
  Value copy = own.ehr.Json("GET", "/fhir/R4/" + encounter);
  copy.set("id", Value::String("cache-test-copy"));
  copy.erase("identifier");
  copy.erase("meta");
  own.ehr.Put(copy);
  own.ehr.AwaitWritesVisible();
  const std::string current =
      app::CurrentMonth(LoadGatewayConfig(own.dir / "config.json")->engine).ToString();
  auto evaluations_of = [&](const std::string& month) {
    auto m = ParsePrometheus(Call(own.port(), "GET", "/metrics").body);
    return m[fmt::format(R"(ccm_evaluations_total{{month="{}"}})", month)];
  };
  double current_before = evaluations_of(current);
  Value changed = own.Sync();
  ASSERT_GE(st::Num(changed["result"], "changed"), 1) << fhir::json::Serialize(changed);
  // The sync re-evaluated the current month itself: a status call of it then evaluates nothing.
  EXPECT_EQ(evaluations_of(current), current_before + 1);
  Call(own.port(), "GET", fmt::format("/Patient/{}/$ccm-status", id));
  EXPECT_EQ(evaluations_of(current), current_before + 1);
  Answer second = Call(own.port(), "GET", path);
  ASSERT_EQ(second.status, 200);
  EXPECT_NE(second.body, first.body);
  EXPECT_NE(second.body.find("Encounter/cache-test-copy"), std::string::npos) << second.body;
  EXPECT_EQ(evaluations(), after_first + 1);
  // And it is what `evaluate` says of the server's data now.
  std::string after_report = st::EvaluateServer(own.ehr);
  EXPECT_NE(after_report.find(second.body + "\n"), std::string::npos);
}

// How many billing summaries of 2026-10 the service computed (its metric).
double SummariesComputed(std::uint16_t port) {
  auto m = ParsePrometheus(Call(port, "GET", "/metrics").body);
  return m[R"(ccm_billing_summaries_computed_total{month="2026-10"})"];
}

// The billing summary cache: a second call is answered from it (with its Age); a ledger change
// made by another process, or a sync that changed data, makes the next call compute again; a
// sync that changed nothing keeps it.
TEST(ServiceCacheTest, ABillingSummaryIsComputedAgainOnlyWhenWhatItReadChanged) {
  OwnService own(ccm::testing::SampleInputs());
  ASSERT_EQ(own.Sync()["state"].str(), "succeeded");
  auto computed = [&] { return SummariesComputed(own.port()); };
  const std::string path = "/$ccm-billing-summary?month=2026-10";
  Answer first = Call(own.port(), "GET", path);
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(first.age, "0");
  EXPECT_EQ(computed(), 1);
  Answer again = Call(own.port(), "GET", path);
  EXPECT_EQ(again.body, first.body);
  EXPECT_FALSE(again.age.empty());
  Answer csv = Call(own.port(), "GET", path, std::string(kServiceToken), "text/csv");
  EXPECT_EQ(csv.status, 200);
  EXPECT_EQ(computed(), 1) << "every format from the one computed summary";

  Value unchanged = own.Sync();
  ASSERT_EQ(st::Num(unchanged["result"], "changed"), 0) << fhir::json::Serialize(unchanged);
  EXPECT_EQ(Call(own.port(), "GET", path).body, first.body);
  EXPECT_EQ(computed(), 1) << "a sync that changed nothing keeps it";

  // `ccm-gateway ledger`/`bill` in another process: a ledger entry for one of the month's
  // patients (as if it had been billed) changes what the dry run would do.
  auto summary = fhir::json::Parse(first.body);
  ASSERT_TRUE(summary);
  ASSERT_FALSE((*summary)["changes"].array().empty()) << first.body;
  const std::string patient((*summary)["changes"].array()[0]["patient"].str());
  {
    auto other = OpenSqliteStateStore(own.dir / "state.db");
    ASSERT_TRUE(other) << other.error().message;
    ASSERT_TRUE((*other)->AddLedgerEntry(store_testing::PlainEntry(patient)));
  }
  Answer after_ledger = Call(own.port(), "GET", path);
  ASSERT_EQ(after_ledger.status, 200) << after_ledger.body;
  EXPECT_EQ(after_ledger.age, "0");
  EXPECT_NE(after_ledger.body, first.body);
  EXPECT_EQ(computed(), 2);
}

// With write-back configured the summary reads the EHR, which changes without telling the
// gateway: billingSummaryMaxAgeSeconds 0 computes it for every request.
TEST(ServiceCacheTest, ASummaryThatReadTheEhrIsKeptNoLongerThanItsMaxAge) {
  OwnService own(
      ccm::testing::SampleInputs(),
      [](GatewayConfig& c) {
        c.write_back.care_plans = true;
        c.write_back.target = c.sync.sources.at(0);
      },
      [](ServiceOptions& o) { o.billing_summary_max_age = std::chrono::seconds(0); });
  ASSERT_EQ(own.Sync()["state"].str(), "succeeded");
  auto computed = [&] { return SummariesComputed(own.port()); };
  const std::string path = "/$ccm-billing-summary?month=2026-10";
  Answer first = Call(own.port(), "GET", path);
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_NE(first.body.find("\"carePlans\":{\""), std::string::npos) << "it read the care plans";
  Answer second = Call(own.port(), "GET", path);
  EXPECT_EQ(second.body, first.body);
  EXPECT_EQ(second.age, "0");
  EXPECT_EQ(computed(), 2);
}

// The schedule never stacks syncs: a tick while one runs is skipped, logged and counted.
TEST(ServiceScheduleTest, ATickWhileASyncRunsIsSkipped) {
  OwnService own(ccm::testing::SampleInputs());
  // Slow pages keep the first sync running until the faults are lifted.
  own.ehr.Faults(R"([{"match": "GET /fhir/R4/Encounter?", "kind": "delay", "delayMs": 200,
                      "times": 1000}])");
  GatewayService::SyncStart first = own.service->ScheduledSync();
  ASSERT_TRUE(first.started);
  st::WaitForRequests(own.ehr, "GET /fhir/R4/Encounter?", 1);
  GatewayService::SyncStart tick = own.service->ScheduledSync();
  EXPECT_FALSE(tick.started);
  EXPECT_EQ(tick.id, first.id) << "the running one";
  ClearFaults(own.ehr);
  Value done = AwaitSync(own.port(), SyncLocation(first.id));
  EXPECT_EQ(done["trigger"].str(), "schedule");
  EXPECT_EQ(done["state"].str(), "succeeded") << fhir::json::Serialize(done);
  auto m = ParsePrometheus(Call(own.port(), "GET", "/metrics").body);
  EXPECT_EQ(m["ccm_sync_skipped_total"], 1);
  EXPECT_EQ(m[R"(ccm_sync_runs_total{trigger="schedule",state="succeeded"})"], 1);
  std::vector<std::string> events = own.Events();
  EXPECT_EQ(std::count_if(events.begin(), events.end(),
                          [](const std::string& e) { return e.starts_with("sync-skipped:"); }),
            1);
  // Once it has ended, the next tick starts one.
  GatewayService::SyncStart next = own.service->ScheduledSync();
  EXPECT_TRUE(next.started);
  EXPECT_EQ(AwaitSync(own.port(), SyncLocation(next.id))["state"].str(), "succeeded");
}

// --- the built binary ---------------------------------------------------------------------------

// Waits until `log` has a JSON line with "event": `event`; returns it (null Value on timeout).
Value AwaitLogEvent(const std::filesystem::path& log, std::string_view event, std::size_t nth = 1) {
  auto deadline = std::chrono::steady_clock::now() + kPatience;
  while (std::chrono::steady_clock::now() < deadline) {
    std::size_t seen = 0;
    for (Value& e : st::Events(ReadFile(log))) {
      if (e["event"].str() == event && ++seen == nth) return std::move(e);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ADD_FAILURE() << "no \"" << event << "\" in the log:\n" << ReadFile(log);
  return Value();
}

TEST(ServeBinaryTest, SigtermDuringASyncExitsZeroAndTheNextStartResumes) {
  TestFhirServer ehr(ccm::testing::SampleInputs());
  TempDir dir;
  WriteFile(dir / "tokens.json", fmt::format(R"({{"tokens": [{{"sha256": "{}", "name": "ops"}}]}})",
                                             ToHex(HashToken(kServiceToken))));
  std::string json = fmt::format(
      R"({{
    "practice": {{"timeZone": "America/Chicago", "billingPractitioners": ["9999999991"]}},
    "billing": {{"feeScheduleYear": 2025}},
    "sources": [{{"name": "ehr", "baseUrl": "{}", "pageSize": 25,
                  "retry": {{"initialBackoffMs": 20, "maxBackoffSeconds": 1}}}}],
    "state": {{"path": "state.db"}},
    "sync": {{"intervalSeconds": 3600}},
    "server": {{"port": 0, "tokensFile": "tokens.json"}}
  }})",
      ehr.base());
  WriteFile(dir / "config.json", json);
  std::string args = fmt::format("serve --config {}", (dir / "config.json").string());

  // First start: the scheduled sync begins at once; its Encounter pages are slow.
  ehr.Faults(R"([{"match": "GET /fhir/R4/Encounter?", "kind": "delay", "delayMs": 300,
                  "times": 1000}])");
  pid_t pid = st::StartGateway(args, dir / "first.log");
  Value listening = AwaitLogEvent(dir / "first.log", "listening");
  auto port = static_cast<std::uint16_t>(st::Num(listening, "port"));
  ASSERT_GT(port, 0);
  st::WaitForRequests(ehr, "GET /fhir/R4/Encounter?", 2);
  EXPECT_EQ(Call(port, "GET", "/readyz", std::nullopt).status, 503) << "not synced yet";
  // SIGHUP re-reads the tokens file: the old token stops working, the new one works.
  WriteFile(dir / "tokens.json", fmt::format(R"({{"tokens": [{{"sha256": "{}", "name": "ops"}}]}})",
                                             ToHex(HashToken("rotated"))));
  ::kill(pid, SIGHUP);
  AwaitLogEvent(dir / "first.log", "tokens-reloaded");
  EXPECT_EQ(Call(port, "GET", "/metrics", std::string(kServiceToken)).status, 401);
  EXPECT_EQ(Call(port, "GET", "/metrics", std::string("rotated")).status, 200);

  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  std::string first_log = ReadFile(dir / "first.log");
  ASSERT_TRUE(WIFEXITED(status)) << first_log;
  EXPECT_EQ(WEXITSTATUS(status), 0) << first_log;
  Value stopped = AwaitLogEvent(dir / "first.log", "sync-finished");
  EXPECT_NE(std::string(stopped["message"].str()).find("stopped"), std::string::npos) << first_log;
  EXPECT_NE(first_log.find(R"("event":"stopped")"), std::string::npos) << first_log;

  // Second start, nothing slow: the sync at start resumes and completes; the service is ready
  // and answers exactly what `evaluate` says of the server's resources.
  ClearFaults(ehr);
  pid = st::StartGateway(args, dir / "second.log");
  listening = AwaitLogEvent(dir / "second.log", "listening");
  port = static_cast<std::uint16_t>(st::Num(listening, "port"));
  Value finished = AwaitLogEvent(dir / "second.log", "sync-finished");
  EXPECT_EQ(finished["level"].str(), "info") << ReadFile(dir / "second.log");
  EXPECT_EQ(Call(port, "GET", "/readyz", std::nullopt).status, 200);
  std::string report = st::EvaluateServer(ehr);
  std::string first_line = report.substr(0, report.find('\n'));
  auto record = fhir::json::Parse(first_line);
  ASSERT_TRUE(record);
  Answer a = Call(port, "GET",
                  fmt::format("/Patient/{}/$ccm-status?month=2026-10",
                              std::string((*record)["patient"].str()).substr(8)),
                  std::string("rotated"));
  EXPECT_EQ(a.body, first_line);
  ::kill(pid, SIGTERM);
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << ReadFile(dir / "second.log");
  // The access log: one line per request, route patterns only.
  std::string second_log = ReadFile(dir / "second.log");
  EXPECT_NE(second_log.find(R"("route":"/Patient/{id}/$ccm-status")"), std::string::npos);
  EXPECT_EQ(second_log.find(std::string((*record)["patient"].str()).substr(8)), std::string::npos)
      << "no patient id in the log";
}

// The care team's page: served from the binary without a token (it holds no data), with a policy
// that allows only the gateway's own files -- no inline script, no other origin -- and an ETag.
TEST_F(ServiceTest, ThePageAndItsFilesAreServedWithAStrictPolicy) {
  struct File {
    std::string path, type;
  };
  std::map<std::string, std::string> bodies;
  for (const File& f : std::vector<File>{{"/", "text/html; charset=utf-8"},
                                         {"/app.js", "text/javascript; charset=utf-8"},
                                         {"/app.css", "text/css; charset=utf-8"},
                                         {"/favicon.svg", "image/svg+xml"}}) {
    SCOPED_TRACE(f.path);
    auto r = Fetch(port(), "GET", f.path);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(HeaderOf(r, "content-type"), f.type);
    EXPECT_EQ(HeaderOf(r, "x-content-type-options"), "nosniff");
    const std::string csp = HeaderOf(r, "content-security-policy");
    EXPECT_NE(csp.find("default-src 'self'"), std::string::npos) << csp;
    EXPECT_NE(csp.find("script-src 'self'"), std::string::npos) << csp;
    EXPECT_NE(csp.find("frame-ancestors 'none'"), std::string::npos) << csp;
    EXPECT_EQ(csp.find("unsafe"), std::string::npos) << csp;
    EXPECT_EQ(csp.find("http"), std::string::npos) << "no other origin: " << csp;
    EXPECT_EQ(HeaderOf(r, "cache-control"), "no-cache");
    const std::string etag = HeaderOf(r, "etag");
    EXPECT_TRUE(std::regex_match(etag, std::regex("\"[0-9a-f]{32}\""))) << etag;
    // Revalidation: the same ETag is a 304 without a body.
    auto again = Fetch(port(), "GET", f.path, {{"If-None-Match", etag}});
    EXPECT_EQ(again.status, 304);
    EXPECT_TRUE(again.body.empty());
    EXPECT_EQ(Fetch(port(), "GET", f.path, {{"If-None-Match", "\"other\""}}).status, 200);
    // Byte for byte the file of the repository (compiled in).
    std::string name = f.path == "/" ? "index.html" : f.path.substr(1);
    EXPECT_EQ(r.body, ReadFile(ccm::testing::SourceDir() / "gateway/server/web" / name));
    bodies[name] = r.body;
  }
  const std::string& html = bodies["index.html"];
  // Every script is a file of the gateway's (none inline), every stylesheet too.
  std::regex script("<script([^>]*)>");
  for (auto it = std::sregex_iterator(html.begin(), html.end(), script);
       it != std::sregex_iterator(); ++it) {
    EXPECT_NE((*it)[1].str().find("src=\"/"), std::string::npos) << (*it)[0];
  }
  EXPECT_EQ(html.find("style="), std::string::npos) << "no inline style (the policy forbids it)";
  // Nothing from another origin: no absolute URL but the SVG namespace name (never fetched).
  for (const auto& [name, body] : bodies) {
    std::string rest = std::regex_replace(body, std::regex("http://www\\.w3\\.org/2000/svg"), "");
    EXPECT_EQ(rest.find("http://"), std::string::npos) << name;
    EXPECT_EQ(rest.find("https://"), std::string::npos) << name;
    EXPECT_EQ(rest.find("//fonts."), std::string::npos) << name;
  }
  // The page itself holds no patient data: the script asks for it once signed in.
  EXPECT_EQ(html.find("Patient/"), std::string::npos);
  EXPECT_NE(html.find("<label for=\"token\">"), std::string::npos) << "a labelled login field";
  // API answers say nosniff too; only GET serves the page.
  EXPECT_EQ(HeaderOf(Fetch(port(), "GET", "/healthz"), "x-content-type-options"), "nosniff");
  EXPECT_EQ(Fetch(port(), "POST", "/").status, 405);
}

// Download links cannot set Accept: FHIR's _format picks the representation, and the answer is
// an attachment named after the month. The session cookie authenticates the download.
TEST_F(ServiceTest, BillingSummaryDownloadsByFormat) {
  Answer csv_by_accept = Call(port(), "GET", "/$ccm-billing-summary?month=2026-10",
                              std::string(kServiceToken), "text/csv");
  ASSERT_EQ(csv_by_accept.status, 200) << csv_by_accept.body;
  Answer bundle_by_accept = Call(port(), "GET", "/$ccm-billing-summary?month=2026-10",
                                 std::string(kServiceToken), "application/fhir+json");
  ASSERT_EQ(bundle_by_accept.status, 200);
  const std::string cookie = SignIn(port());
  ASSERT_EQ(cookie.size(), 64u);
  const std::pair<std::string, std::string> session{"Cookie", "ccm_session=" + cookie};
  for (const std::string format : {"csv", "text/csv"}) {
    auto r =
        Fetch(port(), "GET", "/$ccm-billing-summary?month=2026-10&_format=" + format, {session});
    ASSERT_EQ(r.status, 200) << format << ": " << r.body;
    EXPECT_EQ(HeaderOf(r, "content-type"), "text/csv; charset=utf-8");
    EXPECT_EQ(HeaderOf(r, "content-disposition"),
              "attachment; filename=\"ccm-billing-summary-2026-10.csv\"");
    EXPECT_EQ(r.body, csv_by_accept.body) << format;
    EXPECT_TRUE(r.body.starts_with("action,patient,month,kind,program,codes,amount\r\n"));
  }
  // json, application/json and application/fhir+json all mean FHIR JSON (R4 http.html).
  for (const std::string format : {"json", "application/json", "application/fhir%2Bjson"}) {
    auto r = Fetch(port(), "GET", "/$ccm-billing-summary?month=2026-10&_format=" + format,
                   {session, {"Accept", "text/csv"}});
    ASSERT_EQ(r.status, 200) << format << ": " << r.body;
    EXPECT_EQ(HeaderOf(r, "content-type"), "application/fhir+json") << "_format overrides Accept";
    EXPECT_EQ(HeaderOf(r, "content-disposition"),
              "attachment; filename=\"ccm-billing-summary-2026-10.fhir.json\"");
    auto bundle = fhir::json::Parse(r.body);
    ASSERT_TRUE(bundle);
    EXPECT_EQ((*bundle)["resourceType"].str(), "Bundle");
    EXPECT_EQ((*bundle)["entry"].array().size(),
              (*fhir::json::Parse(bundle_by_accept.body))["entry"].array().size());
  }
  auto xml = Fetch(port(), "GET", "/$ccm-billing-summary?month=2026-10&_format=xml", {session});
  EXPECT_EQ(xml.status, 406);
  EXPECT_FALSE(OutcomeText(Answer{xml.status, xml.body}).empty()) << xml.body;
  // Without _format the API answers as before: no attachment.
  EXPECT_TRUE(HeaderOf(Fetch(port(), "GET", "/$ccm-billing-summary?month=2026-10", {session}),
                       "content-disposition")
                  .empty());
  EXPECT_EQ(Fetch(port(), "GET", "/$ccm-billing-summary?month=2026-10&_format=csv").status, 401);
}

// The page's session reaches every API route a token reaches, as the token's name; sign-ins (good
// and bad) and sign-outs are in the access audit -- without the token.
TEST_F(ServiceTest, ASessionReachesTheApiAndSignInsAreAudited) {
  // The audit's instants are milliseconds: the previous test's last request must fall before.
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const std::string before =
      AccessInstant(std::chrono::time_point_cast<fhir::Micros>(std::chrono::system_clock::now()));
  EXPECT_EQ(SignIn(port(), "a-guess"), "");
  const std::string cookie = SignIn(port());
  ASSERT_EQ(cookie.size(), 64u);
  const std::pair<std::string, std::string> session{"Cookie", "ccm_session=" + cookie};
  for (const std::string path :
       {"/$ccm-worklist?month=2026-10", "/$ccm-program?month=2026-10", "/metrics"}) {
    auto by_cookie = Fetch(port(), "GET", path, {session});
    EXPECT_EQ(by_cookie.status, 200) << path << ": " << by_cookie.body;
  }
  auto worklist = Fetch(port(), "GET", "/$ccm-worklist?month=2026-10", {session});
  Answer by_token = Call(port(), "GET", "/$ccm-worklist?month=2026-10");
  auto a = fhir::json::Parse(worklist.body), b = fhir::json::Parse(by_token.body);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(fhir::json::Serialize((*a)["items"]), fhir::json::Serialize((*b)["items"]));
  // A cookie POST from the page's own origin starts a sync; from nowhere it is refused.
  EXPECT_EQ(Fetch(port(), "POST", "/$sync", {session}).status, 403);
  EXPECT_FALSE(service_->SyncRunning());
  auto out = Fetch(port(), "POST", "/$logout", {session, {"X-Requested-With", "ccm-gateway"}});
  EXPECT_EQ(out.status, 204);
  EXPECT_EQ(Fetch(port(), "GET", "/$ccm-worklist?month=2026-10", {session}).status, 401);
  ASSERT_TRUE(service_->FlushAudit(kPatience));

  GatewayRun run = st::Gateway(
      fmt::format("audit --config {} --since {} --format ndjson", config_path_.string(), before));
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(run.out.find("a-guess"), std::string::npos) << "no token in the audit";
  EXPECT_EQ(run.out.find(kServiceToken), std::string::npos) << "no token in the audit";
  std::vector<std::string> seen;
  for (const Value& v : st::Events(run.out)) {
    seen.push_back(fmt::format("{} {} {} {}", v["method"].str(), v["route"].str(),
                               st::Num(v, "status"), v["principal"].str()));
  }
  const std::vector<std::string> want = {
      "POST /$login 401 ",
      "POST /$login 200 care-team",
      "GET /$ccm-worklist 200 care-team",
      "GET /$ccm-worklist 200 care-team",
      "GET /$ccm-worklist 200 care-team",  // the bearer call
      "POST /$logout 204 care-team",
      "GET /$ccm-worklist 401 ",
  };
  EXPECT_EQ(seen, want) << run.out;
}

// The names behind the page's rows: one per record of the month, from the stored Patient
// resources, for signed-in callers only (and audited like the worklist).
TEST_F(ServiceTest, PatientNamesOfTheMonth) {
  Answer a = Call(port(), "GET", "/$ccm-patients?month=2026-10");
  ASSERT_EQ(a.status, 200) << a.body;
  auto v = fhir::json::Parse(a.body);
  ASSERT_TRUE(v);
  std::string report = st::EvaluateServer(*ehr_);
  const auto& patients = (*v)["patients"].array();
  EXPECT_EQ(patients.size(),
            static_cast<std::size_t>(std::count(report.begin(), report.end(), '\n')));
  for (const Value& p : patients) {
    SCOPED_TRACE(fhir::json::Serialize(p));
    EXPECT_NE(report.find(fmt::format(R"("patient":"{}")", p["patient"].str())), std::string::npos);
    // Synthea's names: given names and family, each with digits ("Abe604 Hirthe744").
    EXPECT_TRUE(std::regex_match(std::string(p["name"].str()), std::regex(R"(\S+( \S+)+)")));
  }
  EXPECT_EQ(Call(port(), "GET", "/$ccm-patients?month=2026-10", std::nullopt).status, 401);
}

// $ccm-program's trend: the ledger's active entries per month (not voids, not superseded
// revisions), from the first month with one, up to the month asked for.
TEST(ServiceTrendTest, TheLastTwelveMonthsFromTheLedger) {
  OwnService own(ccm::testing::SampleInputs());
  ASSERT_EQ(own.Sync()["state"].str(), "succeeded");
  auto trend = [&](const std::string& month) {
    Answer a = Call(own.port(), "GET", "/$ccm-program?month=" + month);
    EXPECT_EQ(a.status, 200) << a.body;
    auto v = fhir::json::Parse(a.body);
    return v ? fhir::json::Serialize((*v)["trend"]) : std::string();
  };
  EXPECT_EQ(trend("2026-10"), "[]") << "nothing billed yet";
  auto config = LoadGatewayConfig(own.dir / "config.json");
  ASSERT_TRUE(config);
  auto store = app::OpenStateStore(*config);
  ASSERT_TRUE(store);
  auto add = [&](std::string patient, std::string month, LedgerKind kind, std::int64_t cents,
                 std::string family = "ccm", std::optional<std::int64_t> supersedes = {}) {
    LedgerRow row;
    row.supersedes = supersedes;
    row.revision = supersedes ? 2 : 1;
    row.patient = std::move(patient);
    row.month = std::move(month);
    row.family = std::move(family);
    row.kind = kind;
    row.program = kind == LedgerKind::kVoid ? "" : "CCM";
    row.lines_json = "[]";
    row.evidence_json = "{}";
    row.amount_cents = cents;
    row.fingerprint = fmt::format("{}-{}-{}", row.patient, row.month, ToCode(kind));
    auto id = (*store)->AddLedgerEntry(row);
    EXPECT_TRUE(id) << id.error().message;
    return id ? *id : 0;
  };
  add("Patient/a", "2026-08", LedgerKind::kCharge, 6049);
  add("Patient/b", "2026-08", LedgerKind::kCharge, 6049);
  add("Patient/b", "2026-08", LedgerKind::kCharge, 1000,
      "ccm-complex");  // a second family, same patient
  add("Patient/c", "2026-08", LedgerKind::kVoid, 0, "pcm");
  std::int64_t first = add("Patient/a", "2026-10", LedgerKind::kCharge, 6049);
  add("Patient/a", "2026-10", LedgerKind::kAdjustment, 8000, "ccm",
      first);                                             // supersedes the charge
  add("Patient/z", "2025-10", LedgerKind::kCharge, 100);  // the 13th month before 2026-10: outside
  add("Patient/y", "2025-09", LedgerKind::kCharge, 100);  // and the 13th before 2026-09
  EXPECT_EQ(trend("2026-10"), R"([{"month":"2026-08","patients":2,"billed":130.98},)"
                              R"({"month":"2026-09","patients":0,"billed":0.00},)"
                              R"({"month":"2026-10","patients":1,"billed":80.00}])");
  // Up to 2026-09 the window starts at 2025-10, which has an entry: the trend starts there.
  std::string september = trend("2026-09");
  EXPECT_TRUE(september.starts_with(R"([{"month":"2025-10","patients":1,"billed":1.00},)"
                                    R"({"month":"2025-11","patients":0,"billed":0.00},)"))
      << september;
  EXPECT_TRUE(september.ends_with(R"({"month":"2026-08","patients":2,"billed":130.98},)"
                                  R"({"month":"2026-09","patients":0,"billed":0.00}])"))
      << september;
  EXPECT_EQ(std::count(september.begin(), september.end(), '{'), 12);
}

}  // namespace
}  // namespace ccm::gateway::server
