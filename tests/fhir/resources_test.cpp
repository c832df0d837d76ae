#include "fhir/resources.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>

#include <gtest/gtest.h>

namespace ccm::fhir {
namespace {

namespace fs = std::filesystem;

const fs::path kData = fs::path(CCM_SHARED_DATA) / "fhir";

std::string ReadText(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  EXPECT_TRUE(in) << p;
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// All resources of an NDJSON file, parsed.
std::vector<json::Value> ReadNdjson(const fs::path& p) {
  std::vector<json::Value> out;
  const std::string text = ReadText(p);
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    const std::string_view line(text.data() + pos, nl - pos);
    if (line.find_first_not_of(" \r\t") != std::string_view::npos) {
      auto v = json::Parse(line);
      EXPECT_TRUE(v) << p << ": " << (v ? "" : v.error().message);
      if (v) out.push_back(std::move(*v));
    }
    pos = nl + 1;
  }
  return out;
}

json::Value ReadJsonFile(const fs::path& p) {
  auto v = json::Parse(ReadText(p));
  EXPECT_TRUE(v) << p;
  return v ? std::move(*v) : json::Value();
}

json::Value J(std::string_view text) {
  auto v = json::Parse(text);
  EXPECT_TRUE(v) << text;
  return v ? std::move(*v) : json::Value();
}

std::string Dump(const IssueList& issues, std::size_t max = 10) {
  std::string out;
  std::size_t n = 0;
  for (const auto& i : issues) {
    if (n++ == max) break;
    out += FormatIssue(i) + "\n";
  }
  return out;
}

// Reads any resource type this layer has a view for; false for other types.
bool ReadAny(const json::Value& r, IssueList& issues) {
  const std::string_view type = ResourceType(r);
  if (type == "Patient") return PatientView::Read(r, issues), true;
  if (type == "Condition") return ConditionView::Read(r, issues), true;
  if (type == "Encounter") return EncounterView::Read(r, issues), true;
  if (type == "CarePlan") return CarePlanView::Read(r, issues), true;
  if (type == "Consent") return ConsentView::Read(r, issues), true;
  if (type == "ChargeItem") return ChargeItemView::Read(r, issues), true;
  if (type == "Claim") return ClaimView::Read(r, issues), true;
  if (type == "Bundle") return BundleView::Read(r, issues), true;
  if (type == "OperationOutcome") return OperationOutcomeView::Read(r, issues), true;
  if (type == "Practitioner") return PractitionerView::Read(r, issues), true;
  if (type == "PractitionerRole") return PractitionerRoleView::Read(r, issues), true;
  if (type == "Provenance") return ProvenanceView::Read(r, issues), true;
  return false;
}

struct SyntheaTotals {
  std::size_t encounters = 0, finished = 0, ambulatory = 0, npi_9999974493 = 0;
  std::int64_t inclusive_seconds = 0;
  std::size_t conditions = 0, active_conditions = 0, abated = 0;
  std::size_t patients = 0, deceased = 0;
  std::size_t care_plans = 0, completed_plans = 0, activities = 0, completed_activities = 0;
};

SyntheaTotals ReadSyntheaDir(const fs::path& dir, IssueList& issues) {
  SyntheaTotals t;
  for (const auto& file : fs::directory_iterator(dir)) {
    const std::string name = file.path().filename().string();
    if (name.rfind("Patient", 0) != 0 && name.rfind("Condition", 0) != 0 &&
        name.rfind("Encounter", 0) != 0 && name.rfind("CarePlan", 0) != 0) {
      continue;
    }
    for (const auto& r : ReadNdjson(file.path())) {
      IssueList these;
      const std::string_view type = ResourceType(r);
      if (type == "Encounter") {
        auto e = EncounterView::Read(r, these);
        ++t.encounters;
        if (e.status == EncounterStatus::kFinished) ++t.finished;
        if (e.encounter_class.code == "AMB") ++t.ambulatory;
        if (auto d = e.period.Duration()) {
          t.inclusive_seconds += std::chrono::duration_cast<std::chrono::seconds>(*d).count();
        }
        for (const auto& p : e.participant) {
          if (auto id = p.individual.SearchIdentifier();
              id && id->system == kNpiSystem && id->value == "9999974493") {
            ++t.npi_9999974493;
          }
        }
      } else if (type == "Condition") {
        auto c = ConditionView::Read(r, these);
        ++t.conditions;
        if (c.clinical_status_code == ConditionClinicalStatus::kActive) ++t.active_conditions;
        if (std::holds_alternative<FhirDateTime>(c.abatement)) ++t.abated;
      } else if (type == "Patient") {
        auto p = PatientView::Read(r, these);
        ++t.patients;
        if (p.deceased()) ++t.deceased;
      } else if (type == "CarePlan") {
        auto cp = CarePlanView::Read(r, these);
        ++t.care_plans;
        if (cp.status == RequestStatus::kCompleted) ++t.completed_plans;
        for (const auto& a : cp.activity) {
          ++t.activities;
          if (a.detail && a.detail->status == CarePlanActivityStatus::kCompleted) {
            ++t.completed_activities;
          }
        }
      }
      these.SetLocation(name);
      issues.Append(these);
    }
  }
  return t;
}

TEST(SyntheaTest, Bulk10PatientsReadWithoutIssues) {
  IssueList issues;
  const auto t = ReadSyntheaDir(kData / "synthea-bulk-10pt", issues);
  EXPECT_TRUE(issues.empty()) << issues.size() << " issues, first:\n" << Dump(issues);
  // Expected values counted from the files with an independent script (python json module).
  EXPECT_EQ(t.encounters, 1215u);
  EXPECT_EQ(t.finished, 1215u);
  EXPECT_EQ(t.ambulatory, 1133u);
  EXPECT_EQ(t.npi_9999974493, 499u);
  EXPECT_EQ(t.inclusive_seconds, 38841490);
  EXPECT_EQ(t.conditions, 555u);
  EXPECT_EQ(t.active_conditions, 107u);
  EXPECT_EQ(t.abated, 448u);
  EXPECT_EQ(t.patients, 13u);
  EXPECT_EQ(t.deceased, 3u);
}

TEST(SyntheaTest, G10TwoPatientsReadWithoutIssues) {
  IssueList issues;
  const auto t = ReadSyntheaDir(kData / "synthea-g10-2pt", issues);
  EXPECT_TRUE(issues.empty()) << issues.size() << " issues, first:\n" << Dump(issues);
  EXPECT_EQ(t.encounters, 189u);
  EXPECT_EQ(t.finished, 189u);
  EXPECT_EQ(t.ambulatory, 176u);
  EXPECT_EQ(t.inclusive_seconds, 556089);
  EXPECT_EQ(t.conditions, 42u);
  EXPECT_EQ(t.active_conditions, 8u);
  EXPECT_EQ(t.abated, 34u);
  EXPECT_EQ(t.patients, 2u);
  EXPECT_EQ(t.deceased, 1u);
  EXPECT_EQ(t.care_plans, 26u);
  EXPECT_EQ(t.completed_plans, 20u);
  EXPECT_EQ(t.activities, 57u);
  EXPECT_EQ(t.completed_activities, 42u);
}

TEST(SyntheaTest, SpotCheckFirstRecords) {
  IssueList issues;
  const auto encounters = ReadNdjson(kData / "synthea-bulk-10pt" / "Encounter.000.ndjson");
  ASSERT_FALSE(encounters.empty());
  auto e = EncounterView::Read(encounters[0], issues);
  EXPECT_EQ(e.id, "00c7f717-4030-5582-2ed8-888ad2bc878e");
  EXPECT_EQ(ResourceKey(e.json()), "Encounter/00c7f717-4030-5582-2ed8-888ad2bc878e");
  EXPECT_EQ(e.status_text, "finished");
  EXPECT_EQ(e.subject.Key(), "Patient/79a66c97-6131-3213-f3c9-4606946ab056");
  EXPECT_EQ(e.subject.display, "Mrs. Marine542 Ai120 Upton904");
  ASSERT_TRUE(e.period.start);
  EXPECT_EQ(e.period.start->text(), "1989-10-04T02:25:16-04:00");
  EXPECT_EQ(FormatUtc(e.period.start->Earliest()), "1989-10-04T06:25:16Z");
  EXPECT_EQ(e.period.Duration(), std::chrono::seconds(3 * 3600 + 55 * 60 + 1));
  EXPECT_TRUE(AnyHasCode(e.reason_code, "http://snomed.info/sct", "46177005"));
  EXPECT_TRUE(AnyHasCode(e.type, "http://snomed.info/sct", "185347001"));
  ASSERT_EQ(e.participant.size(), 1u);
  EXPECT_EQ(e.participant[0].individual.kind, ReferenceKind::kConditional);
  EXPECT_TRUE(AnyHasCode(e.participant[0].type,
                         "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "PPRF"));
  EXPECT_EQ(e.service_provider.kind, ReferenceKind::kConditional);
  EXPECT_EQ(e.service_provider.type, "Organization");
  ASSERT_EQ(e.location.size(), 1u);
  EXPECT_EQ(e.location[0].location.SearchIdentifier()->value,
            "3b23bdf7-5bd6-30bf-85a9-a37d7d74938a");
  ASSERT_EQ(e.meta.profile.size(), 1u);

  const auto patients = ReadNdjson(kData / "synthea-g10-2pt" / "Patient.ndjson");
  ASSERT_FALSE(patients.empty());
  auto p = PatientView::Read(patients[0], issues);
  EXPECT_EQ(p.id, "e91975f5-9445-c11f-cabf-c3c6dae161f2");
  ASSERT_TRUE(p.birth_date);
  EXPECT_EQ(p.birth_date->text(), "1940-09-05");
  EXPECT_EQ(p.birth_date->precision(), DateTimePrecision::kDay);
  EXPECT_EQ(FindIdentifier(p.identifier, "http://hl7.org/fhir/sid/us-ssn"), "999-61-9797");
  EXPECT_EQ(p.mbi(), "");

  const auto plans = ReadNdjson(kData / "synthea-g10-2pt" / "CarePlan.ndjson");
  ASSERT_FALSE(plans.empty());
  auto cp = CarePlanView::Read(plans[0], issues);
  EXPECT_EQ(cp.id, "df629a86-f44c-9088-8ae1-8ea19651c019");
  EXPECT_EQ(cp.status, RequestStatus::kActive);
  EXPECT_EQ(cp.intent, CarePlanIntent::kOrder);
  EXPECT_EQ(cp.text_status, NarrativeStatus::kGenerated);
  EXPECT_TRUE(AnyHasCode(cp.category, "http://hl7.org/fhir/us/core/CodeSystem/careplan-category",
                         "assess-plan"));
  ASSERT_EQ(cp.activity.size(), 3u);
  ASSERT_TRUE(cp.activity[0].detail);
  EXPECT_TRUE(cp.activity[0].detail->code.HasCode("http://snomed.info/sct", "409002"));
  EXPECT_EQ(cp.activity[0].detail->status, CarePlanActivityStatus::kInProgress);
  ASSERT_EQ(cp.care_team.size(), 1u);
  EXPECT_EQ(cp.care_team[0].Key(), "CareTeam/a5a74bc6-6cae-0859-472a-bc48e8aa1ded");
  EXPECT_FALSE(cp.period.end);  // ongoing
  EXPECT_TRUE(issues.empty()) << Dump(issues);
}

TEST(SpecExamplesTest, AllReadWithoutIssues) {
  std::map<std::string, int> counts;
  IssueList all;
  for (const auto& file : fs::directory_iterator(kData / "spec-r4-examples")) {
    if (file.path().extension() != ".json" || file.path().filename() == "_package.json") continue;
    const json::Value r = ReadJsonFile(file.path());
    IssueList issues;
    if (!ReadAny(r, issues)) continue;
    ++counts[std::string(ResourceType(r))];
    issues.SetLocation(file.path().filename().string());
    all.Append(issues);
    // Bundle entries are read too, through the typed view of their own type.
    if (ResourceType(r) == "Bundle") {
      IssueList entry_issues;
      for (const auto& e : BundleView::Read(r, entry_issues).entry) {
        if (e.resource != nullptr) ReadAny(*e.resource, entry_issues);
      }
      entry_issues.SetLocation(file.path().filename().string());
      all.Append(entry_issues);
    }
  }
  EXPECT_TRUE(all.empty()) << all.size() << " issues, first:\n" << Dump(all, 30);
  EXPECT_EQ(counts["Condition"], 12);
  EXPECT_EQ(counts["Encounter"], 10);
  EXPECT_EQ(counts["CarePlan"], 11);
  EXPECT_EQ(counts["Consent"], 12);
  EXPECT_EQ(counts["ChargeItem"], 1);
  EXPECT_EQ(counts["Claim"], 17);
  EXPECT_EQ(counts["Patient"], 3);
  EXPECT_EQ(counts["Bundle"], 4);
  EXPECT_EQ(counts["OperationOutcome"], 6);
}

TEST(SpecExamplesTest, SpotChecks) {
  const fs::path dir = kData / "spec-r4-examples";
  IssueList issues;

  const auto enc_json = ReadJsonFile(dir / "Encounter-f001.json");
  auto enc = EncounterView::Read(enc_json, issues);
  EXPECT_EQ(enc.status, EncounterStatus::kFinished);
  EXPECT_EQ(enc.encounter_class.code, "AMB");
  EXPECT_EQ(DurationToSeconds(enc.length).value(), std::chrono::seconds(140 * 60));
  EXPECT_EQ(enc.participant.at(0).individual.Key(), "Practitioner/f002");
  EXPECT_EQ(enc.service_provider.Key(), "Organization/f001");

  const auto f202 = ReadJsonFile(dir / "Condition-f202.json");
  auto cond = ConditionView::Read(f202, issues);
  ASSERT_TRUE(std::holds_alternative<Quantity>(cond.onset));
  EXPECT_EQ(std::get<Quantity>(cond.onset).value->text, "52");
  EXPECT_EQ(std::get<Quantity>(cond.onset).code, "a");
  const auto ex2 = ReadJsonFile(dir / "Condition-example2.json");
  auto cond2 = ConditionView::Read(ex2, issues);
  ASSERT_TRUE(std::holds_alternative<std::string>(cond2.onset));
  EXPECT_EQ(std::get<std::string>(cond2.onset), "approximately November 2012");
  const auto f201 = ReadJsonFile(dir / "Condition-f201.json");
  auto cond3 = ConditionView::Read(f201, issues);
  ASSERT_TRUE(std::holds_alternative<FhirDateTime>(cond3.onset));
  EXPECT_EQ(std::get<FhirDateTime>(cond3.onset).text(), "2013-04-02");
  EXPECT_EQ(std::get<std::string>(cond3.abatement), "around April 9, 2013");
  EXPECT_EQ(cond3.recorded_date->text(), "2013-04-04");

  const auto claim_json = ReadJsonFile(dir / "Claim-100150.json");
  auto claim = ClaimView::Read(claim_json, issues);
  EXPECT_EQ(claim.status, FinancialResourceStatus::kActive);
  EXPECT_EQ(claim.use, ClaimUse::kClaim);
  EXPECT_EQ(claim.patient.Key(), "Patient/1");
  EXPECT_EQ(claim.provider.Key(), "Organization/1");
  ASSERT_EQ(claim.item.size(), 1u);
  EXPECT_EQ(claim.item[0].sequence, 1);
  EXPECT_EQ(claim.item[0].product_or_service.coding.at(0).code, "1200");
  EXPECT_EQ(claim.item[0].net.value->text, "135.57");
  EXPECT_EQ(std::get<FhirDateTime>(claim.item[0].serviced).text(), "2014-08-16");
  const auto claim2_json = ReadJsonFile(dir / "Claim-960151.json");
  auto claim2 = ClaimView::Read(claim2_json, issues);
  EXPECT_EQ(claim2.total.value->text, "125.00");
  EXPECT_EQ(claim2.billable_period.Duration(), std::chrono::hours(48));

  const auto tx_json = ReadJsonFile(dir / "Bundle-bundle-transaction.json");
  auto tx = BundleView::Read(tx_json, issues);
  EXPECT_EQ(tx.type, BundleType::kTransaction);
  ASSERT_EQ(tx.entry.size(), 10u);
  EXPECT_EQ(tx.entry[3].request->method, HttpVerb::kPut);
  EXPECT_EQ(tx.entry[3].request->url, "Patient?identifier=http:/example.org/fhir/ids|456456");
  EXPECT_EQ(tx.entry[5].request->method, HttpVerb::kDelete);
  EXPECT_EQ(tx.entry[5].resource, nullptr);
  ASSERT_NE(tx.entry[0].resource, nullptr);
  EXPECT_EQ(ResourceType(*tx.entry[0].resource), "Patient");
  // Entry resources point into the Bundle's own JSON, not into a copy.
  EXPECT_EQ(tx.entry[0].resource, &tx_json["entry"][0]["resource"]);

  const auto resp_json = ReadJsonFile(dir / "Bundle-bundle-response.json");
  auto resp = BundleView::Read(resp_json, issues);
  EXPECT_EQ(resp.type, BundleType::kTransactionResponse);
  EXPECT_EQ(resp.entry[0].response->status, "201 Created");
  EXPECT_EQ(resp.entry[0].response->last_modified->text(), "2014-08-18T01:43:33Z");
  EXPECT_EQ(*ParseReferenceString(resp.entry[0].response->location)->Key(), "Patient/12423");

  const auto search_json = ReadJsonFile(dir / "Bundle-bundle-example.json");
  auto search = BundleView::Read(search_json, issues);
  EXPECT_EQ(search.total, 3u);
  EXPECT_EQ(search.LinkUrl("next"),
            "https://example.com/base/MedicationRequest?patient=347&searchId="
            "ff15fd40-ff71-4b48-b366-09c706bed9d0&page=2");

  const auto oo_json = ReadJsonFile(dir / "OperationOutcome-validationfail.json");
  auto oo = OperationOutcomeView::Read(oo_json, issues);
  ASSERT_EQ(oo.issue.size(), 1u);
  EXPECT_EQ(oo.issue[0].severity, Severity::kError);
  EXPECT_EQ(oo.issue[0].code, "structure");
  EXPECT_EQ(oo.issue[0].expression.at(0), "Patient.identifier");

  const auto ci_json = ReadJsonFile(dir / "ChargeItem-example.json");
  auto ci = ChargeItemView::Read(ci_json, issues);
  EXPECT_EQ(ci.status, ChargeItemStatus::kBillable);
  EXPECT_EQ(ci.subject.Key(), "Patient/example");
  EXPECT_EQ(RangeOf(ci.occurrence).duration(),
            std::chrono::minutes(4 * 60 + 35) + std::chrono::seconds(1));
  EXPECT_EQ(ci.performer.size(), 2u);
  EXPECT_EQ(ci.quantity.value->text, "1");

  const auto consent_json = ReadJsonFile(dir / "Consent-consent-example-basic.json");
  auto consent = ConsentView::Read(consent_json, issues);
  EXPECT_EQ(consent.status, ConsentStatus::kActive);
  EXPECT_TRUE(consent.scope.HasCode("http://terminology.hl7.org/CodeSystem/consentscope",
                                    "patient-privacy"));
  EXPECT_EQ(consent.patient.Key(), "Patient/f001");
  EXPECT_EQ(consent.date_time->text(), "2016-05-11");
  ASSERT_TRUE(consent.provision);
  EXPECT_FALSE(consent.provision->type);
  EXPECT_EQ(consent.provision->period.end->text(), "2016-01-01");
  EXPECT_TRUE(
      consent.policy_rule.HasCode("http://terminology.hl7.org/CodeSystem/v3-ActCode", "OPTIN"));

  const auto cp_json = ReadJsonFile(dir / "CarePlan-example.json");
  auto cp = CarePlanView::Read(cp_json, issues);
  EXPECT_EQ(cp.status, RequestStatus::kActive);
  EXPECT_EQ(cp.intent, CarePlanIntent::kPlan);
  EXPECT_EQ(cp.period.end->text(), "2017-06-01");
  ASSERT_TRUE(cp.activity.at(0).detail);
  EXPECT_EQ(cp.activity[0].detail->status, CarePlanActivityStatus::kCompleted);
  EXPECT_EQ(cp.activity[0].detail->do_not_perform, false);
  EXPECT_EQ(cp.activity[0].detail->location.kind, ReferenceKind::kDisplayOnly);

  const auto pat_json = ReadJsonFile(dir / "Patient-example.json");
  auto pat = PatientView::Read(pat_json, issues);
  EXPECT_EQ(pat.birth_date->text(), "1974-12-25");
  EXPECT_EQ(pat.deceased_boolean, false);
  EXPECT_FALSE(pat.deceased());
  EXPECT_EQ(FindIdentifier(pat.identifier, "urn:oid:1.2.36.146.595.217.0.1"), "12345");

  EXPECT_TRUE(issues.empty()) << Dump(issues);
}

TEST(ResourcesTest, UnknownCodesAreIssuesNotCrashes) {
  const auto r = J(R"({"resourceType":"Encounter","id":"e1","status":"done",
      "class":{"code":"AMB"},"period":{"start":"2026-02-30"}})");
  IssueList issues;
  auto e = EncounterView::Read(r, issues);
  EXPECT_FALSE(e.status);
  EXPECT_EQ(e.status_text, "done");
  ASSERT_EQ(issues.size(), 2u) << Dump(issues);
  EXPECT_EQ(issues.items()[0].path, "Encounter.status");
  EXPECT_EQ(issues.items()[0].code, IssueCode::kCodeInvalid);
  EXPECT_NE(issues.items()[0].message.find("planned | arrived"), std::string::npos);
  EXPECT_EQ(issues.items()[1].path, "Encounter.period.start");

  IssueList more;
  const auto cond = J(R"({"resourceType":"Condition","clinicalStatus":{"coding":[
      {"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"gone"}]},
      "subject":{"reference":"Patient/1"},"onsetDateTime":"2020","onsetString":"x"})");
  ConditionView::Read(cond, more);
  ASSERT_EQ(more.size(), 2u) << Dump(more);
  EXPECT_EQ(more.items()[0].path, "Condition.clinicalStatus");
  EXPECT_EQ(more.items()[1].path, "Condition.onsetString");
}

TEST(ResourcesTest, RequiredElementsAndWrongType) {
  IssueList issues;
  const auto wrong = J(R"({"resourceType":"Patient","id":"bad_id"})");
  EncounterView::Read(wrong, issues);
  std::vector<std::string> paths;
  for (const auto& i : issues) paths.push_back(i.path);
  EXPECT_EQ(paths, (std::vector<std::string>{"Encounter.resourceType", "Encounter.id",
                                             "Encounter.status", "Encounter.class"}));

  IssueList cp;
  const auto plan = J(R"({"resourceType":"CarePlan","status":"active","intent":"order",
      "subject":{"reference":"Practitioner/1"},
      "activity":[{"reference":{"reference":"ServiceRequest/1"},"detail":{"status":"done"}}]})");
  CarePlanView::Read(plan, cp);
  paths.clear();
  for (const auto& i : cp) paths.push_back(i.path);
  EXPECT_EQ(paths,
            (std::vector<std::string>{"CarePlan.subject", "CarePlan.activity[0].detail.status",
                                      "CarePlan.activity[0]"}));
}

TEST(ResourcesTest, PrimitiveExtensionSatisfiesRequired) {
  // R4 §2.6.2.4: "_status" alone (e.g. data-absent-reason) means the element is present.
  const auto r = J(R"({"resourceType":"Encounter","_status":{"extension":[{"url":
      "http://hl7.org/fhir/StructureDefinition/data-absent-reason","valueCode":"unknown"}]},
      "class":{"code":"AMB"}})");
  IssueList issues;
  auto e = EncounterView::Read(r, issues);
  EXPECT_TRUE(issues.empty()) << Dump(issues);
  EXPECT_FALSE(e.status);
}

