// `ccm-gateway bill` run as a user runs it -- the built binary, a config file, a SQLite state file
// -- against a real FHIR server on loopback (the EHR) and a second one (the payer's endpoint):
// care plans created and updated without clobbering clinicians' edits, the ledger and ChargeItems
// exactly once across reruns and crashes, corrections as adjustments and voids, failures kept to
// the patient they concern.
#include <chrono>
#include <cstdlib>
#include <map>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include "fhir/json.h"
#include "gateway/billing/ledger.h"
#include "gateway/io/files.h"
#include "gateway/store/locks.h"
#include "gateway/store/sqlite_state_store.h"
#include "gateway/store/state_store.h"
#include "test_server.h"
#include "test_util.h"

namespace ccm::gateway {
namespace {

// Runs `sql` on a state file (what a test needs the store to say that no command makes it say).
void ExecSqlOn(const std::filesystem::path& file, const char* sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(file.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  std::string message = err != nullptr ? err : "";
  sqlite3_free(err);
  sqlite3_close(db);
  ASSERT_EQ(rc, SQLITE_OK) << message;
}

using ccm::testing::GatewayRun;
using ccm::testing::ReadFile;
using ccm::testing::SourceDir;
using ccm::testing::TempDir;
using ccm::testing::TestFhirServer;
using ccm::testing::WriteFile;
using fhir::json::Value;

// Sample patients of 2026-10 (samples/activity/README.md).
constexpr std::string_view kTwoCodes =
    "Patient/6a4160eb-a793-2f86-2302-378626f46cce";  // 99490+99439
constexpr std::string_view kOneCode =
    "Patient/fb7c882a-f897-e7c5-67e0-825e7fd55d15";  // 99490, 22 min
constexpr std::string_view kNotBillable = "Patient/7bc002fa-dc52-17d6-1563-fd8901826f7d";
constexpr int kBillablePatients = 5;
constexpr int kBillableCodes = 7;
using ccm::testing::Gateway;
std::vector<Value> Search(TestFhirServer& server, const std::string& query) {
  const Value b =
      server.Json("GET", "/fhir/R4/" + query + (query.find('?') == std::string::npos ? "?" : "&") +
                             "_count=1000");
  std::vector<Value> out;
  for (const auto& e : b["entry"].array()) out.push_back(e["resource"]);
  return out;
}

// Requests in the server's log whose "METHOD url" contains `needle`.
std::vector<Value> Logged(TestFhirServer& server, std::string_view method,
                          std::string_view needle) {
  std::vector<Value> out;
  Value log = server.Requests();  // kept alive: the loop reads into it
  for (const auto& r : log.array()) {
    if (r["method"].str() == method && r["url"].str().find(needle) != std::string_view::npos) {
      out.push_back(r);
    }
  }
  return out;
}

class BillTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ehr_ = std::make_unique<TestFhirServer>(ccm::testing::SampleInputs());
    payer_ = std::make_unique<TestFhirServer>();
    config_ = WriteConfig();
    GiveMbis();
  }

  // Claims need a patient identity: every sample patient gets a Medicare Beneficiary Identifier
  // (Synthea writes none).
  void GiveMbis() {
    int n = 0;
    for (Value p : Search(*ehr_, "Patient")) SetMbi(p, fmt::format("1EG4TE5MK{:02}", ++n));
  }
  void SetMbi(Value patient, const std::string& mbi) {
    Value ids = Value::MakeArray();
    for (const auto& id : patient["identifier"].array()) {
      if (id["system"].str() != "http://hl7.org/fhir/sid/us-mbi") ids.push_back(id);
    }
    if (!mbi.empty()) {
      auto id = fhir::json::Parse(
          fmt::format(R"({{"system":"http://hl7.org/fhir/sid/us-mbi","value":"{}"}})", mbi));
      ids.push_back(*id);
    }
    patient.set("identifier", std::move(ids));
    ehr_->Put(patient);
  }

  std::filesystem::path WriteConfig(const std::string& source_extra = "") {
    std::string json = fmt::format(R"({{
      "practice": {{"timeZone": "America/Chicago", "billingPractitioners": ["9999999991"]}},
      "billing": {{
        "feeScheduleYear": 2025,
        "provider": {{"reference": "Organization/sample-clinic", "name": "Sample Clinic", "npi": "1234567893"}},
        "payers": [{{"name": "medicare", "display": "Medicare Part B", "directory": "claims",
                     "endpoint": {{"baseUrl": "{}", "retry": {{"initialBackoffMs": 20, "maxBackoffSeconds": 1}}}}}}]
      }},
      "sources": [{{"name": "ehr", "baseUrl": "{}", "pageSize": 100, "safetyMarginSeconds": 0,
                    "retry": {{"maxAttempts": 8, "initialBackoffMs": 20, "maxBackoffSeconds": 1}}{}}}],
      "writeBack": {{"carePlans": true, "chargeItems": true, "provenance": true,
                     "carePlanIdentifierSystem": "https://clinic.example/ccm-care-plan"}},
      "state": {{"path": "state.db"}}
    }})",
                                   payer_->base(), ehr_->base(), source_extra);
    WriteFile(dir_ / "config.json", json);
    return dir_ / "config.json";
  }

  // A full sync, which must succeed (it records the pull status bill checks). `extra`: e.g.
  // --allow-mass-delete after a test deleted a sizeable share of a type on the server.
  void Sync(const std::string& extra = "") {
    ehr_->AwaitWritesVisible();
    GatewayRun r =
        Gateway(fmt::format("sync --once --full --month 2026-10 --config {} --report {} {}",
                            config_.string(), (dir_ / "report.ndjson").string(), extra));
    ASSERT_EQ(r.status, 0) << r.err;
  }

  // An incremental sync (only what changed since the cursors), which must succeed.
  void SyncChanges() {
    ehr_->AwaitWritesVisible();
    GatewayRun r = Gateway(fmt::format("sync --once --month 2026-10 --config {} --report {}",
                                       config_.string(), (dir_ / "report.ndjson").string()));
    ASSERT_EQ(r.status, 0) << r.err;
  }

  // Records the last pull of `type` as `state` (what a sync that failed or died would leave).
  void RecordPull(std::string_view type, PullState state, std::string_view detail) {
    auto store = OpenSqliteStateStore(dir_ / "state.db");
    ASSERT_TRUE(store);
    ASSERT_TRUE((*store)->BeginPull("ehr", type, 99));
    if (state != PullState::kRunning) {
      ASSERT_TRUE((*store)->EndPull("ehr", type, 99, state, PullMode::kFull, detail));
    }
  }
  GatewayRun Bill(const std::string& extra = "") {
    return Gateway(fmt::format("bill --month 2026-10 --config {} {}", config_.string(), extra));
  }

  // The patient's care plans other than the gateway's become completed (as if the clinic had
  // none active), so that the gateway creates its own.
  void RetireCarePlans(std::string_view patient) {
    for (Value plan : Search(*ehr_, fmt::format("CarePlan?subject={}", patient))) {
      plan.set("status", Value::String("completed"));
      ehr_->Put(plan);
    }
  }

  std::vector<LedgerRow> Ledger(bool active_only = true) {
    auto store = OpenSqliteStateStore(dir_ / "state.db");
    EXPECT_TRUE(store);
    return *(*store)->LedgerEntries({.month = "2026-10",
                                     .revisions = active_only ? LedgerQuery::Revisions::kActive
                                                              : LedgerQuery::Revisions::kAll});
  }

  // Exactly one billable ChargeItem per patient-month-code, and the set of them.
  std::map<std::string, std::string> BillableChargeItems() {
    std::map<std::string, std::string> out;  // "patient code" -> identifier
    std::set<std::string> identifiers;
    for (const auto& ci : Search(*ehr_, "ChargeItem")) {
      std::string id(ci["identifier"][0]["value"].str());
      EXPECT_TRUE(identifiers.insert(id).second) << "two ChargeItems with identifier " << id;
      if (ci["status"].str() != "billable") continue;
      std::string key = fmt::format("{} {}", ci["subject"]["reference"].str(),
                                    ci["code"]["coding"][0]["code"].str());
      EXPECT_FALSE(out.contains(key)) << "two billable ChargeItems for " << key;
      out[key] = id;
    }
    return out;
  }

  // Requests to the payer other than reads (a bill run reads its CapabilityStatement).
  std::size_t PayerWrites() {
    std::size_t n = 0;
    Value log = payer_->Requests();
    for (const auto& req : log.array()) n += req["method"].str() == "GET" ? 0 : 1;
    return n;
  }

