// The write-back builders on their own: claim Bundles, ChargeItems and CSV from ledger rows, the
// managed CarePlan and its gateway-owned update, and the writeBack/billing config.
#include "gateway/writeback/billing_outputs.h"

#include <map>
#include <set>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "fhir/validate.h"
#include "gateway/ccm/facts.h"
#include "gateway/config/writeback_config.h"
#include "gateway/store/sqlite_state_store.h"
#include "gateway/writeback/careplan_writeback.h"
#include "gateway/writeback/write_capabilities.h"
#include "test_util.h"

namespace ccm::gateway {
namespace {

using ccm::testing::ReadFile;
using ccm::testing::TempDir;
using ccm::testing::WriteFile;
using fhir::json::Value;

LedgerRow Row(std::string patient, int revision, LedgerKind kind,
              std::vector<std::pair<std::string, int>> codes) {
  Charge c;
  c.patient = std::move(patient);
  c.month = "2026-02";
  c.program = "CCM";
  for (auto& [code, units] : codes) {
    BillingLine l;
    l.code = code;
    l.units = units;
    l.amount = Cents{4593} * units;
    l.encounters = {"Encounter/e1", "Encounter/e2"};
    c.lines.push_back(std::move(l));
    c.amount += *c.lines.back().amount;
  }
  c.minutes.clinical_staff = 42;
  c.diagnoses = {{"Condition/c1", "diabetes", "http://hl7.org/fhir/sid/icd-10-cm", "E11.9"},
                 {"Condition/c2", "hypertension", "http://snomed.info/sct", "59621000"}};
  c.evidence = Value::MakeObject();
  LedgerRow row = ToLedgerRow(c, 7);
  row.id = revision * 10;
  row.revision = revision;
  row.kind = kind;
  row.status = LedgerStatus::kPending;
  row.created_at = fmt::format("2026-03-0{}T10:00:00Z", revision);
  if (row.kind == LedgerKind::kVoid) row.lines_json = "[]";
  return row;
}

WriteBackConfig Config() {
  WriteBackConfig c;
  c.provider = {"Organization/clinic", "Sample Clinic", "1234567893"};
  return c;
}

// Every `reference` in the Bundle names an entry's fullUrl (R4 §2.36.4.1: resolution in a Bundle).
void ExpectReferencesResolve(const Value& bundle) {
  std::set<std::string> urls;
  for (const auto& e : bundle["entry"].array()) urls.insert(std::string(e["fullUrl"].str()));
  std::size_t seen = 0;
  std::function<void(const Value&)> walk = [&](const Value& v) {
    if (v.is_object()) {
      for (const auto& m : v.object()) {
        if (m.key == "reference" && m.value.is_string()) {
          ++seen;
          EXPECT_TRUE(urls.contains(std::string(m.value.str()))) << m.value.str();
        }
        walk(m.value);
      }
    } else if (v.is_array()) {
      for (const auto& x : v.array()) walk(x);
    }
  };
  walk(bundle);
  EXPECT_GT(seen, 0u);
}

void ExpectValid(const Value& resource) {
  auto issues = fhir::Validate(resource);
  for (const auto& i : issues) {
    EXPECT_FALSE(i.is_error()) << i.path << ": " << i.message;
  }
}

std::vector<Value> OfType(const Value& bundle, std::string_view type) {
  std::vector<Value> out;
  for (const auto& e : bundle["entry"].array()) {
    if (e["resource"]["resourceType"].str() == type) out.push_back(e["resource"]);
  }
  return out;
}

TEST(ClaimBundleTest, IsValidR4WithEveryReferenceResolvedInside) {
  PayerConfig payer;
  payer.name = "medicare";
  payer.display = "Medicare Part B";
  payer.identifier_system = "urn:oid:2.16.840.1.113883.4.927";
  payer.identifier_value = "00831";
  LedgerRow a = Row("Patient/a", 1, LedgerKind::kCharge, {{"99490", 1}, {"99439", 2}});
  LedgerRow b_prior = Row("Patient/b", 1, LedgerKind::kCharge, {{"99490", 1}});
  LedgerRow b = Row("Patient/b", 2, LedgerKind::kAdjustment, {{"99487", 1}});
  LedgerRow c_prior = Row("Patient/c", 1, LedgerKind::kCharge, {{"99491", 1}});
  LedgerRow c = Row("Patient/c", 2, LedgerKind::kVoid, {});
  std::string patient_c =
      R"({"resourceType":"Patient","id":"c","identifier":[{"system":"http://hl7.org/fhir/sid/us-mbi","value":"1EG4TE5MK73"}],"birthDate":"1950-01-01"})";
  std::vector<ClaimInput> claims = {{a, std::nullopt, std::nullopt, ""},
                                    {b, std::nullopt, b_prior, ""},
                                    {c, c_prior, std::nullopt, patient_c}};
  Value bundle = MakeClaimBundle(claims, payer, Config(), "2026-02-run7", "USD");
  ExpectValid(bundle);
  ExpectReferencesResolve(bundle);
  EXPECT_EQ(bundle["type"].str(), "collection");
  EXPECT_EQ(bundle["identifier"]["value"].str(), "medicare-2026-02-run7");
  auto claim_list = OfType(bundle, "Claim");
  ASSERT_EQ(claim_list.size(), 3u);
  // R4 Claim's required elements (cardinality 1..1 / 1..*).
  for (const auto& cl : claim_list) {
    for (auto key :
         {"status", "type", "use", "patient", "created", "provider", "priority", "insurance"}) {
      EXPECT_NE(cl.find(key), nullptr) << key;
    }
    EXPECT_EQ(cl["billablePeriod"]["start"].str(), "2026-02-01");
    EXPECT_EQ(cl["billablePeriod"]["end"].str(), "2026-02-28");
    EXPECT_EQ(cl["diagnosis"].size(), 2u);
  }
  // a: two lines, the total is their sum, amounts as exact decimals.
  EXPECT_EQ(claim_list[0]["status"].str(), "active");
  EXPECT_EQ(claim_list[0]["item"].size(), 2u);
  EXPECT_EQ(claim_list[0]["item"][1]["productOrService"]["coding"][0]["code"].str(), "99439");
  EXPECT_EQ(claim_list[0]["item"][1]["quantity"]["value"].number_text(), "2");
  EXPECT_EQ(claim_list[0]["item"][1]["net"]["value"].number_text(), "91.86");
  EXPECT_EQ(claim_list[0]["item"][1]["unitPrice"]["value"].number_text(), "45.93");
  EXPECT_EQ(claim_list[0]["total"]["value"].number_text(), "137.79");
  EXPECT_EQ(claim_list[0]["identifier"][0]["value"].str(), "a-2026-02-r1");
  // b: a correction pointing at the prior claim.
  EXPECT_EQ(claim_list[1]["related"][0]["claim"]["identifier"]["value"].str(), "b-2026-02-r1");
  EXPECT_EQ(claim_list[1]["related"][0]["relationship"]["coding"][0]["code"].str(), "prior");
  // c: a cancellation of what was billed, under the prior claim's identifier.
  EXPECT_EQ(claim_list[2]["status"].str(), "cancelled");
  EXPECT_EQ(claim_list[2]["identifier"][0]["value"].str(), "c-2026-02-r1");
  EXPECT_EQ(claim_list[2]["item"][0]["productOrService"]["coding"][0]["code"].str(), "99491");
  // The stored Patient goes in as is; its MBI becomes the subscriber id.
  auto coverages = OfType(bundle, "Coverage");
  ASSERT_EQ(coverages.size(), 3u);
  EXPECT_EQ(coverages[2]["subscriberId"].str(), "1EG4TE5MK73");
  EXPECT_EQ(OfType(bundle, "Patient")[2]["birthDate"].str(), "1950-01-01");
  // Deterministic: the same batch rebuilt is the same bytes (a crash re-send is the same batch).
  EXPECT_EQ(fhir::json::Serialize(bundle),
            fhir::json::Serialize(MakeClaimBundle(claims, payer, Config(), "2026-02-run7", "USD")));
}

TEST(ClaimBundleTest, CsvHasARowPerCodeCancellationsNegatedAndTotals) {
  PayerConfig payer;
  payer.name = "medicare";
  LedgerRow a = Row("Patient/a", 1, LedgerKind::kCharge, {{"99490", 1}, {"99439", 2}});
  LedgerRow c_prior = Row("Patient/c,x", 1, LedgerKind::kCharge, {{"99491", 1}});
  LedgerRow c = Row("Patient/c,x", 2, LedgerKind::kVoid, {});
  std::string csv = MakeClaimCsv(
      {{a, std::nullopt, std::nullopt, ""}, {c, c_prior, std::nullopt, ""}}, payer, "2026-02-run7");
  std::vector<std::string> rows;
  for (std::size_t start = 0, end; (end = csv.find("\r\n", start)) != std::string::npos;
       start = end + 2) {
    rows.push_back(csv.substr(start, end - start));
  }
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(rows[0].substr(0, 20), "payer,batch,claim,ki");
  EXPECT_EQ(rows[2],
            "medicare,2026-02-run7,a-2026-02-r1,charge,Patient/a,2026-02,99439,2,91.86,42,0,"
            "E11.9 59621000");
  EXPECT_NE(rows[3].find(",void,\"Patient/c,x\",2026-02,99491,-1,-45.93,"), std::string::npos)
      << rows[3];
  EXPECT_EQ(rows[4], "medicare,2026-02-run7,TOTAL,,2 claim(s),,,2,91.86,,,");
}

TEST(ChargeItemTest, CarriesCodeQuantityPeriodPerformerAndItsEncounters) {
  LedgerRow a = Row("Patient/a", 2, LedgerKind::kAdjustment, {{"99490", 1}});
  Value ci = MakeChargeItem(a, LedgerLines(a)[0], "billable", Config(), "USD");
  ExpectValid(ci);
  EXPECT_EQ(ci["identifier"][0]["system"].str(), "urn:ccm-gateway:charge-item");
  EXPECT_EQ(ci["identifier"][0]["value"].str(), "a-2026-02-99490-r2");
  EXPECT_EQ(ci["code"]["coding"][0]["system"].str(), kCptSystem);
  EXPECT_EQ(ci["subject"]["reference"].str(), "Patient/a");
  EXPECT_EQ(ci["occurrencePeriod"]["end"].str(), "2026-02-28");
  EXPECT_EQ(ci["performer"][0]["actor"]["reference"].str(), "Organization/clinic");
  EXPECT_EQ(ci["quantity"]["value"].number_text(), "1");
  EXPECT_EQ(ci["supportingInformation"].size(), 2u);
  EXPECT_EQ(ci["supportingInformation"][1]["reference"].str(), "Encounter/e2");
  EXPECT_EQ(ci["reason"].size(), 2u);
}

TEST(DeliveryTest, AClaimWithoutAnIcd10DiagnosisIsHeldAndTheRestOfTheBatchGoes) {
  TempDir dir;
  auto store = OpenSqliteStateStore(dir / "state.db");
  ASSERT_TRUE(store);
  WriteBackConfig config = Config();
  PayerConfig payer;
  payer.name = "medicare";
  payer.display = "Medicare";
  payer.directory = dir / "claims";
  config.payers.push_back(payer);
  LedgerRow coded = Row("Patient/a", 1, LedgerKind::kCharge, {{"99490", 1}});
  LedgerRow uncoded = Row("Patient/b", 1, LedgerKind::kCharge, {{"99490", 1}});
  uncoded.evidence_json =
      R"({"diagnoses":[{"condition":"Condition/x","category":"cancer_prostate","system":"http://snomed.info/sct","code":"126906006"}]})";
  std::vector<std::int64_t> ids;
  for (LedgerRow* row : {&coded, &uncoded}) {
    auto id = (*store)->AddLedgerEntry(*row);
    ASSERT_TRUE(id) << id.error().message;
    ASSERT_TRUE((*store)->AddDelivery(*id, PayerChannel(payer), "2026-02-run7"));
    ids.push_back(*id);
  }
  // Both patients are identified (an MBI): only the diagnosis holds b.
  for (const char* id : {"a", "b"}) {
    ASSERT_TRUE((*store)->Upsert(
        "ehr", "Patient", id, {},
        fmt::format(
            R"({{"resourceType":"Patient","id":"{}","identifier":[{{"system":"http://hl7.org/fhir/sid/us-mbi","value":"1EG4TE5MK7{}"}}]}})",
            id, id[0] == 'a' ? 3 : 4),
        1));
  }
  DeliveryContext ctx{**store, config, "USD", 7, nullptr, {"ehr"}, {}};
  DeliveryReport report = DeliverOpen(ctx);
  EXPECT_EQ(report.done, 1u);
  EXPECT_EQ(report.failed, 1u);
  ASSERT_EQ(report.problems.size(), 1u);
  EXPECT_NE(report.problems[0].find(fmt::format("payer:medicare 2026-02 ledger entry {}:", ids[1])),
            std::string::npos)
      << report.problems[0];
  EXPECT_NE(report.problems[0].find("no ICD-10-CM diagnosis"), std::string::npos);
  auto bundle = fhir::json::Parse(
      ccm::testing::ReadFile(dir / "claims" / "claims-medicare-2026-02-run7.json"));
  ASSERT_TRUE(bundle);
  auto claims = OfType(*bundle, "Claim");
  ASSERT_EQ(claims.size(), 1u);
  EXPECT_EQ(claims[0]["identifier"][0]["value"].str(), "a-2026-02-r1");
  EXPECT_EQ((*store)->Deliveries(ids[1])->at(0).status, DeliveryStatus::kFailed);
  ASSERT_TRUE(MarkDelivered(**store, ids));
  EXPECT_EQ((*store)->LedgerEntry(ids[0])->value().status, LedgerStatus::kSubmitted);
  EXPECT_EQ((*store)->LedgerEntry(ids[1])->value().status, LedgerStatus::kPending);
}

// A month billed, cancelled and billed again: the last claim is a new original one. Pointing it
// at the cancelled claim (related.prior, a replacement) would ask the payer to correct a claim it
// no longer holds.
TEST(DeliveryTest, AChargeAfterAVoidIsANewClaimThatReplacesNothing) {
  TempDir dir;
  auto store = OpenSqliteStateStore(dir / "state.db");
  ASSERT_TRUE(store);
  WriteBackConfig config = Config();
  PayerConfig payer;
  payer.name = "medicare";
  payer.directory = dir / "claims";
  config.payers.push_back(payer);
  ASSERT_TRUE((*store)->Upsert(
      "ehr", "Patient", "a", {},
      R"({"resourceType":"Patient","id":"a","identifier":[{"system":"http://hl7.org/fhir/sid/us-mbi","value":"1EG4TE5MK73"}]})",
      1));
  DeliveryContext ctx{**store, config, "USD", 7, nullptr, {"ehr"}, {}};
  std::optional<std::int64_t> prev;
  std::vector<std::string> batches = {"2026-02-a", "2026-02-b", "2026-02-c"};
  int revision = 0;
  for (LedgerKind kind : {LedgerKind::kCharge, LedgerKind::kVoid, LedgerKind::kCharge}) {
    LedgerRow row = Row("Patient/a", ++revision, kind, {{"99490", 1}});
    row.supersedes = prev;
    auto id = (*store)->AddLedgerEntry(row);
    ASSERT_TRUE(id) << id.error().message;
    ASSERT_TRUE((*store)->AddDelivery(*id, PayerChannel(payer), batches[revision - 1]));
    DeliveryReport report = DeliverOpen(ctx);
    ASSERT_EQ(report.done, 1u) << ToCode(kind) << ": "
                               << (report.problems.empty() ? "" : report.problems[0]);
    prev = *id;
  }
  auto cancel = fhir::json::Parse(ReadFile(dir / "claims" / "claims-medicare-2026-02-b.json"));
  ASSERT_TRUE(cancel);
  auto cancelled = OfType(*cancel, "Claim");
  ASSERT_EQ(cancelled.size(), 1u);
  EXPECT_EQ(cancelled[0]["status"].str(), "cancelled");
  EXPECT_EQ(cancelled[0]["identifier"][0]["value"].str(), "a-2026-02-r1");
  auto again = fhir::json::Parse(ReadFile(dir / "claims" / "claims-medicare-2026-02-c.json"));
  ASSERT_TRUE(again);
  auto claims = OfType(*again, "Claim");
  ASSERT_EQ(claims.size(), 1u);
  EXPECT_EQ(claims[0]["status"].str(), "active");
  EXPECT_EQ(claims[0]["identifier"][0]["value"].str(), "a-2026-02-r3");
  EXPECT_EQ(claims[0].find("related"), nullptr) << fhir::json::Serialize(claims[0]);
}

constexpr std::string_view kMembers = "urn:oid:2.16.840.1.113883.3.9999.1";

LedgerRow Entry(const std::string& patient) {
  Charge c;
  c.patient = patient;
  c.month = "2026-10";
  c.program = "CCM";
  c.lines = {BillingLine{"99490", 1, Cents{6049}, false, {"Encounter/e1"}}};
  c.amount = 6049;
  c.diagnoses = {{"Condition/c1", "diabetes", "http://hl7.org/fhir/sid/icd-10-cm", "E11.9"}};
  c.evidence = Value::MakeObject();
  LedgerRow row = ToLedgerRow(c, 1);
  row.kind = LedgerKind::kCharge;
  row.status = LedgerStatus::kPending;
  return row;
}

std::string PatientJson(std::string_view id, std::string_view system = "",
                        std::string_view value = "") {
  return system.empty()
             ? fmt::format(R"({{"resourceType":"Patient","id":"{}"}})", id)
             : fmt::format(
                   R"({{"resourceType":"Patient","id":"{}","identifier":[{{"system":"{}","value":"{}"}}]}})",
                   id, system, value);
}

std::vector<Value> Claims(const std::filesystem::path& file) {
  auto b = fhir::json::Parse(ReadFile(file));
  EXPECT_TRUE(b) << file;
  std::vector<Value> out;
  if (!b) return out;
  for (const auto& e : (*b)["entry"].array()) {
    if (e["resource"]["resourceType"].str() == "Claim") out.push_back(e["resource"]);
  }
  return out;
}

std::string SubscriberOf(const std::filesystem::path& file, std::string_view patient_id) {
  auto b = fhir::json::Parse(ReadFile(file));
  std::string patient_url;
  for (const auto& e : (*b)["entry"].array()) {
    if (e["resource"]["resourceType"].str() == "Patient" && e["resource"]["id"].str() == patient_id)
      patient_url = std::string(e["fullUrl"].str());
  }
  for (const auto& e : (*b)["entry"].array()) {
    if (e["resource"]["resourceType"].str() == "Coverage" &&
        e["resource"]["beneficiary"]["reference"].str() == patient_url) {
      return std::string(e["resource"]["subscriberId"].str());
    }
  }
  return "?";
}

// Deciding apart from acting: which revision a correction names at a payer, and whether each
// claim of a batch goes, is held, or has nothing to cancel -- without a store or a server.
TEST(DeliveryPlanTest, ACorrectionNamesTheLastRevisionThePayerReceived) {
  LedgerRow charge = Row("Patient/a", 1, LedgerKind::kCharge, {{"99490", 1}});        // id 10
  LedgerRow adjusted = Row("Patient/a", 2, LedgerKind::kAdjustment, {{"99487", 1}});  // id 20
  LedgerRow voided = Row("Patient/a", 3, LedgerKind::kVoid, {});                      // id 30
  auto only = [](std::int64_t id) { return [id](std::int64_t e) { return e == id; }; };

  ClaimInput adj{adjusted, std::nullopt, std::nullopt, ""};
  ResolvePriorClaim(adj, {charge}, only(10));
  ASSERT_TRUE(adj.replaces);
  EXPECT_EQ(adj.replaces->id, 10);
  EXPECT_FALSE(adj.cancels);
  // The payer never took the adjustment: the void cancels the charge it did take.
  ClaimInput v{voided, std::nullopt, std::nullopt, ""};
  ResolvePriorClaim(v, {adjusted, charge}, only(10));
  ASSERT_TRUE(v.cancels);
  EXPECT_EQ(v.cancels->id, 10);
  ClaimInput unseen{voided, std::nullopt, std::nullopt, ""};
  ResolvePriorClaim(unseen, {adjusted, charge}, [](std::int64_t) { return false; });
  EXPECT_FALSE(unseen.cancels);
  // A charge after a cancellation is a new claim: it replaces nothing before the void.
  ClaimInput fresh{Row("Patient/a", 4, LedgerKind::kCharge, {{"99490", 1}}), std::nullopt,
                   std::nullopt, ""};
  ResolvePriorClaim(fresh, {voided, adjusted, charge}, [](std::int64_t) { return true; });
  EXPECT_FALSE(fresh.replaces);
}

TEST(DeliveryPlanTest, EachClaimOfABatchIsSentHeldOrHasNothingToCancel) {
  PayerConfig medicare;
  medicare.name = "medicare";
  ClaimInput with_mbi{Row("Patient/a", 1, LedgerKind::kCharge, {{"99490", 1}}), std::nullopt,
                      std::nullopt, PatientJson("a", fhir::kMbiSystem, "1EG4TE5MK73")};
  ClaimInput cancel{Row("Patient/d", 2, LedgerKind::kVoid, {}), std::nullopt, std::nullopt, ""};
  cancel.cancels = Row("Patient/d", 1, LedgerKind::kCharge, {{"99490", 1}});
  ClaimInput never_sent{Row("Patient/e", 2, LedgerKind::kVoid, {}), std::nullopt, std::nullopt, ""};
  ClaimInput no_mbi{Row("Patient/b", 1, LedgerKind::kCharge, {{"99490", 1}}), std::nullopt,
                    std::nullopt, PatientJson("b", "urn:mrn", "77")};
  ClaimInput no_patient{Row("Patient/c", 1, LedgerKind::kCharge, {{"99490", 1}}), std::nullopt,
                        std::nullopt, ""};
  PayerBatchPlan plan =
      PlanPayerBatch({with_mbi, cancel, never_sent, no_mbi, no_patient}, medicare);
  ASSERT_EQ(plan.send.size(), 2u);
  EXPECT_EQ(plan.send[0].entry.patient, "Patient/a");
  EXPECT_EQ(plan.send[1].entry.patient, "Patient/d") << "a cancellation needs no member id";
  ASSERT_EQ(plan.nothing_to_cancel.size(), 1u);
  EXPECT_EQ(plan.nothing_to_cancel[0].patient, "Patient/e");
  ASSERT_EQ(plan.held.size(), 2u);
  EXPECT_EQ(plan.held[0].first.patient, "Patient/b");
  EXPECT_TRUE(plan.held[0].second.starts_with("held: the Patient has no Medicare Beneficiary"))
      << plan.held[0].second;
  EXPECT_EQ(plan.held[1].first.patient, "Patient/c");
  EXPECT_TRUE(plan.held[1].second.starts_with("held: no Patient resource")) << plan.held[1].second;
}

TEST(ClaimIdentityTest, MemberIdPrefersThePayersSystemThenTheMbi) {
  PayerConfig medicare;
  PayerConfig other;
  other.member_id_system = std::string(kMembers);
  std::string both =
      fmt::format(R"({{"resourceType":"Patient","identifier":[{{"system":"{}","value":"MBI1"}},)"
                  R"({{"system":"{}","value":"M-7"}}]}})",
                  fhir::kMbiSystem, kMembers);
  EXPECT_EQ(MemberId(both, medicare), "MBI1");
  EXPECT_EQ(MemberId(both, other), "M-7");
  EXPECT_EQ(MemberId(PatientJson("p", fhir::kMbiSystem, "MBI2"), other), "MBI2");
  EXPECT_EQ(MemberId(PatientJson("p", "urn:mrn", "1"), other), "");
  EXPECT_EQ(MemberId(PatientJson("p", fhir::kMbiSystem, ""), medicare), "");
  EXPECT_EQ(MemberId("", medicare), "");
  EXPECT_EQ(MemberId(R"({"resourceType":"Group"})", medicare), "");
}

TEST(ClaimIdentityTest, AClaimWithoutIdentityIsHeldAndGoesInABatchOfItsOwnOnceReleased) {
  TempDir dir;
  auto opened = OpenSqliteStateStore(dir / "state.db");
  ASSERT_TRUE(opened);
  StateStore& store = **opened;
  WriteBackConfig config;
  config.provider = {"Organization/clinic", "Sample Clinic", "1234567893"};
  PayerConfig payer;
  payer.name = "medicare";
  payer.display = "Medicare";
  payer.directory = dir / "claims";
  payer.member_id_system = std::string(kMembers);
  config.payers.push_back(payer);
  std::string channel = PayerChannel(payer);
  // a: an MBI. b: no Patient stored. c: a Patient without MBI or member id. d: an id that is no
  // FHIR id (it would end up in identifier searches).
  std::map<std::string, std::int64_t> ids;
  std::vector<std::string> claim_ids;
  for (const char* p : {"Patient/a", "Patient/b", "Patient/c", "Patient/d|x"}) {
    LedgerRow row = Entry(p);
    claim_ids.push_back(ClaimIdentifierValue(row));
    ids[p] = *store.AddLedgerEntry(row);
  }
  std::string batch = BatchName("2026-10", claim_ids);
  for (const auto& [p, id] : ids) ASSERT_TRUE(store.AddDelivery(id, channel, batch));
  ASSERT_TRUE(store.Upsert("ehr", "Patient", "a", {},
                           PatientJson("a", fhir::kMbiSystem, "1EG4TE5MK73"), 1));
  ASSERT_TRUE(store.Upsert("ehr", "Patient", "c", {}, PatientJson("c", "urn:mrn", "77"), 1));

  DeliveryContext ctx{store, config, "USD", 2, nullptr, {"ehr"}, {}};
  DeliveryReport first = DeliverOpen(ctx);
  EXPECT_EQ(first.done, 1u);
  EXPECT_EQ(first.failed, 3u);
  ASSERT_EQ(first.problems.size(), 3u);
  auto problem_of = [&](const DeliveryReport& r, const std::string& p) {
    for (const auto& line : r.problems) {
      if (line.find(fmt::format("ledger entry {}:", ids[p])) != std::string::npos) return line;
    }
    return std::string();
  };
  EXPECT_NE(problem_of(first, "Patient/b").find("held: no Patient resource"), std::string::npos);
  EXPECT_NE(
      problem_of(first, "Patient/c")
          .find(fmt::format(
              "held: the Patient has no Medicare Beneficiary Identifier (identifier system {}) "
              "nor a member id ({})",
              fhir::kMbiSystem, kMembers)),
      std::string::npos)
      << problem_of(first, "Patient/c");
  EXPECT_NE(problem_of(first, "Patient/d|x").find("held: the patient's id is not a FHIR id"),
            std::string::npos);
  for (const auto& line : first.problems) {
    EXPECT_EQ(line.find("Patient/"), std::string::npos) << "no patient ids in logs: " << line;
  }
  // The batch went with a alone; the held claims left it.
  auto file = dir / "claims" / fmt::format("claims-medicare-{}.json", batch);
  ASSERT_EQ(Claims(file).size(), 1u);
  EXPECT_EQ(SubscriberOf(file, "a"), "1EG4TE5MK73");
  std::string sent = ReadFile(file);
  for (const char* p : {"Patient/b", "Patient/c", "Patient/d|x"}) {
    auto d = store.Deliveries(ids[p]);
    ASSERT_EQ(d->size(), 1u);
    EXPECT_EQ(d->at(0).status, DeliveryStatus::kFailed);
    EXPECT_EQ(d->at(0).batch, "") << p;
  }

  // Still held: nothing is written.
  DeliveryReport again = DeliverOpen(ctx);
  EXPECT_EQ(again.done, 0u);
  EXPECT_EQ(again.failed, 3u);
  EXPECT_TRUE(again.files.empty());

  // The identities arrive (a member id for b, an MBI for c): they go in a batch of their own,
  // named by its content; the batch already sent is not rewritten.
  ASSERT_TRUE(store.Upsert("ehr", "Patient", "b", {}, PatientJson("b", kMembers, "M-22"), 2));
  ASSERT_TRUE(store.Upsert("ehr", "Patient", "c", {},
                           PatientJson("c", fhir::kMbiSystem, "1EG4TE5MK74"), 2));
  DeliveryReport released = DeliverOpen(ctx);
  EXPECT_EQ(released.done, 2u);
  EXPECT_EQ(released.failed, 1u);  // d stays held
  std::string own = BatchName("2026-10", {ClaimIdentifierValue(Entry("Patient/b")),
                                          ClaimIdentifierValue(Entry("Patient/c"))});
  ASSERT_NE(own, batch);
  auto second = dir / "claims" / fmt::format("claims-medicare-{}.json", own);
  ASSERT_EQ(Claims(second).size(), 2u);
  EXPECT_EQ(SubscriberOf(second, "b"), "M-22");
  EXPECT_EQ(SubscriberOf(second, "c"), "1EG4TE5MK74");
  EXPECT_EQ(ReadFile(file), sent);
  EXPECT_EQ(store.Deliveries(ids["Patient/b"])->at(0).batch, own);
  EXPECT_EQ(store.Deliveries(ids["Patient/b"])->at(0).status, DeliveryStatus::kDone);
  // Nothing open but d: a further run writes no file.
  EXPECT_TRUE(DeliverOpen(ctx).files.empty());
}

PatientMonth Month() {
  PatientMonth r;
  r.patient = "Patient/p1";
  r.month = {2026, 10};
  r.program = Program::kCcm;
  r.consent = ConsentState::kActive;
  r.chronic_conditions = {
      {"diabetes", "Diabetes", {"Condition/c1"}},
      {"hypertension", "Hypertension & <more>", {"Condition/c2", "Condition/c3"}}};
  r.minutes = {25, 0};
  r.billing = {BillingLine{"99490", 1, Cents{6049}, false, {"Encounter/e1"}}};
  return r;
}

TEST(CarePlanTest, TheDraftIsAValidUsCoreCarePlanWithPlaceholdersThatDoNotCount) {
  WriteBackConfig config;
  config.author = "Organization/clinic";
  config.care_team = "CareTeam/ccm";
  Value plan = NewCarePlan(Month(), config, "2026-10-05T12:00:00Z");
  ExpectValid(plan);
  EXPECT_EQ(plan["status"].str(), "draft");
  EXPECT_EQ(plan["intent"].str(), "plan");
  EXPECT_EQ(plan["category"][0]["coding"][0]["code"].str(), "assess-plan");
  EXPECT_EQ(plan["text"]["status"].str(), "generated");
  EXPECT_TRUE(
      plan["text"]["div"].str().starts_with("<div xmlns=\"http://www.w3.org/1999/xhtml\">"));
  EXPECT_NE(plan["text"]["div"].str().find("Hypertension &amp; &lt;more&gt;"), std::string::npos);
  EXPECT_EQ(plan["identifier"][0]["value"].str(), "p1");
  EXPECT_EQ(plan["addresses"].size(), 3u);
  EXPECT_EQ(plan["careTeam"][0]["reference"].str(), "CareTeam/ccm");
  EXPECT_EQ(plan["activity"].size(), 8u);
  std::set<std::string> models;
  for (const auto& a : plan["activity"].array()) {
    models.insert(std::string(a["detail"]["code"]["coding"][1]["code"].str()));
  }
  EXPECT_EQ(models.size(), 6u);  // all six Chronic Care Model elements are served

  // The engine reads it as a plan with a problem list and nothing else filled in.
  auto config_engine = DefaultEngineConfig();
  ASSERT_TRUE(config_engine);
  Extracted e = ExtractFact(plan, {}, *config_engine);
  ASSERT_TRUE(e.stored.fact);
  const auto& f = std::get<CarePlanFact>(*e.stored.fact);
  EXPECT_TRUE(f.elements.test(static_cast<std::size_t>(PlanElement::kProblemList)));
  EXPECT_TRUE(f.elements.test(static_cast<std::size_t>(PlanElement::kCoordination)));  // careTeam
  EXPECT_FALSE(f.elements.test(static_cast<std::size_t>(PlanElement::kInterventions)));
  EXPECT_FALSE(f.elements.test(static_cast<std::size_t>(PlanElement::kReviewSchedule)));
  // Once the care team drops the placeholder flag, the element counts.
  plan.find("activity")->mutable_array()->at(7).erase("extension");
  Extracted filled = ExtractFact(plan, {}, *config_engine);
  const auto& g = std::get<CarePlanFact>(*filled.stored.fact);
  EXPECT_TRUE(g.elements.test(static_cast<std::size_t>(PlanElement::kReviewSchedule)));
}

TEST(CarePlanTest, UpdatesTouchOnlyWhatTheGatewayOwnsAndAreIdempotent) {
  const std::string ehr_text =
      R"({"resourceType":"CarePlan","id":"cp1","meta":{"versionId":"7","tag":[{"system":"urn:x","code":"keep"}]},)"
      R"("extension":[{"url":"http://ehr.example/x","valueDecimal":1.50},)"
      R"({"url":"urn:ccm-gateway:extension:ccm-monthly-status","extension":[{"url":"month","valueString":"2026-09"}]}],)"
      R"("status":"active","_status":{"extension":[{"url":"http://ehr.example/why","valueString":"kept"}]},)"
      R"("intent":"plan","subject":{"reference":"Patient/p1"},"addresses":[{"reference":"Condition/c9"},{"reference":"Condition/c1"}],)"
      R"("note":[{"text":"clinician's note"}],"unknownVendorThing":{"n":0.10000000000000000001}})";
  Value plan = *fhir::json::Parse(ehr_text);
  Value original = plan;
  ASSERT_TRUE(ApplyOwned(plan, Month()));
  // Every member the gateway does not own is exactly as read (decimals keep their text).
  for (const auto& m : original.object()) {
    if (m.key == "addresses" || m.key == "extension" || m.key == "meta") continue;
    EXPECT_EQ(fhir::json::Serialize(plan[m.key]), fhir::json::Serialize(m.value)) << m.key;
  }
  EXPECT_NE(fhir::json::Serialize(plan).find("0.10000000000000000001"), std::string::npos);
  EXPECT_NE(fhir::json::Serialize(plan).find("\"valueDecimal\":1.50"), std::string::npos);
  // addresses: kept in order, new ones appended, none removed.
  ASSERT_EQ(plan["addresses"].size(), 4u);
  EXPECT_EQ(plan["addresses"][0]["reference"].str(), "Condition/c9");
  EXPECT_EQ(plan["addresses"][3]["reference"].str(), "Condition/c3");
  // The September status stays; October's is added; the EHR's extension is untouched.
  ASSERT_EQ(plan["extension"].size(), 3u);
  EXPECT_EQ(plan["extension"][0], original["extension"][0]);
  EXPECT_EQ(plan["extension"][1], original["extension"][1]);
  EXPECT_EQ(plan["meta"]["tag"].size(), 2u);
  EXPECT_EQ(plan["meta"]["versionId"].str(), "7");
  // Applying again changes nothing (no version churn).
  Value once = plan;
  EXPECT_FALSE(ApplyOwned(plan, Month()));
  EXPECT_EQ(plan, once);
  // New minutes in the same month replace that month's status in place.
  PatientMonth later = Month();
  later.minutes.clinical_staff = 47;
  EXPECT_TRUE(ApplyOwned(plan, later));
  EXPECT_EQ(plan["extension"].size(), 3u);
  EXPECT_NE(fhir::json::Serialize(plan["extension"][2]).find("\"valueInteger\":47"),
            std::string::npos);
}

TEST(CarePlanTest, OnlyConsentedLivingEligiblePatientsGetAPlan) {
  PatientMonth r = Month();
  EXPECT_TRUE(WantsCarePlan(r));
  r.consent = ConsentState::kRevoked;
  EXPECT_FALSE(WantsCarePlan(r));
  r = Month();
  r.program = Program::kNone;
  EXPECT_FALSE(WantsCarePlan(r));
  r = Month();
  r.deceased = true;
  EXPECT_FALSE(WantsCarePlan(r));
}

TEST(ClaimIdentityTest, AChargeItemOfAPatientWhoseIdIsNotAFhirIdIsHeld) {
  TempDir dir;
  auto opened = OpenSqliteStateStore(dir / "state.db");
  ASSERT_TRUE(opened);
  StateStore& store = **opened;
  WriteBackConfig config;
  config.charge_items = true;
  std::int64_t bad = *store.AddLedgerEntry(Entry("Patient/d x"));
  ASSERT_TRUE(store.AddDelivery(bad, std::string(kChargeItemChannel), "b"));
  // No server is needed to refuse it: nothing is searched or written.
  DeliveryContext ctx{store, config, "USD", 2, nullptr, {"ehr"}, {}};
  DeliveryReport r = DeliverOpen(ctx);
  EXPECT_EQ(r.failed, 1u);
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_NE(r.problems[0].find(fmt::format("charge-items 2026-10 ledger entry {}: held: the "
                                           "patient's id is not a FHIR id",
                                           bad)),
            std::string::npos)
      << r.problems[0];
  EXPECT_EQ(store.Deliveries(bad)->at(0).status, DeliveryStatus::kFailed);
}

TEST(CarePlanMergeTest, MergedAndInactiveRecordsGetNoCarePlan) {
  PatientMonth r;
  r.patient = "Patient/p1";
  r.program = Program::kCcm;
  r.consent = ConsentState::kActive;
  EXPECT_TRUE(WantsCarePlan(r));
  r.merged = true;
  EXPECT_FALSE(WantsCarePlan(r));
  r.merged = false;
  r.inactive = true;
  EXPECT_FALSE(WantsCarePlan(r));
}

Result<WriteBackConfig> ParseConfig(const std::string& text, const SyncConfig& sync = {}) {
  auto v = fhir::json::Parse(text);
  EXPECT_TRUE(v) << text;
  return WriteBackConfigFromJson(
      *v, "site.json", "/etc/ccm",
      [](const std::string& name) {
        return name == "PAYER_TOKEN" ? std::optional<std::string>("t0k3n") : std::nullopt;
      },
      sync);
}

TEST(WriteCapabilitiesTest, OnlyAServerRestThatSaysTrueDeclaresConditionalCreate) {
  auto cs = fhir::json::Parse(R"({"resourceType": "CapabilityStatement", "rest": [
      {"mode": "client", "resource": [{"type": "Bundle", "conditionalCreate": true}]},
      {"mode": "server", "resource": [
        {"type": "ChargeItem", "conditionalCreate": true},
        {"type": "CarePlan", "conditionalCreate": false},
        {"type": "Claim", "conditionalCreate": "true"}]}]})");
  ASSERT_TRUE(cs);
  EXPECT_TRUE(MissingConditionalCreate(*cs, {"ChargeItem"}).empty());
  EXPECT_EQ(MissingConditionalCreate(*cs, {"ChargeItem", "CarePlan", "Bundle", "Claim"}),
            (std::vector<std::string>{"CarePlan", "Bundle", "Claim"}))
      << "false, only in a client rest, and a string are not a declaration";
  EXPECT_TRUE(MissingConditionalCreate(*cs, {}).empty());
}