TEST(ResourcesTest, ViewsNeitherCopyNorChangeTheJson) {
  const auto r =
      J(R"({"resourceType":"Patient","id":"p1","extension":[{"url":"x","valueString":"y"}],
      "_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime",
      "valueDateTime":"1974-12-25T14:35:45-05:00"}]},"birthDate":"1974-12-25","unknownThing":1.50,
      "identifier":[{"system":"http://hl7.org/fhir/sid/us-mbi","value":"1EG4-TE5-MK72"}],
      "deceasedDateTime":"2020-01-01T00:00:00Z"})");
  const std::string before = json::Serialize(r);
  IssueList issues;
  auto p = PatientView::Read(r, issues);
  EXPECT_TRUE(issues.empty()) << Dump(issues);
  EXPECT_EQ(&p.json(), &r);
  EXPECT_EQ(json::Serialize(p.json()), before);
  EXPECT_EQ(p.json()["unknownThing"].number_text(), "1.50");
  EXPECT_EQ(p.mbi(), "1EG4-TE5-MK72");
  EXPECT_TRUE(p.deceased());
  EXPECT_EQ(ResourceKey(r), "Patient/p1");
  EXPECT_EQ(ResourceKey(J(R"({"resourceType":"Patient"})")), "");
  EXPECT_EQ(ResourceType(J("[]")), "");
}