  std::vector<std::filesystem::path> ClaimFiles(std::string_view ext) {
    std::vector<std::filesystem::path> out;
    if (!std::filesystem::exists(dir_ / "claims")) return out;
    for (const auto& e : std::filesystem::directory_iterator(dir_ / "claims")) {
      if (e.path().extension() == ext) out.push_back(e.path());
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  std::vector<Value> Claims(const std::filesystem::path& file) {
    std::vector<Value> out;
    auto b = fhir::json::Parse(ReadFile(file));
    EXPECT_TRUE(b);
    for (const auto& e : (*b)["entry"].array()) {
      if (e["resource"]["resourceType"].str() == "Claim") out.push_back(e["resource"]);
    }
    return out;
  }

  void AddStaffMinutes(std::string_view patient, int minutes, std::string id) {
    auto enc = fhir::json::Parse(fmt::format(
        R"({{"resourceType":"Encounter","id":"{}","status":"finished",
        "class":{{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"VR"}},
        "type":[{{"coding":[{{"system":"http://www.ama-assn.org/go/cpt","code":"99490"}}]}}],
        "subject":{{"reference":"{}"}},
        "participant":[{{"individual":{{"reference":"Practitioner/ccm-sample-rn"}}}}],
        "period":{{"start":"2026-10-20T10:00:00-05:00","end":"2026-10-20T10:{:02}:00-05:00"}},
        "length":{{"value":{},"unit":"min","system":"http://unitsofmeasure.org","code":"min"}}}})",
        id, patient, minutes, minutes));
    ASSERT_TRUE(enc);
    ehr_->Put(*enc);
  }

  TempDir dir_;
  std::unique_ptr<TestFhirServer> ehr_, payer_;
  std::filesystem::path config_;
};

TEST_F(BillTest, BillingTheMonthTwiceWritesEverythingOnceAndThenNothing) {
  RetireCarePlans(kNotBillable);
  Sync();
  GatewayRun first = Bill();
  ASSERT_EQ(first.status, 0) << first.out << first.err;
  EXPECT_NE(first.out.find("ledger 5 new"), std::string::npos) << first.out;
  EXPECT_NE(first.out.find("511.73 USD"), std::string::npos) << first.out;

  auto ledger = Ledger();
  ASSERT_EQ(ledger.size(), static_cast<std::size_t>(kBillablePatients));
  for (const auto& e : ledger) {
    EXPECT_EQ(e.status, LedgerStatus::kSubmitted) << e.patient;
    EXPECT_EQ(e.kind, LedgerKind::kCharge);
  }
  auto charge_items = BillableChargeItems();
  EXPECT_EQ(charge_items.size(), static_cast<std::size_t>(kBillableCodes));
  EXPECT_TRUE(charge_items.contains(fmt::format("{} 99439", kTwoCodes)));
  // Every ChargeItem create was conditional on its identifier.
  for (const auto& r : Logged(*ehr_, "POST", "/fhir/R4/ChargeItem")) {
    EXPECT_TRUE(r["ifNoneExist"].str().starts_with("identifier=urn%3Accm-gateway%3Acharge-item%7C"))
        << fhir::json::Serialize(r);
  }
  // The payer: one claims file, its CSV, and the same Bundle posted once.
  auto files = ClaimFiles(".json");
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(Claims(files[0]).size(), static_cast<std::size_t>(kBillablePatients));
  // The samples' problems are SNOMED CT; the claims carry ICD-10-CM first (the map in mappings/).
  for (const auto& claim : Claims(files[0])) {
    ASSERT_GE(claim["diagnosis"].size(), 2u);
    for (const auto& dx : claim["diagnosis"].array()) {
      EXPECT_EQ(dx["diagnosisCodeableConcept"]["coding"][0]["system"].str(),
                "http://hl7.org/fhir/sid/icd-10-cm");
      EXPECT_EQ(dx["diagnosisCodeableConcept"]["coding"][1]["system"].str(),
                "http://snomed.info/sct");
    }
  }
  ASSERT_EQ(ClaimFiles(".csv").size(), 1u);
  EXPECT_NE(ReadFile(ClaimFiles(".csv")[0]).find("TOTAL,,5 claim(s),,,7,511.73"),
            std::string::npos);
  auto posted = Search(*payer_, "Bundle");
  ASSERT_EQ(posted.size(), 1u);
  EXPECT_EQ(posted[0]["identifier"]["value"].str(), files[0].stem().string().substr(7));
  // The care plan for the patient without one: a draft, created conditionally, with Provenance.
  auto plans =
      Search(*ehr_, fmt::format("CarePlan?identifier=https://clinic.example/ccm-care-plan|{}",
                                kNotBillable.substr(8)));
  ASSERT_EQ(plans.size(), 1u);
  EXPECT_EQ(plans[0]["status"].str(), "draft");
  auto provenance = Search(*ehr_, "Provenance");
  ASSERT_EQ(provenance.size(), 1u);
  EXPECT_EQ(provenance[0]["target"][0]["reference"].str(),
            fmt::format("CarePlan/{}/_history/{}", plans[0]["id"].str(),
                        plans[0]["meta"]["versionId"].str()));

  // Again: nothing new anywhere.
  ehr_->ClearRequests();
  payer_->ClearRequests();
  std::string csv_before = ReadFile(ClaimFiles(".csv")[0]);
  GatewayRun second = Bill();
  ASSERT_EQ(second.status, 0) << second.out << second.err;
  EXPECT_NE(second.out.find("0 new, 0 adjusted, 0 voided, 0 withdrawn, 5 unchanged"),
            std::string::npos)
      << second.out;
  Value log = ehr_->Requests();
  for (const auto& r : log.array()) {
    EXPECT_EQ(r["method"].str(), "GET") << fhir::json::Serialize(r);
  }
  EXPECT_EQ(PayerWrites(), 0u) << "the payer is only asked what it supports";
  EXPECT_EQ(ClaimFiles(".json").size(), 1u);
  EXPECT_EQ(ReadFile(ClaimFiles(".csv")[0]), csv_before);
  EXPECT_EQ(Ledger(false).size(), static_cast<std::size_t>(kBillablePatients));
  EXPECT_EQ(BillableChargeItems(), charge_items);
}

TEST_F(BillTest, DryRunShowsThePlanAndWritesNothing) {
  RetireCarePlans(kNotBillable);
  Sync();
  ehr_->ClearRequests();
  GatewayRun r = Bill("--dry-run");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find(fmt::format("care plan  would-create   {}", kNotBillable)),
            std::string::npos)
      << r.out;
  EXPECT_NE(
      r.out.find(fmt::format("ledger     new            {} 2026-10 -> 99490x1 99439x1", kTwoCodes)),
      std::string::npos)
      << r.out;
  Value log = ehr_->Requests();
  for (const auto& req : log.array()) EXPECT_EQ(req["method"].str(), "GET");
  // The payer's endpoint is only read: an empty ledger first checks for claims already sent.
  Value payer_log = payer_->Requests();
  for (const auto& req : payer_log.array()) EXPECT_EQ(req["method"].str(), "GET");
  EXPECT_TRUE(Ledger(false).empty());
  EXPECT_TRUE(ClaimFiles(".json").empty());
  // `--dry-run=true` is the same plan; `--dry-run=no` once ran dry too, and is now refused.
  GatewayRun spelled = Bill("--dry-run=true");
  EXPECT_EQ(spelled.status, 0) << spelled.err;
  EXPECT_EQ(spelled.out, r.out);
  GatewayRun no = Bill("--dry-run=no");
  EXPECT_EQ(no.status, 2);
  EXPECT_NE(no.err.find("--dry-run: takes no value, or =true or =false; got \"no\""),
            std::string::npos)
      << no.err;
  EXPECT_TRUE(Ledger(false).empty());
  // `--dry-run=false` bills for real.
  GatewayRun real = Bill("--dry-run=false");
  EXPECT_EQ(real.status, 0) << real.err;
  EXPECT_NE(real.out.find("billed 2026-10:"), std::string::npos) << real.out;
  EXPECT_FALSE(Ledger(false).empty());
}