TEST(WriteBackConfigTest, ReadsEveryKey) {
  SyncConfig sync;
  sync.sources.push_back(SourceConfig{.name = "ehr", .base_url = "https://ehr/fhir"});
  sync.sources.push_back(SourceConfig{.name = "billing", .base_url = "https://bill/fhir"});
  auto c = ParseConfig(R"({
    "writeBack": {"carePlans": true, "chargeItems": true, "target": "billing",
                  "carePlanIdentifierSystem": "https://clinic.example/ccm-plan",
                  "author": "Organization/o1", "careTeam": "CareTeam/t1", "provenance": true,
                  "provenanceAgent": "Device/gw", "maxConflictRetries": 5,
                  "requireConditionalCreate": false},
    "billing": {"identifierSystem": "https://clinic.example/billing",
                "provider": {"reference": "Organization/o1", "name": "Clinic", "npi": "1234567893"},
                "payers": [{"name": "medicare", "display": "Medicare", "directory": "out/claims",
                            "csv": false, "requireConditionalCreate": false,
                            "endpoint": {"baseUrl": "https://payer.example/fhir",
                                         "auth": {"type": "bearer", "tokenEnv": "PAYER_TOKEN"}}}]}
  })",
                       sync);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_TRUE(c->care_plans);
  EXPECT_TRUE(c->charge_items);
  EXPECT_EQ(c->target->name, "billing");
  EXPECT_EQ(c->care_plan_identifier_system, "https://clinic.example/ccm-plan");
  EXPECT_EQ(c->author, "Organization/o1");
  EXPECT_EQ(c->care_team, "CareTeam/t1");
  EXPECT_TRUE(c->provenance);
  EXPECT_EQ(c->agent, "Device/gw");
  EXPECT_EQ(c->max_conflict_retries, 5);
  EXPECT_FALSE(c->require_conditional_create);
  EXPECT_EQ(c->identifier_system, "https://clinic.example/billing");
  EXPECT_EQ(c->provider.npi, "1234567893");
  ASSERT_EQ(c->payers.size(), 1u);
  EXPECT_EQ(c->payers[0].directory, std::filesystem::path("/etc/ccm/out/claims"));
  EXPECT_FALSE(c->payers[0].csv);
  EXPECT_FALSE(c->payers[0].require_conditional_create);
  ASSERT_TRUE(c->payers[0].endpoint);
  EXPECT_EQ(c->payers[0].endpoint->name, "medicare");
  EXPECT_EQ(c->payers[0].endpoint->auth.token, "t0k3n");
  // A target that is not a synced source: a billing FHIR endpoint of its own.
  auto billing_server = ParseConfig(R"({"writeBack": {"chargeItems": true,
      "target": {"baseUrl": "https://billing.example/fhir", "auth": {"type": "bearer", "tokenEnv": "PAYER_TOKEN"}}}})",
                                    sync);
  ASSERT_TRUE(billing_server) << billing_server.error().message;
  EXPECT_EQ(billing_server->target->base_url, "https://billing.example/fhir");
  EXPECT_EQ(billing_server->target->auth.token, "t0k3n");
  // Defaults: off, the first source.
  auto d = ParseConfig(R"({"writeBack": {}})", sync);
  ASSERT_TRUE(d);
  EXPECT_FALSE(d->care_plans);
  EXPECT_FALSE(d->any_output());
  EXPECT_EQ(d->target->name, "ehr");
}

