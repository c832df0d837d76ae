#include "fhir/datatypes.h"

#include <gtest/gtest.h>

namespace ccm::fhir {
namespace {

json::Value J(std::string_view text) {
  auto v = json::Parse(text);
  EXPECT_TRUE(v) << text;
  return v ? std::move(*v) : json::Value();
}

std::string Dump(const IssueList& issues) {
  std::string out;
  for (const auto& i : issues) out += FormatIssue(i) + "\n";
  return out;
}

Quantity Q(std::string_view value, std::string_view code,
           std::string_view system = "http://unitsofmeasure.org") {
  Quantity q;
  q.value = Decimal{std::string(value)};
  q.code = std::string(code);
  q.system = std::string(system);
  return q;
}

TEST(ReferenceTest, RelativeAndVersioned) {
  auto r = ParseReferenceString("Patient/79a66c97-6131-3213-f3c9-4606946ab056");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, ReferenceKind::kRelative);
  EXPECT_EQ(r->type, "Patient");
  EXPECT_EQ(r->id, "79a66c97-6131-3213-f3c9-4606946ab056");
  EXPECT_EQ(r->Key(), "Patient/79a66c97-6131-3213-f3c9-4606946ab056");

  auto v = ParseReferenceString("Patient/123/_history/2");
  ASSERT_TRUE(v);
  EXPECT_EQ(v->kind, ReferenceKind::kRelative);
  EXPECT_EQ(v->id, "123");
  EXPECT_EQ(v->version, "2");
  EXPECT_EQ(v->Key(), "Patient/123");
}

TEST(ReferenceTest, Absolute) {
  auto r = ParseReferenceString("https://ehr.example/fhir/Patient/123");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, ReferenceKind::kAbsolute);
  EXPECT_EQ(r->base, "https://ehr.example/fhir");
  EXPECT_EQ(r->type, "Patient");
  EXPECT_EQ(r->id, "123");
  EXPECT_EQ(r->Key(), "Patient/123");

  auto h = ParseReferenceString("http://example.org/fhir/Patient/12423/_history/1");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->base, "http://example.org/fhir");
  EXPECT_EQ(h->version, "1");

  // From Claim examples: an absolute URL that is not a FHIR REST URL.
  auto other = ParseReferenceString("http://www.optdocs.com/prescription/12345");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->kind, ReferenceKind::kAbsolute);
  EXPECT_EQ(other->type, "");
  EXPECT_FALSE(other->Key());
}

TEST(ReferenceTest, ContainedAndUrns) {
  auto c = ParseReferenceString("#coverage-1");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->kind, ReferenceKind::kContained);
  EXPECT_EQ(c->id, "coverage-1");
  EXPECT_FALSE(c->Key());

  auto u = ParseReferenceString("urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->kind, ReferenceKind::kUrn);
  EXPECT_EQ(u->urn, "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a");
  auto o = ParseReferenceString("urn:oid:2.16.840.1.113883.4.3.25");
  ASSERT_TRUE(o);
  EXPECT_EQ(o->kind, ReferenceKind::kUrn);

  EXPECT_FALSE(ParseReferenceString("urn:uuid:not-a-uuid"));
  // R4's uuid is lower-case hex; the validator's uuid check and the reference agree on it.
  EXPECT_FALSE(ParseReferenceString("urn:uuid:61EBE359-bfdc-4613-8bf2-c5e300945f0a"));
  EXPECT_FALSE(IsUuidUrn("urn:uuid:61EBE359-bfdc-4613-8bf2-c5e300945f0a"));
  EXPECT_TRUE(IsUuidUrn("urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"));
  EXPECT_FALSE(ParseReferenceString("urn:oid:1..2"));
  EXPECT_FALSE(ParseReferenceString("urn:oid:1.02")) << "no leading zero in an arc";
  EXPECT_TRUE(IsOidUrn("urn:oid:1.0.3"));
  EXPECT_FALSE(ParseReferenceString("urn:isbn:12345"));
}