TEST_F(BillTest, CarePlanUpdatesSurviveAClinicianEditMadeBetweenReadAndWrite) {
  RetireCarePlans(kNotBillable);
  Sync();
  ASSERT_EQ(Bill().status, 0);
  std::string query = fmt::format("CarePlan?identifier=https://clinic.example/ccm-care-plan|{}",
                                  kNotBillable.substr(8));
  Value created = Search(*ehr_, query).at(0);
  std::size_t addresses = created["addresses"].size();

  // The clinician edits the plan in the EHR -- a note, an extension, a vendor element -- just
  // before the gateway's write; and the gateway has something to write: a new chronic condition.
  Value edited = created;
  edited.set("note", *fhir::json::Parse(R"([{"text":"Patient prefers phone calls."}])"));
  edited.set(
      "_intent",
      *fhir::json::Parse(R"({"extension":[{"url":"http://ehr.example/src","valueString":"ui"}]})"));
  edited.set("vendorExtra", *fhir::json::Parse(R"({"score":2.75,"flags":[true,false]})"));
  edited.set("status", Value::String("active"));
  ehr_->Faults(fhir::json::Serialize(*fhir::json::Parse(
      fmt::format(R"([{{"match":"PUT /fhir/R4/CarePlan/{}","kind":"write-first","resource":{}}}])",
                  created["id"].str(), fhir::json::Serialize(edited)))));
  auto condition = fhir::json::Parse(fmt::format(
      R"({{"resourceType":"Condition","id":"late-asthma","clinicalStatus":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}}]}},
      "verificationStatus":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/condition-ver-status","code":"confirmed"}}]}},
      "code":{{"coding":[{{"system":"http://snomed.info/sct","code":"195967001"}}]}},
      "subject":{{"reference":"{}"}},"onsetDateTime":"2020-01-01"}})",
      kNotBillable));
  ASSERT_TRUE(condition);
  ehr_->Put(*condition);
  Sync();
  ehr_->ClearRequests();
  GatewayRun r = Bill();
  ASSERT_EQ(r.status, 0) << r.out << r.err;

  auto puts = Logged(*ehr_, "PUT", fmt::format("/fhir/R4/CarePlan/{}", created["id"].str()));
  ASSERT_EQ(puts.size(), 2u);
  EXPECT_EQ(puts[0]["status"].number_text(), "412");  // the version read was no longer current
  EXPECT_EQ(puts[1]["status"].number_text(), "200");
  EXPECT_FALSE(puts[1]["ifMatch"].str().empty());
  EXPECT_NE(puts[0]["ifMatch"].str(), puts[1]["ifMatch"].str());
  // What the gateway sent keeps every element of the clinician's version it does not own,
  // exactly as the server held it.
  Value clinician = Search(*ehr_, fmt::format("CarePlan/{}/_history", created["id"].str())).at(1);
  ASSERT_EQ(clinician["note"][0]["text"].str(), "Patient prefers phone calls.");
  Value sent = *fhir::json::Parse(puts[1]["body"].str());
  for (const auto& m : clinician.object()) {
    if (m.key == "addresses" || m.key == "extension" || m.key == "meta") continue;
    EXPECT_EQ(fhir::json::Serialize(sent[m.key]), fhir::json::Serialize(m.value)) << m.key;
  }
  for (const auto& m : sent.object()) {
    EXPECT_TRUE(clinician.find(m.key) != nullptr) << "the gateway added " << m.key;
  }
  Value now = Search(*ehr_, query).at(0);
  EXPECT_EQ(now["status"].str(), "active");  // the clinician's activation stands
  EXPECT_EQ(now["addresses"].size(), addresses + 1);
  EXPECT_EQ(now["addresses"][addresses]["reference"].str(), "Condition/late-asthma");

  // Nothing changed since: no write (no version churn).
  ehr_->ClearRequests();
  ASSERT_EQ(Bill().status, 0);
  EXPECT_TRUE(Logged(*ehr_, "PUT", "/fhir/R4/CarePlan").empty());
  EXPECT_TRUE(Logged(*ehr_, "POST", "/fhir/R4/CarePlan").empty());
}

TEST_F(BillTest, LateDataBecomesAnAdjustmentAndAVoidIsProposedThenConfirmedBySync) {
  Sync();
  ASSERT_EQ(Bill().status, 0);
  auto before = BillableChargeItems();
  ASSERT_EQ(before.size(), static_cast<std::size_t>(kBillableCodes));
  auto first_file = ClaimFiles(".json");
  ASSERT_EQ(first_file.size(), 1u);

  // An encounter entered after the month was billed: 22 + 20 minutes = 99490 + 99439.
  AddStaffMinutes(kOneCode, 20, "late-call");
  // The consent of another billed patient turns out not to exist (deleted as entered in error).
  for (const auto& c : Search(*ehr_, fmt::format("Consent?patient={}", kTwoCodes))) {
    ehr_->Send("DELETE", fmt::format("/fhir/R4/Consent/{}", c["id"].str()));
  }
  Sync("--allow-mass-delete");  // one Consent of ten is more than 5 %
  GatewayRun r = Bill();
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  // The upward adjustment goes at once; the void is only proposed in the run that first sees it.
  EXPECT_NE(r.out.find("0 new, 1 adjusted, 0 voided, 0 withdrawn, 3 unchanged, 1 held"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("held: 1 void(s)/downward adjustment(s) proposed; confirmed by the next "
                       "complete `ccm-gateway sync --full` or `ccm-gateway ledger --approve ID`"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("no longer billable: no-consent"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("Patient/"), std::string::npos) << "no patient ids: " << r.out;
  std::map<std::string, LedgerRow> by_patient;
  for (auto& e : Ledger()) by_patient[e.patient] = e;
  EXPECT_EQ(by_patient[std::string(kOneCode)].kind, LedgerKind::kAdjustment);
  EXPECT_EQ(by_patient[std::string(kTwoCodes)].kind,
            LedgerKind::kCharge);  // untouched while proposed
  EXPECT_EQ(by_patient[std::string(kTwoCodes)].status, LedgerStatus::kSubmitted);
  EXPECT_TRUE(BillableChargeItems().contains(fmt::format("{} 99490", kTwoCodes)));
  ASSERT_EQ(ClaimFiles(".json").size(), 2u);
  for (const auto& f : ClaimFiles(".json")) {
    for (const auto& c : Claims(f)) EXPECT_EQ(c["status"].str(), "active");
  }
  // The same run again: still held (no sync since), nothing sent.
  payer_->ClearRequests();
  GatewayRun held = Bill();
  ASSERT_EQ(held.status, 0) << held.err;
  EXPECT_NE(held.out.find("0 voided, 0 withdrawn, 4 unchanged, 1 held"), std::string::npos)
      << held.out;
  EXPECT_EQ(PayerWrites(), 0u) << "the payer is only asked what it supports";

  // A complete incremental sync does not re-read what was lost or wrongly removed: it confirms
  // nothing either.
  SyncChanges();
  GatewayRun incremental = Bill();
  ASSERT_EQ(incremental.status, 0) << incremental.err;
  EXPECT_NE(incremental.out.find("0 voided, 0 withdrawn, 4 unchanged, 1 held"), std::string::npos)
      << incremental.out;

  // Every type pulled completely in full after the proposal, but then a pull failed: a run
  // billing from incomplete data (--allow-incomplete) confirms nothing by the data.
  Sync();
  RecordPull("Condition", PullState::kFailed, "HTTP 503");
  GatewayRun forced = Bill("--allow-incomplete");
  ASSERT_EQ(forced.status, 0) << forced.err;
  EXPECT_NE(forced.out.find("0 voided, 0 withdrawn, 4 unchanged, 1 held"), std::string::npos)
      << forced.out;
  // A complete full sync after the proposal, and the engine still says the same: carried out.
  Sync();
  GatewayRun confirmed = Bill();
  ASSERT_EQ(confirmed.status, 0) << confirmed.out << confirmed.err;
  EXPECT_NE(confirmed.out.find("0 new, 0 adjusted, 1 voided, 0 withdrawn, 4 unchanged, 0 held"),
            std::string::npos)
      << confirmed.out;
  EXPECT_NE(confirmed.out.find("confirmed: proposal 1 (void of ledger entry "), std::string::npos)
      << confirmed.out;
  auto ledger = Ledger();
  ASSERT_EQ(ledger.size(), static_cast<std::size_t>(kBillablePatients));
  by_patient.clear();
  for (auto& e : ledger) by_patient[e.patient] = e;
  EXPECT_EQ(by_patient[std::string(kOneCode)].revision, 2);
  EXPECT_EQ(by_patient[std::string(kTwoCodes)].kind, LedgerKind::kVoid);
  // Nothing already submitted was changed: the earlier revisions are superseded, intact.
  EXPECT_EQ(Ledger(false).size(), static_cast<std::size_t>(kBillablePatients + 2));

  auto after = BillableChargeItems();
  EXPECT_FALSE(after.contains(fmt::format("{} 99490", kTwoCodes)));
  EXPECT_FALSE(after.contains(fmt::format("{} 99439", kTwoCodes)));
  EXPECT_EQ(after.at(fmt::format("{} 99490", kOneCode)),
            fmt::format("{}-2026-10-99490-r2", kOneCode.substr(8)));
  EXPECT_TRUE(after.contains(fmt::format("{} 99439", kOneCode)));
  EXPECT_EQ(after.size(), static_cast<std::size_t>(kBillableCodes - 2 + 1));
  // The withdrawn revision is still on the server, marked entered-in-error.
  auto old = Search(
      *ehr_, fmt::format("ChargeItem?identifier=urn:ccm-gateway:charge-item|{}-2026-10-99490-r1",
                         kOneCode.substr(8)));
  ASSERT_EQ(old.size(), 1u);
  EXPECT_EQ(old[0]["status"].str(), "entered-in-error");

  // The payer got three batches: the month, a corrected claim pointing at the prior one, a
  // cancellation (file names come from their content, so they are found by it).
  auto files = ClaimFiles(".json");
  ASSERT_EQ(files.size(), 3u);
  std::map<std::string, Value> by_status;
  for (const auto& f : files) {
    if (f == first_file[0]) continue;
    auto claims = Claims(f);
    ASSERT_EQ(claims.size(), 1u) << f;
    by_status[std::string(claims[0]["status"].str())] = claims[0];
    if (claims[0]["status"].str() == "cancelled") {
      std::string csv = ReadFile(std::filesystem::path(f).replace_extension(".csv"));
      EXPECT_NE(csv.find(",void,"), std::string::npos);
      EXPECT_NE(csv.find(",-1,-60.49,"), std::string::npos) << csv;
    }
  }
  EXPECT_EQ(by_status["active"]["related"][0]["claim"]["identifier"]["value"].str(),
            fmt::format("{}-2026-10-r1", kOneCode.substr(8)));
  EXPECT_EQ(by_status["active"]["item"].size(), 2u);
  EXPECT_EQ(by_status["cancelled"]["identifier"][0]["value"].str(),
            fmt::format("{}-2026-10-r1", kTwoCodes.substr(8)));
  EXPECT_EQ(Search(*payer_, "Bundle").size(), 3u);
}

TEST_F(BillTest, OnePatientsFailureNeverBlocksTheRestAndIsRetriedNextRun) {
  // Exchanges time out after a second (the delay fault below holds one for 2.5 s).
  config_ = WriteConfig(R"(, "timeouts": {"totalSeconds": 1})");
  Sync();
  ehr_->Faults(R"([
    {"match": "POST /fhir/R4/ChargeItem", "kind": "status", "status": 400,
     "body": {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "invalid",
              "diagnostics": "ChargeItem.performer: unknown Organization"}]}},
    {"match": "POST /fhir/R4/ChargeItem", "kind": "status", "status": 503, "times": 2},
    {"match": "POST /fhir/R4/ChargeItem", "kind": "apply-then-drop"},
    {"match": "POST /fhir/R4/ChargeItem", "kind": "delay", "delayMs": 2500}
  ])");
  GatewayRun r = Bill();
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("HTTP 400: error invalid (server diagnostics withheld"), std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find("unknown Organization"), std::string::npos) << "server text stays out";
  EXPECT_NE(r.err.find("problem: charge-items 2026-10 ledger entry "), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("Patient/"), std::string::npos) << "no patient ids in logs: " << r.err;
  EXPECT_NE(r.out.find("deliveries 9 done, 1 failed"), std::string::npos) << r.out;
  std::map<std::string, std::size_t> faults;
  Value log = ehr_->Requests();
  for (const auto& req : log.array()) ++faults[std::string(req["fault"].str())];
  EXPECT_EQ(faults["status"], 3u);
  EXPECT_EQ(faults["apply-then-drop"], 1u);
  EXPECT_EQ(faults["delay"], 1u);  // timed out after 1 s and retried
  auto ledger = Ledger();
  std::vector<LedgerRow> pending;
  for (const auto& e : ledger) {
    if (e.status == LedgerStatus::kPending) pending.push_back(e);
  }
  // Only the failed patient; the 503s, the lost answer and the timeout were retried.
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_NE(r.err.find(fmt::format("ledger entry {}:", pending[0].id)), std::string::npos);
  // Its first line was refused, so none of its lines went; everyone else's did, and the dropped
  // answer did not make a duplicate (the conditional create found the first).
  EXPECT_EQ(BillableChargeItems().size(), kBillableCodes - LedgerLines(pending[0]).size());

  GatewayRun again = Bill();
  ASSERT_EQ(again.status, 0) << again.out << again.err;
  EXPECT_NE(again.out.find("deliveries 1 done, 0 failed"), std::string::npos) << again.out;
  EXPECT_EQ(BillableChargeItems().size(), static_cast<std::size_t>(kBillableCodes));
  for (const auto& e : Ledger()) EXPECT_EQ(e.status, LedgerStatus::kSubmitted);
}

