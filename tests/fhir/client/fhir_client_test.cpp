// The FHIR REST client against a real server on loopback (tests/server/: Medplum's router).
#include "fhir/client/fhir_client.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <set>

#include "test_server.h"
#include "test_util.h"

namespace ccm::fhir {
namespace {

using ccm::testing::SourceDir;
using ccm::testing::TestFhirServer;

class FhirClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new TestFhirServer(
        {SourceDir() / "samples" / "synthea-g10-2pt", SourceDir() / "samples" / "activity"});
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    server_->Send("DELETE", "/__admin/faults");
    server_->Send("POST", "/__admin/auth", R"({"mode": "none"})");
  }
  static FhirClient Client(int attempts = 3, bool server_diagnostics = false,
                           std::shared_ptr<TokenSource> auth = nullptr) {
    FhirClientOptions o;
    o.base_url = server_->base() + "/";  // a trailing slash is tolerated
    o.retry.max_attempts = attempts;
    o.retry.initial_backoff = std::chrono::milliseconds(5);
    o.server_diagnostics = server_diagnostics;
    return FhirClient(o, std::move(auth));
  }
  static TestFhirServer* server_;  // one server for the suite (starting node takes ~1.5 s)
};
TestFhirServer* FhirClientTest::server_ = nullptr;

TEST_F(FhirClientTest, SearchFollowsEveryPageExactlyOnce) {
  FhirClient c = Client();
  std::set<std::string> ids;
  std::size_t pages = 0, entries = 0;
  Status s = c.Search("Encounter", {{"_count", "7"}}, [&](json::Value& bundle, const PageInfo& p) {
    EXPECT_EQ(p.number, ++pages);
    EXPECT_TRUE(p.response->date.has_value()) << "the server's Date header is read";
    for (const json::Value& e : bundle["entry"].array()) {
      ids.emplace(e["resource"]["id"].str());
      ++entries;
    }
    return Status{};
  });
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(ids.size(), entries) << "no entry twice";
  // All of them: compare with one big page.
  auto all = c.Get("Encounter?_count=100000");
  ASSERT_TRUE(all);
  EXPECT_EQ(entries, all->body["entry"].size());
  EXPECT_EQ(pages, (entries + 6) / 7);
  EXPECT_GT(c.stats().bytes, 0u);
}

TEST_F(FhirClientTest, AHandlerThatStopsEndsThePagingAndFewPagesAreFetchedAhead) {
  // Pages are fetched ahead of the handler (a pipeline of up to 4): when the handler fails on
  // page 2, the failure is returned, no further page is handed over, and the fetching stops
  // instead of running through the whole result set.
  server_->Send("DELETE", "/__admin/requests");
  FhirClient c = Client();
  std::size_t handled = 0;
  Status s = c.Search("Encounter", {{"_count", "2"}}, [&](json::Value&, const PageInfo& p) {
    ++handled;
    if (p.number == 2) return Status(MakeError(Errc::kIo, "the store is full"));
    return Status{};
  });
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().message, "the store is full");
  EXPECT_EQ(handled, 2u);
  auto all = c.Get("Encounter?_count=100000");
  ASSERT_TRUE(all);
  ASSERT_GT(all->body["entry"].size(), 2u * 10) << "enough pages that stopping is visible";
  std::size_t fetched = 0;
  json::Value requests = server_->Requests();
  for (const json::Value& r : requests.array()) {
    if (r["url"].str().find("_count=2") != std::string_view::npos) ++fetched;
  }
  EXPECT_GE(fetched, 2u);
  EXPECT_LE(fetched, 2u + 4u + 1u) << "at most the pipeline's depth beyond the failed page";
}