TEST(ResourcesTest, PractitionerRoleAndProvenance) {
  IssueList issues;
  const auto prac_json = J(R"({"resourceType":"Practitioner","id":"pr1","active":true,
      "identifier":[{"system":"http://hl7.org/fhir/sid/us-npi","value":"9999974493"}]})");
  auto prac = PractitionerView::Read(prac_json, issues);
  EXPECT_EQ(prac.npi(), "9999974493");
  EXPECT_EQ(prac.active, true);

  const auto role_json = J(R"({"resourceType":"PractitionerRole","id":"r1",
      "practitioner":{"reference":"Practitioner/pr1"},"organization":{"reference":"Organization/o1"},
      "code":[{"coding":[{"system":"http://nucc.org/provider-taxonomy","code":"207Q00000X"}]}]})");
  auto role = PractitionerRoleView::Read(role_json, issues);
  EXPECT_EQ(role.practitioner.Key(), "Practitioner/pr1");
  EXPECT_EQ(role.organization.Key(), "Organization/o1");
  EXPECT_TRUE(AnyHasCode(role.code, "http://nucc.org/provider-taxonomy", "207Q00000X"));

  const auto prov_json = J(R"({"resourceType":"Provenance","id":"pv1",
      "target":[{"reference":"Encounter/e1/_history/2"}],"recorded":"2026-10-05T14:30:00.5-04:00",
      "agent":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/provenance-participant-type","code":"author"}]},
      "who":{"reference":"Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999974493"}}]})");
  auto prov = ProvenanceView::Read(prov_json, issues);
  ASSERT_EQ(prov.target.size(), 1u);
  EXPECT_EQ(prov.target[0].version, "2");
  EXPECT_EQ(FormatUtc(prov.recorded->Earliest()), "2026-10-05T18:30:00.500000Z");
  EXPECT_EQ(prov.agent.at(0).who.SearchIdentifier()->value, "9999974493");
  EXPECT_TRUE(issues.empty()) << Dump(issues);

  IssueList bad;
  const auto bad_prov = J(R"({"resourceType":"Provenance","recorded":"2026-10-05"})");
  ProvenanceView::Read(bad_prov, bad);
  std::vector<std::string> paths;
  for (const auto& i : bad) paths.push_back(i.path);
  // recorded is present but is a date, not an instant: one value issue, no "required" issue.
  EXPECT_EQ(paths, (std::vector<std::string>{"Provenance.target", "Provenance.recorded",
                                             "Provenance.agent"}));
  EXPECT_EQ(bad.items()[1].code, IssueCode::kValue);
}