// The claims file is written but the payer's endpoint refuses the Bundle: the delivery failed,
// and the log says the file is already there; the next run sends the same again.
TEST_F(BillTest, AClaimsFileWrittenButNotSentIsSaidAndSentAgain) {
  Sync();
  payer_->Faults(R"([{"match": "POST /fhir/R4/Bundle", "kind": "status", "status": 400}])");
  GatewayRun r = Bill();
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  auto files = ClaimFiles(".json");
  ASSERT_EQ(files.size(), 1u);
  EXPECT_NE(r.err.find(fmt::format("claims file {} written, but sending to the endpoint failed",
                                   files[0].string())),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("the next bill run sends it again"), std::string::npos) << r.err;
  std::string first = ReadFile(files[0]);
  EXPECT_TRUE(Search(*payer_, "Bundle").empty());

  GatewayRun again = Bill();
  ASSERT_EQ(again.status, 0) << again.out << again.err;
  EXPECT_EQ(ClaimFiles(".json"), files);
  EXPECT_EQ(ReadFile(files[0]), first) << "the same file, not a second batch";
  EXPECT_EQ(Search(*payer_, "Bundle").size(), 1u);
  for (const auto& e : Ledger()) EXPECT_EQ(e.status, LedgerStatus::kSubmitted);
}

// A server that does not declare conditional create would turn a retried create into a second
// ChargeItem or claim: bill refuses before it writes anything there.
TEST_F(BillTest, AServerWithoutConditionalCreateIsRefusedBeforeAnythingIsWritten) {
  Sync();
  auto without = [](TestFhirServer& server, std::string_view type) {
    Value cs = server.Json("GET", "/fhir/R4/metadata");
    Value resources = Value::MakeArray();
    for (const Value& r : cs["rest"][0]["resource"].array()) {
      Value copy = r;
      if (copy["type"].str() == type) copy.erase("conditionalCreate");
      resources.push_back(std::move(copy));
    }
    Value rest = cs["rest"][0];
    rest.set("resource", std::move(resources));
    cs.set("rest", Value::MakeArray({std::move(rest)}));
    server.Faults(fmt::format(R"([{{"match": "GET /fhir/R4/metadata", "kind": "status",
                                    "status": 200, "times": 10, "body": {}}}])",
                              fhir::json::Serialize(cs)));
  };
  ehr_->ClearRequests();
  without(*ehr_, "ChargeItem");
  GatewayRun r = Bill();
  EXPECT_EQ(r.status, 2) << r.out << r.err;
  EXPECT_NE(r.err.find("writeBack.target \"ehr\": the server's CapabilityStatement does not "
                       "declare conditionalCreate for ChargeItem"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("set writeBack.requireConditionalCreate to false"), std::string::npos);
  EXPECT_NE(r.err.find("nothing was written"), std::string::npos);
  ehr_->Send("DELETE", "/__admin/faults");

  without(*payer_, "Bundle");
  GatewayRun p = Bill();
  EXPECT_EQ(p.status, 2) << p.out << p.err;
  EXPECT_NE(p.err.find("billing.payers[0].endpoint (medicare): the server's CapabilityStatement "
                       "does not declare conditionalCreate for Bundle"),
            std::string::npos)
      << p.err;
  EXPECT_TRUE(Ledger(false).empty());
  EXPECT_TRUE(ClaimFiles(".json").empty());
  Value log = ehr_->Requests();
  for (const auto& req : log.array()) EXPECT_EQ(req["method"].str(), "GET") << req["url"].str();
  EXPECT_TRUE(Search(*ehr_, "ChargeItem").empty());
  payer_->Send("DELETE", "/__admin/faults");
  GatewayRun ok = Bill();
  EXPECT_EQ(ok.status, 0) << ok.out << ok.err;
}

// Two CarePlans with the gateway's identifier for one patient: that patient's plan is a problem
// for a person to settle, and the log says so without the patient id (the audit record has it).
TEST_F(BillTest, TwoGatewayCarePlansForOnePatientAreAProblemNamedWithoutThePatient) {
  RetireCarePlans(kNotBillable);  // the gateway creates its plan for this patient
  Sync();
  ASSERT_EQ(Bill().status, 0);
  std::optional<Value> managed;
  std::string id;
  for (const Value& plan : Search(*ehr_, "CarePlan?_count=1000")) {
    for (const Value& i : plan["identifier"].array()) {
      if (i["system"].str() == "https://clinic.example/ccm-care-plan" && !managed) {
        managed = plan;
        id = std::string(i["value"].str());
      }
    }
  }
  ASSERT_TRUE(managed) << "bill created the gateway's CarePlans";
  Value copy = *managed;
  copy.erase("id");
  copy.erase("meta");
  ASSERT_LT(ehr_->Send("POST", "/fhir/R4/CarePlan", fhir::json::Serialize(copy)).status, 300);
  ASSERT_EQ(Gateway(fmt::format("sync --once --month 2026-10 --config {} --report {}",
                                config_.string(), (dir_ / "report.ndjson").string()))
                .status,
            0);
  GatewayRun r = Bill();
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("2 CarePlans carry the gateway's identifier "
                       "(https://clinic.example/ccm-care-plan|<patient id>) of one patient"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find(id), std::string::npos) << "no patient id in the log: " << r.err;
}