TEST_F(FhirClientTest, PagingEndsOnAnEmptyPageThatLinksFurtherAndAtThePageLimit) {
  server_->Faults(R"([{"match": "GET /fhir/R4/Encounter?", "kind": "empty-next", "times": 1000}])");
  FhirClient c = Client();
  std::size_t pages = 0;
  Status s = c.SearchRaw("Encounter", {{"_count", "5"}}, [&](FhirResponse&, const PageInfo&) {
    ++pages;
    return Status{};
  });
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("page 1 has no entries but links a next page"),
            std::string::npos)
      << s.error().message;
  EXPECT_EQ(pages, 0u) << "the empty page is not handed over as if it were data";
  server_->Send("DELETE", "/__admin/faults");

  FhirClientOptions o;
  o.base_url = server_->base();
  o.max_pages = 3;
  FhirClient limited(o, nullptr);
  pages = 0;
  s = limited.Search("Encounter", {{"_count", "2"}}, [&](json::Value&, const PageInfo&) {
    ++pages;
    return Status{};
  });
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("more than 3 pages in one search"), std::string::npos)
      << s.error().message;
  EXPECT_EQ(pages, 2u) << "pages before the one that would exceed the limit were handled";
}

TEST_F(FhirClientTest, ReadHistoryAndCapabilities) {
  FhirClient c = Client();
  auto cs = c.Capabilities();
  ASSERT_TRUE(cs) << cs.error().message;
  EXPECT_EQ((*cs)["fhirVersion"].str(), "4.0.1");
  auto practitioner = c.Read("Practitioner", "ccm-sample-rn");
  ASSERT_TRUE(practitioner) << practitioner.error().message;
  EXPECT_EQ((*practitioner)["id"].str(), "ccm-sample-rn");
  // A second version, then the instance history lists both, newest first.
  json::Value changed = *practitioner;
  changed.set("active", json::Value::Bool(false));
  HttpRequest put{"PUT",
                  "Practitioner/ccm-sample-rn",
                  {{"Content-Type", "application/fhir+json"}},
                  json::Serialize(changed)};
  auto updated = c.Execute(put, true);
  ASSERT_TRUE(updated) << updated.error().message;
  std::vector<std::string> versions;
  Status h = c.History("Practitioner", "ccm-sample-rn", std::nullopt,
                       [&](json::Value& bundle, const PageInfo&) {
                         for (const json::Value& e : bundle["entry"].array()) {
                           versions.emplace_back(e["resource"]["meta"]["versionId"].str());
                         }
                         return Status{};
                       });
  ASSERT_TRUE(h) << h.error().message;
  ASSERT_GE(versions.size(), 2u);
  EXPECT_EQ(versions.front(), updated->body["meta"]["versionId"].str());
  auto missing = c.Read("Practitioner", "no-such-id");
  ASSERT_FALSE(missing);
  EXPECT_TRUE(missing.error().is(Errc::kNotFound)) << missing.error().message;
  EXPECT_NE(
      missing.error().message.find("GET " + server_->base() + "/Practitioner/no-such-id: HTTP 404"),
      std::string::npos)
      << missing.error().message;
}

TEST_F(FhirClientTest, RetriesWhatIsTransientAndNothingElse) {
  FhirClient c = Client(3);
  server_->ClearRequests();
  server_->Faults(R"([{"match": "GET /fhir/R4/Patient", "kind": "status", "status": 503},
                      {"match": "GET /fhir/R4/Patient", "kind": "drop"}])");
  auto ok = c.Get("Patient?_count=1");
  ASSERT_TRUE(ok) << ok.error().message;
  // 503, the dropped connection, then the answer. (A connection that dies on reuse is re-sent by
  // libcurl itself; either way the caller sees one success.)
  EXPECT_EQ(server_->Requests().size(), 3u);
  EXPECT_GE(c.stats().retries, 1u);

  server_->Faults(
      R"([{"match": "GET /fhir/R4/Patient", "kind": "status", "status": 503, "times": 5}])");
  auto failed = c.Get("Patient?_count=1");
  ASSERT_FALSE(failed);
  EXPECT_TRUE(failed.error().is(Errc::kServerError));
  EXPECT_NE(failed.error().message.find("gave up after 3 attempt(s)"), std::string::npos);
  EXPECT_EQ(failed.error().message.find("_count"), std::string::npos) << "no query in messages";

  // A POST is not idempotent: no retry after a 500 (it may have been applied), but after 503.
  server_->Send("DELETE", "/__admin/faults");
  server_->Faults(R"([{"match": "POST /fhir/R4/Basic", "kind": "status", "status": 500}])");
  HttpRequest post{"POST",
                   "Basic",
                   {{"Content-Type", "application/fhir+json"}},
                   R"({"resourceType": "Basic", "code": {"text": "x"}})"};
  std::size_t before = c.stats().requests;
  auto p = c.Execute(post, false);
  ASSERT_FALSE(p);
  EXPECT_EQ(c.stats().requests - before, 1u);
}