TEST(ReferenceTest, ConditionalAsSyntheaWritesIt) {
  auto r =
      ParseReferenceString("Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999974493");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, ReferenceKind::kConditional);
  EXPECT_EQ(r->type, "Practitioner");
  EXPECT_EQ(r->query, "identifier=http://hl7.org/fhir/sid/us-npi|9999974493");
  EXPECT_FALSE(r->Key());
  auto id = r->SearchIdentifier();
  ASSERT_TRUE(id);
  EXPECT_EQ(id->system, kNpiSystem);
  EXPECT_EQ(id->value, "9999974493");

  auto loc = ParseReferenceString(
      "Location?identifier=https://github.com/synthetichealth/synthea|"
      "3b23bdf7-5bd6-30bf-85a9-a37d7d74938a");
  ASSERT_TRUE(loc);
  EXPECT_EQ(loc->SearchIdentifier()->value, "3b23bdf7-5bd6-30bf-85a9-a37d7d74938a");
  EXPECT_FALSE(ParseReferenceString("Patient?name=x&birthdate=2000")->SearchIdentifier());
  EXPECT_FALSE(ParseReferenceString("Nonsense?identifier=a|b"));
  // An absolute URL with a query is still absolute (opaque, no Type/id key).
  auto abs_query = ParseReferenceString("https://ehr.example/fhir/Patient?identifier=x|1");
  ASSERT_TRUE(abs_query);
  EXPECT_EQ(abs_query->kind, ReferenceKind::kAbsolute);
  EXPECT_FALSE(abs_query->Key());
  EXPECT_FALSE(ParseReferenceString("Patient?"));
}

TEST(ReferenceTest, InvalidForms) {
  for (const char* bad : {"", "Patient", "Patient/", "patient/1", "Foo/1", "Patient/1 2",
                          "Patient/a_b", "fhir/Patient/1/extra/x", "#bad id"}) {
    EXPECT_FALSE(ParseReferenceString(bad)) << bad;
  }
}