TEST(WriteBackConfigTest, MistakesAreNamedWithTheirKey) {
  SyncConfig sync;
  sync.sources.push_back(SourceConfig{.name = "ehr", .base_url = "https://ehr/fhir"});
  auto expect_error = [&](const std::string& text, std::string_view needle) {
    auto c = ParseConfig(text, sync);
    ASSERT_FALSE(c) << text;
    EXPECT_NE(c.error().message.find(needle), std::string::npos) << c.error().message;
    EXPECT_TRUE(c.error().message.starts_with("site.json: ")) << c.error().message;
  };
  expect_error(R"({"writeBack": {"carePlan": true}})", "writeBack.carePlan: unknown key");
  expect_error(R"({"writeBack": {"target": "nope"}})", "writeBack.target: \"nope\" is not");
  expect_error(R"({"writeBack": {"author": "Dr Smith"}})", "writeBack.author");
  expect_error(R"({"billing": {"provider": {"name": "C", "npi": "1234567890"}}})",
               "billing.provider.npi: \"1234567890\" is not a valid NPI");
  expect_error(R"({"billing": {"payers": [{"name": "m"}]}})", "billing.payers[0]: a payer needs");
  expect_error(R"({"billing": {"payers": [{"name": "bad name", "directory": "x"}]}})",
               "billing.payers[0].name");
  expect_error(R"({"billing": {"provider": {"name": "C", "npi": "1234567893"},
                   "payers": [{"name": "m", "endpoint": {"baseUrl": "https://p",
                               "auth": {"type": "bearer", "token": "secret"}}}]}})",
               "billing.payers[0].endpoint.auth.token: secrets are not taken from the config");
  expect_error(R"({"billing": {"payers": [{"name": "m", "directory": "x"}]}})",
               "billing.provider: claims need the billing provider");
  SyncConfig none;
  auto c = ParseConfig(R"({"writeBack": {"carePlans": true}})", none);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("configure a source"), std::string::npos);
}