TEST_F(FhirClientTest, GzipIsAcceptedAndDecoded) {
  FhirClient c = Client();
  server_->ClearRequests();
  auto r = c.Get("Encounter?_count=50");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->body["resourceType"].str(), "Bundle");
  json::Value log = server_->Requests();
  ASSERT_EQ(log.size(), 1u);
  EXPECT_NE(std::string(log[0]["acceptEncoding"].str()).find("gzip"), std::string::npos);
}

// A server's free text (it echoes what it was sent: patient data) stays out of error messages
// unless asked for; the codes, the status and how much was withheld are always there.
TEST_F(FhirClientTest, ServerDiagnosticsAreWithheldUnlessAskedFor) {
  const std::string fault = R"([{"match": "GET /fhir/R4/Patient", "kind": "status", "status": 400,
      "body": {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "invalid",
         "details": {"coding": [{"system": "http://example.org/errors", "code": "E17",
                                 "display": "name"}], "text": "no Patient named Jane Doe"},
         "diagnostics": "name=Jane Doe, birthdate=1950-02-03 matched 2"}]}}])";
  server_->Faults(fault);
  auto hidden = Client(1).Get("Patient?name=Jane");
  ASSERT_FALSE(hidden);
  EXPECT_EQ(hidden.error().message,
            "GET " + server_->base() +
                "/Patient: HTTP 400: error invalid [http://example.org/errors|E17] (server "
                "diagnostics withheld, 74 characters; set logging.serverDiagnostics to true to log "
                "them)");
  server_->Faults(fault);
  auto shown = Client(1, true).Get("Patient?name=Jane");
  ASSERT_FALSE(shown);
  EXPECT_NE(shown.error().message.find(
                "HTTP 400: error invalid: name=Jane Doe, birthdate=1950-02-03 matched 2"),
            std::string::npos)
      << shown.error().message;
}

TEST_F(FhirClientTest, TokenEndpointErrorDescriptionsAreWithheldUnlessAskedFor) {
  server_->Auth(R"({"mode": "client-credentials", "clientId": "gw", "clientSecret": "right"})");
  for (bool diagnostics : {false, true}) {
    OAuthClientOptions o;
    o.token_url = server_->origin() + "/auth/token";
    o.client_id = "gw";
    o.server_diagnostics = diagnostics;
    FhirClient c = Client(1, diagnostics, ClientCredentials(o, "wrong"));
    auto r = c.Get("Patient?_count=1");
    ASSERT_FALSE(r);
    const std::string& m = r.error().message;
    EXPECT_NE(m.find("refused the client (HTTP 401): invalid_client"), std::string::npos) << m;
    if (diagnostics) {
      EXPECT_NE(m.find("invalid_client: wrong client id or secret"), std::string::npos) << m;
    } else {
      EXPECT_EQ(m.find("wrong client id"), std::string::npos) << m;
      EXPECT_NE(m.find("(error_description withheld, 25 characters; set "
                       "logging.serverDiagnostics to true to log it)"),
                std::string::npos)
          << m;
    }
    EXPECT_EQ(m.find("wrong\""), std::string::npos) << "never the secret";
  }
}

}  // namespace
}  // namespace ccm::fhir