TEST(ReferenceTest, ReadLogicalDisplayAndTypeChecks) {
  IssueList issues;
  auto logical = ReadReference(
      J(R"({"identifier":{"system":"http://hl7.org/fhir/sid/us-npi","value":"9999974493"}})"),
      "X.performer", issues);
  EXPECT_EQ(logical.kind, ReferenceKind::kLogical);
  EXPECT_EQ(logical.SearchIdentifier()->value, "9999974493");

  auto display = ReadReference(J(R"({"display":"Dr. Adams"})"), "X.performer", issues);
  EXPECT_EQ(display.kind, ReferenceKind::kDisplayOnly);
  EXPECT_EQ(display.display, "Dr. Adams");

  auto typed = ReadReference(J(R"({"type":"Patient","identifier":{"value":"1"}})"), "X.s", issues);
  EXPECT_EQ(typed.type, "Patient");
  EXPECT_TRUE(issues.empty()) << Dump(issues);

  ReadReference(J(R"({"reference":"Group/1"})"), "X.subject", issues, {"Patient"});
  ReadReference(J(R"({"reference":"Patient/1","type":"Group"})"), "X.y", issues);
  ReadReference(J(R"({"reference":"not a ref"})"), "X.z", issues);
  ASSERT_EQ(issues.size(), 3u) << Dump(issues);
  EXPECT_EQ(issues.items()[0].path, "X.subject");
  EXPECT_EQ(issues.items()[1].path, "X.y.type");
  EXPECT_EQ(issues.items()[2].path, "X.z.reference");
  EXPECT_TRUE(issues.has_errors());

  IssueList none;
  EXPECT_EQ(ReadReference(J("{}"), "X", none).kind, ReferenceKind::kEmpty);
  EXPECT_TRUE(none.empty());
}

TEST(DurationTest, DecimalTextIsExact) {
  EXPECT_EQ(DurationToSeconds(Q("20.5", "min")).value(), std::chrono::seconds(1230));
  EXPECT_EQ(DurationToSeconds(Q("20", "min")).value(), std::chrono::seconds(1200));
  EXPECT_EQ(DurationToSeconds(Q("20.50", "min")).value(), std::chrono::seconds(1230));
  EXPECT_EQ(DurationToSeconds(Q("1.5", "h")).value(), std::chrono::seconds(5400));
  EXPECT_EQ(DurationToSeconds(Q("2", "d")).value(), std::chrono::seconds(172800));
  EXPECT_EQ(DurationToSeconds(Q("1", "wk")).value(), std::chrono::seconds(604800));
  EXPECT_EQ(DurationToSeconds(Q("90", "s")).value(), std::chrono::seconds(90));
  EXPECT_EQ(DurationToSeconds(Q("1e1", "min")).value(), std::chrono::seconds(600));
  EXPECT_EQ(DurationToSeconds(Q("0", "min")).value(), std::chrono::seconds(0));
  // 0.1 is not exact in binary floating point; 0.1 h is exactly 360 s.
  EXPECT_EQ(DurationToSeconds(Q("0.1", "h")).value(), std::chrono::seconds(360));
  EXPECT_EQ(DurationToMicros(Q("0.5", "s")).value(), Micros(500000));
  EXPECT_EQ(DurationToMicros(Q("1500", "ms")).value(), Micros(1500000));
}

TEST(DurationTest, Rejections) {
  EXPECT_FALSE(DurationToSeconds(Q("0.5", "s")));  // not a whole second
  EXPECT_FALSE(DurationToSeconds(Q("1", "mo")));
  EXPECT_FALSE(DurationToSeconds(Q("1", "a")));
  EXPECT_FALSE(DurationToSeconds(Q("-5", "min")));
  EXPECT_FALSE(DurationToSeconds(Q("5", "min", "http://example.org/units")));
  EXPECT_FALSE(DurationToSeconds(Q("99999999999999999", "wk")));  // overflow
  EXPECT_FALSE(DurationToMicros(Q("0.0000001", "s")));
  Quantity with_cmp = Q("20", "min");
  with_cmp.comparator = ">=";
  EXPECT_FALSE(DurationToSeconds(with_cmp));
  EXPECT_FALSE(DurationToSeconds(Quantity{}));
  // Unit text is used when there is no code.
  Quantity unit_only;
  unit_only.value = Decimal{"3"};
  unit_only.unit = "min";
  EXPECT_EQ(DurationToSeconds(unit_only).value(), std::chrono::seconds(180));
}

TEST(DecimalTest, Parts) {
  auto p = Decimal{"20.50"}.parts();
  ASSERT_TRUE(p);
  EXPECT_EQ(p->unscaled, 2050);
  EXPECT_EQ(p->scale, 2);
  auto e = Decimal{"-1.5E+3"}.parts();
  ASSERT_TRUE(e);
  EXPECT_EQ(e->unscaled, -15);
  EXPECT_EQ(e->scale, -2);
  EXPECT_FALSE(Decimal{"1.2.3"}.parts());
  EXPECT_FALSE(Decimal{"1234567890123456789"}.parts());
  EXPECT_TRUE(Decimal{"0.000000000000000000001"}.parts());
}

TEST(QuantityTest, ReadKeepsDecimalText) {
  IssueList issues;
  auto q = ReadQuantity(
      J(R"({"value":20.50,"unit":"minutes","system":"http://unitsofmeasure.org","code":"min"})"),
      "Encounter.length", issues);
  EXPECT_TRUE(issues.empty()) << Dump(issues);
  ASSERT_TRUE(q.value);
  EXPECT_EQ(q.value->text, "20.50");
  EXPECT_EQ(DurationToSeconds(q).value(), std::chrono::seconds(1230));

  ReadQuantity(J(R"({"value":"20","comparator":"~"})"), "Encounter.length", issues);
  ASSERT_EQ(issues.size(), 2u) << Dump(issues);
  EXPECT_EQ(issues.items()[0].path, "Encounter.length.value");
  EXPECT_EQ(issues.items()[1].path, "Encounter.length.comparator");
}

TEST(CodeableConceptTest, HasCodeAndFirstCode) {
  IssueList issues;
  auto cc = ReadCodeableConcept(J(R"({"coding":[
      {"system":"http://snomed.info/sct","code":"185347001","display":"Encounter for problem"},
      {"system":"http://www.ama-assn.org/go/cpt","code":"99490"},
      {"system":"http://www.ama-assn.org/go/cpt","code":"99439"}],"text":"CCM"})"),
                                "Encounter.type[0]", issues);
  EXPECT_TRUE(issues.empty());
  EXPECT_TRUE(cc.HasCode("http://www.ama-assn.org/go/cpt", "99439"));
  EXPECT_FALSE(cc.HasCode("http://snomed.info/sct", "99439"));
  EXPECT_EQ(cc.FirstCode("http://www.ama-assn.org/go/cpt"), "99490");
  EXPECT_EQ(cc.FirstCode("http://loinc.org"), "");
  EXPECT_EQ(cc.text, "CCM");

  ReadCodeableConcept(J(R"({"coding":{"code":"x"},"text":5})"), "Condition.code", issues);
  ASSERT_EQ(issues.size(), 2u) << Dump(issues);
  EXPECT_EQ(issues.items()[0].path, "Condition.code.coding");
  EXPECT_EQ(issues.items()[1].path, "Condition.code.text");
}