// The CarePlan was written but its Provenance was refused: a problem (exit 1), not a silent gap;
// and a Provenance of a version is created conditionally, so a retried POST makes no second one.
TEST_F(BillTest, AProvenanceThatWasNotWrittenIsAProblem) {
  RetireCarePlans(kNotBillable);
  Sync();
  ehr_->ClearRequests();
  ehr_->Faults(R"([{"match": "POST /fhir/R4/Provenance", "kind": "status", "status": 422}])");
  GatewayRun r = Bill();
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("problem: care plan CarePlan/"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("written, but its Provenance was not written: "), std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find("Patient/"), std::string::npos) << r.err;
  Value log = ehr_->Requests();
  std::size_t conditional = 0;
  for (const auto& req : log.array()) {
    if (req["method"].str() == "POST" && req["url"].str().ends_with("/Provenance")) {
      EXPECT_TRUE(req["ifNoneExist"].str().starts_with("target=CarePlan%2F"))
          << fhir::json::Serialize(req);
      ++conditional;
    }
  }
  EXPECT_EQ(conditional, 1u);
  GatewayRun audit = Gateway(fmt::format("ledger --config {} --audit", config_.string()));
  EXPECT_NE(audit.out.find("\"action\":\"provenance-failed\""), std::string::npos) << audit.out;
}

TEST_F(BillTest, AnUnreachableEhrIsReportedAndTheLedgerStillRecordsTheMonth) {
  Sync();
  // A bill run has finished on this state file (a month with nothing billable), so an empty
  // ledger is known not to be a new state file beside claims already made.
  GatewayRun september = Gateway(fmt::format("bill --month 2026-09 --config {}", config_.string()));
  ASSERT_EQ(september.status, 0) << september.out << september.err;
  ASSERT_TRUE(Ledger(false).empty());
  ehr_->Shutdown();  // the EHR goes away after the sync
  GatewayRun r = Bill();
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("problem: care plan (audit record "), std::string::npos) << r.err;
  // The first ChargeItem write finds the server gone; the others are not tried one by one.
  EXPECT_NE(r.err.find("ledger entry 2: not tried: "), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("Patient/"), std::string::npos) << "no patient ids in logs: " << r.err;
  EXPECT_NE(r.err.find("warning: writeBack.target \"ehr\": its CapabilityStatement could not be "
                       "read"),
            std::string::npos)
      << r.err;
  // The audit log has the patient each failure concerns.
  GatewayRun audit = Gateway(fmt::format("ledger --config {} --audit", config_.string()));
  ASSERT_EQ(audit.status, 0);
  EXPECT_NE(audit.out.find("\"action\":\"error\",\"target\":\"Patient/"), std::string::npos)
      << audit.out;
  // The ledger and the payer outputs do not depend on the EHR being up.
  EXPECT_EQ(Ledger().size(), static_cast<std::size_t>(kBillablePatients));
  EXPECT_EQ(ClaimFiles(".json").size(), 1u);
}

TEST_F(BillTest, TheLedgerCommandListsEntriesAndRecordsAcknowledgements) {
  Sync();
  ASSERT_EQ(Bill().status, 0);
  GatewayRun list = Gateway(fmt::format("ledger --config {} --month 2026-10", config_.string()));
  ASSERT_EQ(list.status, 0) << list.err;
  std::vector<Value> rows;
  for (std::size_t start = 0, end; (end = list.out.find('\n', start)) != std::string::npos;
       start = end + 1) {
    auto v = fhir::json::Parse(list.out.substr(start, end - start));
    ASSERT_TRUE(v) << list.out;
    rows.push_back(std::move(*v));
  }
  ASSERT_EQ(rows.size(), static_cast<std::size_t>(kBillablePatients));
  EXPECT_EQ(rows[0]["status"].str(), "submitted");
  EXPECT_EQ(rows[0]["deliveries"].size(), 2u);
  EXPECT_EQ(rows[0]["deliveries"][1]["channel"].str(), "payer:medicare");
  std::string id(rows[0]["id"].number_text());
  GatewayRun ack =
      Gateway(fmt::format("ledger --config {} --acknowledge {}", config_.string(), id));
  ASSERT_EQ(ack.status, 0) << ack.err;
  EXPECT_NE(ack.out.find("\"status\":\"acknowledged\""), std::string::npos);
  // Twice is refused: only a submitted entry can be acknowledged.
  GatewayRun twice =
      Gateway(fmt::format("ledger --config {} --acknowledge {}", config_.string(), id));
  EXPECT_EQ(twice.status, 1);
  EXPECT_NE(twice.err.find("cannot become acknowledged"), std::string::npos) << twice.err;
  GatewayRun bad = Gateway(fmt::format("ledger --config {} --acknowledge x1", config_.string()));
  EXPECT_EQ(bad.status, 2);
  // An acknowledged entry is not touched by the next bill.
  ASSERT_EQ(Bill().status, 0);
  EXPECT_EQ(Ledger()[0].status, LedgerStatus::kAcknowledged);
}

TEST_F(BillTest, OnlyOneBillRunAtATimePerStateFile) {
  Sync();
  {
    auto held = FileLock::TryLock(dir_ / "state.db.bill-lock");  // another run, as it were
    ASSERT_TRUE(held) << held.error().message;
    GatewayRun r = Bill();
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("another `ccm-gateway bill` is running"), std::string::npos) << r.err;
    EXPECT_TRUE(Ledger(false).empty());
    EXPECT_FALSE(FileLock::TryLock(dir_ / "state.db.bill-lock"));  // exclusive in-process too
  }
  GatewayRun after = Bill();  // released with its holder
  EXPECT_EQ(after.status, 0) << after.err;
}

TEST_F(BillTest, AMonthThatHasNotEndedIsRefusedUnlessAskedFor) {
  Sync();
  GatewayRun r = Gateway(fmt::format("bill --month 2099-01 --config {}", config_.string()));
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("2099-01 has not ended in America/Chicago"), std::string::npos) << r.err;
  EXPECT_TRUE(Ledger(false).empty());
  GatewayRun open = Gateway(
      fmt::format("bill --month 2099-01 --config {} --open-month --dry-run", config_.string()));
  EXPECT_EQ(open.status, 0) << open.err;
}

TEST_F(BillTest, TheAuditLogRecordsEveryWriteWithItsVersionAndProvenance) {
  RetireCarePlans(kNotBillable);
  Sync();
  ASSERT_EQ(Bill().status, 0);
  GatewayRun audit = Gateway(fmt::format("ledger --config {} --audit", config_.string()));
  ASSERT_EQ(audit.status, 0) << audit.err;
  std::size_t plan_creates = 0, charge_creates = 0, bundles = 0;
  for (std::size_t start = 0, end; (end = audit.out.find('\n', start)) != std::string::npos;
       start = end + 1) {
    auto v = fhir::json::Parse(audit.out.substr(start, end - start));
    ASSERT_TRUE(v);
    std::string target((*v)["target"].str());
    if ((*v)["action"].str() != "create") continue;
    EXPECT_FALSE((*v)["version"].str().empty()) << target;
    if (target.starts_with("CarePlan/")) {
      ++plan_creates;
      EXPECT_TRUE((*v)["provenance"].str().starts_with("Provenance/"));
    }
    charge_creates += target.starts_with("ChargeItem/") ? 1 : 0;
    bundles += target.starts_with("Bundle/") ? 1 : 0;
  }
  EXPECT_EQ(plan_creates, 1u);
  EXPECT_EQ(charge_creates, static_cast<std::size_t>(kBillableCodes));
  EXPECT_EQ(bundles, 1u);
}

// ---- holds (docs/ccm-rules.md "Hold rules") ------------------------------------------------

std::vector<Value> NdjsonLines(const std::string& text) {
  std::vector<Value> out;
  for (std::size_t start = 0, end; (end = text.find('\n', start)) != std::string::npos;
       start = end + 1) {
    auto v = fhir::json::Parse(text.substr(start, end - start));
    EXPECT_TRUE(v) << text;
    if (v) out.push_back(std::move(*v));
  }
  return out;
}