TEST(WriteBackConfigTest, ShippedBillExampleLoads) {
  std::filesystem::path example = ccm::testing::SourceDir() / "config" / "bill-example.json";
  EnvLookup env = [](const std::string& name) -> std::optional<std::string> {
    if (name == "EHR_TOKEN" || name == "MAC_TOKEN") return "t";
    return std::nullopt;
  };
  auto sync = LoadSyncConfig(example, env);
  ASSERT_TRUE(sync) << sync.error().message;
  auto wb = LoadWriteBackConfig(example, env, *sync);
  ASSERT_TRUE(wb) << wb.error().message;
  EXPECT_TRUE(wb->care_plans);
  EXPECT_TRUE(wb->charge_items);
  EXPECT_EQ(wb->target->name, "main-ehr");
  ASSERT_EQ(wb->payers.size(), 1u);
  EXPECT_EQ(wb->payers[0].directory, std::filesystem::path("/var/lib/ccm-gateway/claims"));
  EXPECT_EQ(wb->payers[0].endpoint->auth.token, "t");
  auto engine = LoadEngineConfig(example);
  ASSERT_TRUE(engine) << engine.error().message;
  EXPECT_EQ(engine->practice.time_zone_name, "America/New_York");
}

}  // namespace
}  // namespace ccm::gateway