TEST(PeriodTest, InclusiveEndContainsOverlapsDuration) {
  IssueList issues;
  auto p =
      ReadPeriod(J(R"({"start":"1989-10-04T02:25:16-04:00","end":"1989-10-04T06:20:16-04:00"})"),
                 "Encounter.period", issues);
  EXPECT_TRUE(issues.empty()) << Dump(issues);
  // Second-precision end: the whole second 06:20:16 is included.
  EXPECT_EQ(p.Duration(), std::chrono::seconds(3 * 3600 + 55 * 60 + 1));
  const auto t = FhirDateTime::Parse("1989-10-04T10:20:16Z")->Earliest();
  EXPECT_TRUE(p.Contains(t));
  EXPECT_FALSE(p.Contains(t + std::chrono::seconds(1)));

  auto days = ReadPeriod(J(R"({"start":"2026-10-01","end":"2026-10-31"})"), "P", issues);
  EXPECT_EQ(days.Duration(), std::chrono::hours(31 * 24));
  const auto* ny = *LocateZone("America/New_York");
  EXPECT_TRUE(days.Overlaps(*MonthRange(2026, 10, ny), ny));
  EXPECT_FALSE(days.Overlaps(*MonthRange(2026, 11, ny), ny));

  auto open = ReadPeriod(J(R"({"start":"2026-10-01"})"), "P", issues);
  EXPECT_FALSE(open.Duration());
  EXPECT_TRUE(open.Contains(FhirDateTime::Parse("2099-01-01")->Earliest()));
  EXPECT_TRUE(issues.empty());

  // A zone-less end date and an offset start: consistent in New York, so not a per-1 violation.
  ReadPeriod(J(R"({"start":"2026-10-05T22:00:00-04:00","end":"2026-10-05"})"), "P", issues);
  EXPECT_TRUE(issues.empty()) << Dump(issues);
  ReadPeriod(J(R"({"start":"2026-10-05","end":"2026-10-04"})"), "Encounter.period", issues);
  ReadPeriod(J(R"({"start":"2026-02-30"})"), "Encounter.period", issues);
  ASSERT_EQ(issues.size(), 2u) << Dump(issues);
  EXPECT_EQ(issues.items()[0].code, IssueCode::kInvariant);
  EXPECT_EQ(issues.items()[1].path, "Encounter.period.start");
  EXPECT_NE(issues.items()[1].message.find("no such calendar date"), std::string::npos);
}

TEST(IdentifierTest, ReadAndFind) {
  IssueList issues;
  auto ids = ReadIdentifiers(J(R"([
      {"system":"https://github.com/synthetichealth/synthea","value":"e91975f5"},
      {"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]},
       "system":"http://hospital.smarthealthit.org","value":"mr-1","period":{"start":"2020"}},
      {"system":"http://hl7.org/fhir/sid/us-mbi","value":"1EG4-TE5-MK73"}])"),
                             "Patient.identifier", issues);
  EXPECT_TRUE(issues.empty()) << Dump(issues);
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(FindIdentifier(ids, kMbiSystem), "1EG4-TE5-MK73");
  EXPECT_EQ(FindIdentifier(ids, kNpiSystem), "");
  EXPECT_TRUE(ids[1].type.HasCode("http://terminology.hl7.org/CodeSystem/v2-0203", "MR"));
  EXPECT_TRUE(ids[1].period.start);

  ReadIdentifiers(J(R"({"value":"x"})"), "Patient.identifier", issues);
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_EQ(issues.items()[0].code, IssueCode::kStructure);
}

TEST(MetaTest, Read) {
  IssueList issues;
  auto m = ReadMeta(J(R"({"versionId":"3","lastUpdated":"2026-10-05T14:30:00.123Z",
      "source":"#abc","profile":["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"],
      "tag":[{"system":"http://example.org/tags","code":"ccm"}],
      "security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}]})"),
                    "Patient.meta", issues);
  EXPECT_TRUE(issues.empty()) << Dump(issues);
  EXPECT_EQ(m.version_id, "3");
  ASSERT_TRUE(m.last_updated);
  EXPECT_EQ(m.last_updated->microsecond(), 123000u);
  ASSERT_EQ(m.profile.size(), 1u);
  ASSERT_EQ(m.tag.size(), 1u);
  EXPECT_EQ(m.tag[0].code, "ccm");
  ASSERT_EQ(m.security.size(), 1u);
  EXPECT_EQ(m.security[0].code, "R");

  // lastUpdated is an instant: a date alone is an error.
  ReadMeta(J(R"({"lastUpdated":"2026-10-05"})"), "Patient.meta", issues);
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_EQ(issues.items()[0].path, "Patient.meta.lastUpdated");
}

TEST(ResourceTypeTest, Names) {
  EXPECT_TRUE(IsResourceType("Patient"));
  EXPECT_TRUE(IsResourceType("VisionPrescription"));
  EXPECT_TRUE(IsResourceType("Account"));
  EXPECT_FALSE(IsResourceType("patient"));
  EXPECT_FALSE(IsResourceType("Foo"));
  EXPECT_TRUE(IsValidId("a-b.C9"));
  EXPECT_FALSE(IsValidId(std::string(65, 'a')));
  EXPECT_FALSE(IsValidId("a_b"));
}

}  // namespace
}  // namespace ccm::fhir