TEST(CodesTest, RoundTrip) {
  for (int i = 0; i <= static_cast<int>(EncounterStatus::kUnknown); ++i) {
    const auto s = static_cast<EncounterStatus>(i);
    EXPECT_EQ(ParseEncounterStatus(ToCode(s)), s) << i;
  }
  for (int i = 0; i <= static_cast<int>(RequestStatus::kUnknown); ++i) {
    const auto s = static_cast<RequestStatus>(i);
    EXPECT_EQ(ParseRequestStatus(ToCode(s)), s) << i;
  }
  for (int i = 0; i <= static_cast<int>(ConsentStatus::kEnteredInError); ++i) {
    const auto s = static_cast<ConsentStatus>(i);
    EXPECT_EQ(ParseConsentStatus(ToCode(s)), s) << i;
  }
  for (int i = 0; i <= static_cast<int>(ChargeItemStatus::kUnknown); ++i) {
    const auto s = static_cast<ChargeItemStatus>(i);
    EXPECT_EQ(ParseChargeItemStatus(ToCode(s)), s) << i;
  }
  EXPECT_EQ(ToCode(EncounterStatus::kInProgress), "in-progress");
  EXPECT_EQ(ToCode(EncounterStatus::kOnLeave), "onleave");
  EXPECT_EQ(ParseEncounterStatus("on-leave"), std::nullopt);
  EXPECT_EQ(ParseEncounterStatus("Finished"), std::nullopt);
  EXPECT_EQ(ParseConsentProvisionType("permit"), ConsentProvisionType::kPermit);
  EXPECT_EQ(ParseHttpVerb("get"), std::nullopt);
  EXPECT_EQ(ToCode(BundleType::kTransactionResponse), "transaction-response");
  EXPECT_EQ(ToCode(CarePlanActivityStatus::kNotStarted), "not-started");
  EXPECT_TRUE(IsIssueTypeCode("business-rule"));
  EXPECT_FALSE(IsIssueTypeCode("oops"));
}

}  // namespace
}  // namespace ccm::fhir