TEST_F(BillTest, BillRefusesWhileASyncRunsOrWhenAPullWasNotComplete) {
  Sync();
  {
    auto sync = LockSync(dir_ / "state.db", std::chrono::milliseconds(0));  // a sync, as it were
    ASSERT_TRUE(sync) << sync.error().message;
    for (const char* extra : {"", "--dry-run"}) {
      GatewayRun r = Bill(extra);
      EXPECT_EQ(r.status, 1) << extra;
      EXPECT_NE(r.err.find(fmt::format("a sync is running on {} (pid {})",
                                       (dir_ / "state.db").string(), ::getpid())),
                std::string::npos)
          << r.err;
    }
  }
  RecordPull("Encounter", PullState::kFailed, "GET Encounter: HTTP 503 after 5 attempts");
  RecordPull("Consent", PullState::kRunning, "");  // a sync killed mid-pull
  RecordPull("Condition", PullState::kIncomplete, "Bundle.total said 40, the pages held 38");
  for (const char* extra : {"", "--dry-run"}) {
    GatewayRun r = Bill(extra);
    EXPECT_EQ(r.status, 1) << r.out << r.err;
    EXPECT_NE(r.err.find("refusing to bill 2026-10: the state store does not hold a complete pull"),
              std::string::npos)
        << r.err;
    EXPECT_NE(r.err.find("ehr/Encounter: failed since "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("(last complete pull finished "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("): GET Encounter: HTTP 503 after 5 attempts"), std::string::npos);
    EXPECT_NE(r.err.find("ehr/Consent: running since "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("a sync died mid-pull"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("ehr/Condition: incomplete since "), std::string::npos) << r.err;
    EXPECT_NE(
        r.err.find(fmt::format("Run `ccm-gateway sync --config {} --once`", config_.string())),
        std::string::npos)
        << r.err;
    EXPECT_NE(r.err.find("--allow-incomplete bills anyway"), std::string::npos);
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  EXPECT_TRUE(Ledger(false).empty());
  EXPECT_TRUE(ClaimFiles(".json").empty());
  EXPECT_TRUE(Search(*ehr_, "ChargeItem").empty());

  // Overridden: billed, and every entry written says from what.
  GatewayRun forced = Bill("--allow-incomplete");
  ASSERT_EQ(forced.status, 0) << forced.out << forced.err;
  EXPECT_NE(forced.err.find("warning: billing from incomplete data (--allow-incomplete)"),
            std::string::npos)
      << forced.err;
  EXPECT_NE(forced.out.find("ledger 5 new"), std::string::npos);
  for (const auto& e : Ledger()) {
    EXPECT_NE(e.allow_incomplete.find("ehr/Encounter: failed since "), std::string::npos)
        << e.allow_incomplete;
    EXPECT_NE(e.allow_incomplete.find("; ehr/Consent: running since "), std::string::npos);
  }
  GatewayRun listed = Gateway(fmt::format("ledger --config {}", config_.string()));
  ASSERT_EQ(listed.status, 0) << listed.err;
  auto rows = NdjsonLines(listed.out);
  ASSERT_EQ(rows.size(), static_cast<std::size_t>(kBillablePatients));
  EXPECT_NE(rows[0]["allowIncomplete"].str().find("ehr/Condition: incomplete since"),
            std::string::npos);
  auto store = OpenSqliteStateStore(dir_ / "state.db");
  auto run = (*store)->LastRun(RunKind::kBill);
  ASSERT_TRUE(run && *run);
  auto summary = fhir::json::Parse((*run)->summary);
  ASSERT_TRUE(summary);
  EXPECT_EQ((*summary)["allowIncomplete"].size(), 3u);
}

TEST_F(BillTest, AClosedMonthIsBilledOnlyFromPullsStartedAfterItEnded) {
  Sync();
  // The last complete Encounter pull started on the month's last evening.
  ExecSqlOn(dir_ / "state.db",
            "UPDATE pulls SET last_complete_started = '2026-10-31T23:00:00.000000Z', "
            "started_at = '2026-10-31T23:00:00.000000Z' WHERE type = 'Encounter'");
  GatewayRun r = Bill();
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("ehr/Encounter: the last complete pull started 2026-10-31T23:00:00"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("before the month ended (2026-11-01T05:00:00"), std::string::npos)
      << "midnight in the practice's zone (America/Chicago, CDT): " << r.err;
  EXPECT_TRUE(Ledger(false).empty());
  // A pull after the month ended lets it go.
  Sync();
  GatewayRun ok = Bill();
  EXPECT_EQ(ok.status, 0) << ok.out << ok.err;
  EXPECT_EQ(Ledger().size(), static_cast<std::size_t>(kBillablePatients));
}

TEST_F(BillTest, ASyncWaitsWhileABillRuns) {
  Sync();
  // The bill's first request to the EHR is held for 3 s; meanwhile a sync finds the lock taken.
  ehr_->Faults(R"([{"match": "GET /fhir/R4/ChargeItem", "kind": "delay", "delayMs": 3000}])");
  GatewayRun bill;
  std::thread billing([&] { bill = Bill(); });
  bool seen_delay = false;
  for (int i = 0; i < 200 && !seen_delay; ++i) {
    Value log = ehr_->Requests();
    for (const auto& r : log.array()) seen_delay = seen_delay || r["fault"].str() == "delay";
    if (!seen_delay) std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  auto sync = LockSync(dir_ / "state.db", std::chrono::milliseconds(0));
  billing.join();
  ASSERT_TRUE(seen_delay);
  ASSERT_FALSE(sync) << "the sync lock was free while bill ran";
  EXPECT_TRUE(sync.error().is(Errc::kConflict));
  ASSERT_EQ(bill.status, 0) << bill.out << bill.err;
  EXPECT_TRUE(LockSync(dir_ / "state.db", std::chrono::milliseconds(0)));  // released at exit
}

TEST_F(BillTest, DataThatDisappearedIsHeldAndDroppedWhenItComesBack) {
  Sync();
  ASSERT_EQ(Bill().status, 0);
  auto charge_items = BillableChargeItems();
  // A broken answer loses one of the encounters behind 99439 (45 -> 35 minutes): sync --full
  // drops it from the store.
  Value encounter = Search(*ehr_, "Encounter?_id=ccm-585822b9628a-3").at(0);
  ehr_->Send("DELETE", "/fhir/R4/Encounter/ccm-585822b9628a-3");
  Sync();
  ehr_->ClearRequests();
  payer_->ClearRequests();
  GatewayRun r = Bill();
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("0 new, 0 adjusted, 0 voided, 0 withdrawn, 4 unchanged, 1 held"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("adjustment of ledger entry "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("bills less: 99490x1 99439x1 (106.42) -> 99490x1 (60.49)"),
            std::string::npos)
      << r.out;
  // Nothing went anywhere: no ChargeItem written or withdrawn, no claim.
  Value log = ehr_->Requests();
  for (const auto& req : log.array()) EXPECT_EQ(req["method"].str(), "GET");
  EXPECT_EQ(PayerWrites(), 0u) << "the payer is only asked what it supports";
  EXPECT_EQ(BillableChargeItems(), charge_items);
  EXPECT_EQ(ClaimFiles(".json").size(), 1u);
  GatewayRun listed = Gateway(fmt::format("ledger --config {}", config_.string()));
  auto rows = NdjsonLines(listed.out);
  ASSERT_EQ(rows.size(), static_cast<std::size_t>(kBillablePatients + 1));
  const Value& proposal = rows.back();
  EXPECT_EQ(proposal["status"].str(), "open");
  EXPECT_EQ(proposal["kind"].str(), "adjustment");
  EXPECT_EQ(proposal["patient"].str(), kTwoCodes);
  EXPECT_EQ(proposal["proposed"]["amount"].number_text(), "60.49");

  // The encounter is back with the next complete sync: the proposal is dropped, said so, kept.
  ehr_->Put(encounter);
  Sync();
  GatewayRun back = Bill();
  ASSERT_EQ(back.status, 0) << back.out << back.err;
  EXPECT_NE(back.out.find("0 voided, 0 withdrawn, 5 unchanged, 0 held"), std::string::npos)
      << back.out;
  EXPECT_NE(back.out.find("dropped: proposal 1 (adjustment of ledger entry "), std::string::npos)
      << back.out;
  EXPECT_NE(back.out.find("the data came back"), std::string::npos) << back.out;
  EXPECT_EQ(Ledger(false).size(), static_cast<std::size_t>(kBillablePatients));
  EXPECT_EQ(ClaimFiles(".json").size(), 1u);
  GatewayRun all = Gateway(fmt::format("ledger --config {} --all", config_.string()));
  auto all_rows = NdjsonLines(all.out);
  ASSERT_EQ(all_rows.size(), static_cast<std::size_t>(kBillablePatients + 1));
  EXPECT_EQ(all_rows.back()["status"].str(), "dropped");
  EXPECT_FALSE(all_rows.back()["closed"].str().empty());
  EXPECT_EQ(NdjsonLines(Gateway(fmt::format("ledger --config {}", config_.string())).out).size(),
            static_cast<std::size_t>(kBillablePatients));
}

TEST_F(BillTest, AnApprovedVoidGoesOutWithoutWaitingForASync) {
  Sync();
  ASSERT_EQ(Bill().status, 0);
  for (const auto& c : Search(*ehr_, fmt::format("Consent?patient={}", kTwoCodes))) {
    ehr_->Send("DELETE", fmt::format("/fhir/R4/Consent/{}", c["id"].str()));
  }
  Sync("--allow-mass-delete");  // one Consent of ten is more than 5 %
  ASSERT_EQ(Bill().status, 0);
  auto rows = NdjsonLines(Gateway(fmt::format("ledger --config {}", config_.string())).out);
  ASSERT_FALSE(rows.empty());
  Value proposal = rows.back();
  ASSERT_EQ(proposal["kind"].str(), "void");
  EXPECT_EQ(proposal["reason"].str(), "no longer billable: no-consent");
  std::string id(proposal["proposal"].number_text());

  GatewayRun approve =
      Gateway(fmt::format("ledger --config {} --approve {}", config_.string(), id));
  ASSERT_EQ(approve.status, 0) << approve.err;
  EXPECT_NE(approve.err.find(fmt::format("approved ledger proposal {}", id)), std::string::npos);
  Value approved = NdjsonLines(approve.out).back();
  EXPECT_EQ(approved["status"].str(), "approved");
  EXPECT_TRUE(approved["approvedBy"].str().starts_with("operator "))
      << approved["approvedBy"].str();
  GatewayRun twice = Gateway(fmt::format("ledger --config {} --approve {}", config_.string(), id));
  EXPECT_EQ(twice.status, 1);
  EXPECT_NE(twice.err.find("is approved and cannot become approved"), std::string::npos)
      << twice.err;
  EXPECT_EQ(Gateway(fmt::format("ledger --config {} --approve 4711", config_.string())).status, 1);
  EXPECT_EQ(Gateway(fmt::format("ledger --config {} --approve x", config_.string())).status, 2);

  // No sync since: the approval alone carries it out.
  GatewayRun r = Bill();
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("1 voided"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(fmt::format("confirmed: proposal {} (void of ledger entry ", id)),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("approved by operator "), std::string::npos);
  EXPECT_FALSE(BillableChargeItems().contains(fmt::format("{} 99490", kTwoCodes)));
  auto closed = NdjsonLines(Gateway(fmt::format("ledger --config {} --all", config_.string())).out);
  EXPECT_EQ(closed.back()["status"].str(), "carried-out");
  EXPECT_TRUE(closed.back()["resultEntry"].is_number());
  GatewayRun audit = Gateway(fmt::format("ledger --config {} --audit", config_.string()));
  EXPECT_NE(audit.out.find(fmt::format(R"("action":"approve","target":"ledger proposal {}")", id)),
            std::string::npos)
      << audit.out;
}

TEST_F(BillTest, ANewStateFileBesideClaimsAlreadyMadeIsRefused) {
  Sync();
  ASSERT_EQ(Bill().status, 0);
  // The claims batch is named by its content, not by a run counter.
  std::vector<std::string> claim_ids;
  for (const auto& e : Ledger()) claim_ids.push_back(ClaimIdentifierValue(e));
  auto files = ClaimFiles(".json");
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].filename().string(),
            fmt::format("claims-medicare-{}.json", BatchName("2026-10", claim_ids)));

  for (const char* f : {"state.db", "state.db-wal", "state.db-shm"}) {
    std::filesystem::remove(dir_ / f);
  }
  Sync();
  payer_->ClearRequests();
  for (const char* extra : {"", "--dry-run"}) {
    GatewayRun r = Bill(extra);
    EXPECT_EQ(r.status, 1) << r.out << r.err;
    EXPECT_NE(r.err.find(fmt::format("the ledger in {} is empty, but this practice's claims "
                                     "already exist",
                                     (dir_ / "state.db").string())),
              std::string::npos)
        << r.err;
    EXPECT_NE(r.err.find(fmt::format("1 claim file(s) in {}", (dir_ / "claims").string())),
              std::string::npos)
        << r.err;
    EXPECT_NE(r.err.find("ChargeItems with identifier system urn:ccm-gateway:charge-item on "),
              std::string::npos);
    EXPECT_NE(r.err.find("claim Bundles with identifier system urn:ccm-gateway:claim-batch at "
                         "payer medicare"),
              std::string::npos);
    EXPECT_NE(r.err.find("Restore the previous state file"), std::string::npos);
  }
  EXPECT_TRUE(Ledger(false).empty());
  EXPECT_EQ(ClaimFiles(".json").size(), 1u);
  EXPECT_EQ(Search(*payer_, "Bundle").size(), 1u);
  Value log = payer_->Requests();
  for (const auto& req : log.array()) EXPECT_EQ(req["method"].str(), "GET");
}

// An older backup of the state file restored after a later bill: its ledger does not know the
// claims written since, so billing from it could bill them again. Refused, naming the files.
TEST_F(BillTest, AnOlderStateFileBesideNewerClaimsIsRefused) {
  Sync();
  ASSERT_EQ(Bill().status, 0);
  ExecSqlOn(dir_ / "state.db",
            fmt::format("VACUUM INTO '{}'", (dir_ / "backup.db").string()).c_str());
  // Later: an encounter entered late makes an adjustment, which goes out at once in a new batch.
  AddStaffMinutes(kOneCode, 20, "late-call");
  Sync();
  ASSERT_EQ(Bill().status, 0);
  auto files = ClaimFiles(".json");
  ASSERT_EQ(files.size(), 2u);
  for (const char* f : {"state.db", "state.db-wal", "state.db-shm"}) {
    std::filesystem::remove(dir_ / f);
  }
  std::filesystem::rename(dir_ / "backup.db", dir_ / "state.db");
  Sync();
  GatewayRun r = Bill();
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_NE(r.err.find(fmt::format("the payers' directories hold 1 claim file(s) that the ledger "
                                   "in {} never wrote",
                                   (dir_ / "state.db").string())),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("was a backup restored?"), std::string::npos) << r.err;
  EXPECT_EQ(ClaimFiles(".json"), files) << "nothing written";
  EXPECT_EQ(Ledger(false).size(), static_cast<std::size_t>(kBillablePatients));
}

TEST_F(BillTest, AClaimWithoutAPatientIdentityIsHeldUntilItArrives) {
  std::string id(kOneCode.substr(8));
  SetMbi(Search(*ehr_, "Patient?_id=" + id).at(0), "");
  Sync();
  GatewayRun r = Bill();
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("held: the Patient has no Medicare Beneficiary Identifier (identifier "
                       "system http://hl7.org/fhir/sid/us-mbi)"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find("Patient/"), std::string::npos) << "no patient ids in logs: " << r.err;
  auto first = ClaimFiles(".json");
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(Claims(first[0]).size(), static_cast<std::size_t>(kBillablePatients - 1));
  // ChargeItems go to the EHR, which knows its patient: not held.
  EXPECT_EQ(BillableChargeItems().size(), static_cast<std::size_t>(kBillableCodes));
  std::string sent = ReadFile(first[0]);

  SetMbi(Search(*ehr_, "Patient?_id=" + id).at(0), "1EG4TE5MK99");
  Sync();
  // Released into a batch of its own; the run is killed once its file is written, and the next
  // run rebuilds the same batch (same name, same bytes) and posts it once.
  ::setenv("CCM_GATEWAY_CRASH_AT", "claims-file", 1);
  GatewayRun crashed = Bill();
  ::unsetenv("CCM_GATEWAY_CRASH_AT");
  ASSERT_EQ(crashed.status, 86) << crashed.out << crashed.err;
  auto files = ClaimFiles(".json");
  ASSERT_EQ(files.size(), 2u);
  std::filesystem::path own = files[0] == first[0] ? files[1] : files[0];
  std::string written = ReadFile(own);
  GatewayRun released = Bill();
  ASSERT_EQ(released.status, 0) << released.out << released.err;
  EXPECT_NE(released.out.find("deliveries 1 done, 0 failed"), std::string::npos) << released.out;
  files = ClaimFiles(".json");
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(ReadFile(own), written);
  EXPECT_EQ(ReadFile(first[0]), sent);  // the batch already sent is not rewritten
  for (const auto& f : files) {
    if (f == first[0]) continue;
    auto claims = Claims(f);
    ASSERT_EQ(claims.size(), 1u);
    EXPECT_EQ(claims[0]["identifier"][0]["value"].str(), fmt::format("{}-2026-10-r1", id));
    EXPECT_NE(ReadFile(f).find(R"("subscriberId": "1EG4TE5MK99")"), std::string::npos);
  }
  EXPECT_EQ(Search(*payer_, "Bundle").size(), 2u);
  for (const auto& e : Ledger()) EXPECT_EQ(e.status, LedgerStatus::kSubmitted);
}

TEST_F(BillTest, ACarePlanCreateWhoseAnswerWasLostIsRecordedLate) {
  RetireCarePlans(kNotBillable);
  Sync();
  // The create is applied but its answer never arrives, nor do the answers to the retries.
  ehr_->Faults(R"([{"match": "POST /fhir/R4/CarePlan", "kind": "apply-then-drop"},
                   {"match": "POST /fhir/R4/CarePlan", "kind": "drop", "times": 20}])");
  GatewayRun lost = Bill();
  EXPECT_EQ(lost.status, 1) << lost.out << lost.err;
  EXPECT_NE(lost.err.find("problem: care plan (audit record "), std::string::npos) << lost.err;
  ehr_->Send("DELETE", "/__admin/faults");
  std::string query = fmt::format("CarePlan?identifier=https://clinic.example/ccm-care-plan|{}",
                                  kNotBillable.substr(8));
  auto plans = Search(*ehr_, query);
  ASSERT_EQ(plans.size(), 1u) << "the create was applied";
  EXPECT_TRUE(Search(*ehr_, "Provenance").empty());

  GatewayRun next = Bill();
  ASSERT_EQ(next.status, 0) << next.out << next.err;
  EXPECT_NE(next.out.find("1 create-recorded-late"), std::string::npos) << next.out;
  std::string target = fmt::format("CarePlan/{}", plans[0]["id"].str());
  auto provenance = Search(*ehr_, "Provenance");
  ASSERT_EQ(provenance.size(), 1u);
  EXPECT_EQ(provenance[0]["target"][0]["reference"].str(),
            fmt::format("{}/_history/{}", target, plans[0]["meta"]["versionId"].str()));
  EXPECT_EQ(provenance[0]["activity"]["coding"][0]["code"].str(), "CREATE");
  EXPECT_EQ(provenance[0]["extension"][0]["url"].str(), "urn:ccm-gateway:extension:recorded-late");
  EXPECT_FALSE(provenance[0]["occurredDateTime"].str().empty());
  auto audit =
      NdjsonLines(Gateway(fmt::format("ledger --config {} --audit", config_.string())).out);
  std::size_t creates = 0;
  for (const auto& a : audit) {
    if (a["action"].str() != "create" || a["target"].str() != target) continue;
    ++creates;
    EXPECT_NE(a["detail"].str().find("recorded late"), std::string::npos) << a["detail"].str();
    EXPECT_EQ(a["provenance"].str(), fmt::format("Provenance/{}", provenance[0]["id"].str()));
  }
  EXPECT_EQ(creates, 1u);
  // Once recorded, never again.
  GatewayRun third = Bill();
  ASSERT_EQ(third.status, 0) << third.err;
  EXPECT_EQ(third.out.find("create-recorded-late"), std::string::npos) << third.out;
  EXPECT_EQ(Search(*ehr_, "Provenance").size(), 1u);
}

TEST_F(BillTest, AMergedRecordIsVoidedBeforeItsSurvivorIsBilledOnce) {
  Sync();
  ASSERT_EQ(Bill().status, 0);
  // The EHR merges kTwoCodes into a new record: the old one is inactive and points at the
  // survivor, whose clinical data are the old record's, moved over.
  std::string old_id(kTwoCodes.substr(8));
  Value old = Search(*ehr_, "Patient?_id=" + old_id).at(0);
  Value survivor = old;
  survivor.set("id", Value::String("survivor-1"));
  survivor.set("link", *fhir::json::Parse(fmt::format(
                           R"([{{"other":{{"reference":"{}"}},"type":"replaces"}}])", kTwoCodes)));
  ehr_->Put(survivor);
  SetMbi(Search(*ehr_, "Patient?_id=survivor-1").at(0), "1EG4TE5MK55");
  old.set("active", Value::Bool(false));
  old.set("link", *fhir::json::Parse(
                      R"([{"other":{"reference":"Patient/survivor-1"},"type":"replaced-by"}])"));
  ehr_->Put(old);
  for (const auto& [type, param] :
       std::vector<std::pair<std::string, std::string>>{{"Condition", "subject"},
                                                        {"Encounter", "subject"},
                                                        {"CarePlan", "subject"},
                                                        {"Consent", "patient"}}) {
    for (Value r : Search(*ehr_, fmt::format("{}?{}={}", type, param, kTwoCodes))) {
      Value ref = Value::MakeObject();
      ref.set("reference", Value::String("Patient/survivor-1"));
      r.set(param, std::move(ref));
      ehr_->Put(r);
    }
  }
  Sync();
  GatewayRun merged = Bill();
  ASSERT_EQ(merged.status, 0) << merged.out << merged.err;
  // The old record's void is proposed; the survivor's month waits for it.
  EXPECT_NE(merged.out.find("0 new, 0 adjusted, 0 voided, 0 withdrawn, 4 unchanged, 2 held"),
            std::string::npos)
      << merged.out;
  EXPECT_NE(merged.out.find("no longer billable: merged"), std::string::npos) << merged.out;
  EXPECT_NE(merged.out.find("held: 1 charge(s) of patient records others were merged into"),
            std::string::npos)
      << merged.out;
  EXPECT_EQ(ClaimFiles(".json").size(), 1u);
  auto proposals = NdjsonLines(Gateway(fmt::format("ledger --config {}", config_.string())).out);
  std::string id(proposals.back()["proposal"].number_text());
  ASSERT_EQ(Gateway(fmt::format("ledger --config {} --approve {}", config_.string(), id)).status,
            0);
  GatewayRun voided = Bill();
  ASSERT_EQ(voided.status, 0) << voided.out << voided.err;
  EXPECT_NE(voided.out.find("1 voided"), std::string::npos) << voided.out;
  EXPECT_NE(voided.out.find("held: 1 charge(s)"), std::string::npos) << voided.out;
  GatewayRun billed = Bill();
  ASSERT_EQ(billed.status, 0) << billed.out << billed.err;
  EXPECT_NE(billed.out.find("ledger 1 new"), std::string::npos) << billed.out;
  EXPECT_EQ(billed.out.find("held: 1 charge(s)"), std::string::npos) << billed.out;

  // One billable month: the survivor's; the old record's ChargeItems withdrawn, its claim
  // cancelled; a third run changes nothing.
  auto items = BillableChargeItems();
  EXPECT_FALSE(items.contains(fmt::format("{} 99490", kTwoCodes)));
  EXPECT_TRUE(items.contains("Patient/survivor-1 99490"));
  EXPECT_TRUE(items.contains("Patient/survivor-1 99439"));
  std::size_t cancelled = 0, survivor_claims = 0;
  for (const auto& f : ClaimFiles(".json")) {
    for (const auto& c : Claims(f)) {
      if (c["status"].str() == "cancelled") {
        ++cancelled;
        EXPECT_EQ(c["identifier"][0]["value"].str(), fmt::format("{}-2026-10-r1", old_id));
      }
      survivor_claims += c["identifier"][0]["value"].str() == "survivor-1-2026-10-r1" ? 1 : 0;
    }
  }
  EXPECT_EQ(cancelled, 1u);
  EXPECT_EQ(survivor_claims, 1u);
  GatewayRun again = Bill();
  EXPECT_NE(again.out.find("0 new, 0 adjusted, 0 voided, 0 withdrawn, 6 unchanged, 0 held"),
            std::string::npos)
      << again.out;
}

// Kill the bill run right after each durable step, run again: exactly one of everything.
class BillCrashTest : public BillTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(BillCrashTest, AKilledRunIsCompletedByTheNextWithNothingTwice) {
  RetireCarePlans(kNotBillable);
  Sync();
  ::setenv("CCM_GATEWAY_CRASH_AT", GetParam(), 1);
  GatewayRun crashed = Bill();
  ::unsetenv("CCM_GATEWAY_CRASH_AT");
  ASSERT_EQ(crashed.status, 86) << "no crash at " << GetParam() << ": " << crashed.out
                                << crashed.err;

  GatewayRun rerun = Bill();
  ASSERT_EQ(rerun.status, 0) << rerun.out << rerun.err;
  GatewayRun third = Bill();
  ASSERT_EQ(third.status, 0) << third.out << third.err;
  EXPECT_NE(third.out.find("0 new, 0 adjusted, 0 voided, 0 withdrawn, 5 unchanged"),
            std::string::npos)
      << third.out;

  auto ledger = Ledger(false);
  ASSERT_EQ(ledger.size(), static_cast<std::size_t>(kBillablePatients));
  for (const auto& e : ledger) EXPECT_EQ(e.status, LedgerStatus::kSubmitted) << e.patient;
  EXPECT_EQ(BillableChargeItems().size(), static_cast<std::size_t>(kBillableCodes));
  EXPECT_EQ(Search(*ehr_, "ChargeItem").size(), static_cast<std::size_t>(kBillableCodes));
  EXPECT_EQ(ClaimFiles(".json").size(), 1u);
  std::size_t claims = 0;
  for (const auto& f : ClaimFiles(".json")) claims += Claims(f).size();
  EXPECT_EQ(claims, static_cast<std::size_t>(kBillablePatients));
  EXPECT_EQ(Search(*payer_, "Bundle").size(), 1u);
  EXPECT_EQ(Search(*ehr_, fmt::format("CarePlan?identifier=https://clinic.example/ccm-care-plan|{}",
                                      kNotBillable.substr(8)))
                .size(),
            1u);
}

INSTANTIATE_TEST_SUITE_P(Steps, BillCrashTest,
                         ::testing::Values("care-plan", "ledger", "charge-item", "claims-file",
                                           "claims-endpoint"),
                         [](const auto& param_info) {
                           std::string n = param_info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

}  // namespace
}  // namespace ccm::gateway
