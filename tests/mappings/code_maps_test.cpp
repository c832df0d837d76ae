// ChronicConditionMap, CodeSet and the file loaders, on small hand-written ConceptMaps/ValueSets.
#include "mappings/code_maps.h"

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "fhir/json.h"
#include "mappings/code_systems.h"
#include "test_util.h"

namespace ccm::mappings {
namespace {

namespace json = fhir::json;
using ::ccm::testing::TempDir;
using ::ccm::testing::WriteFile;

json::Value P(std::string_view text) {
  auto v = json::Parse(text);
  EXPECT_TRUE(v) << (v ? "" : v.error().message);
  return v ? *v : json::Value();
}

// A ConceptMap with one group from `source` whose elements are `elements` (JSON text).
std::string ConceptMap(std::string_view source, std::string_view elements) {
  return std::string(R"({"resourceType":"ConceptMap","status":"active","group":[{"source":")") +
         std::string(source) + R"(","target":"urn:ccm-gateway:chronic-category","element":[)" +
         std::string(elements) + "]}]}";
}

std::string Element(std::string_view code, std::string_view category,
                    std::string_view equivalence = "wider") {
  return std::string(R"({"code":")") + std::string(code) + R"(","target":[{"code":")" +
         std::string(category) + R"(","display":"Cat )" + std::string(category) +
         R"(","equivalence":")" + std::string(equivalence) + R"("}]})";
}

TEST(ChronicConditionMapTest, FindsCodesOfEachSystem) {
  ChronicConditionMap map;
  ASSERT_TRUE(map.AddConceptMap(
      P(ConceptMap(kIcd10Cm, Element("E119", "diabetes") + "," + Element("I10", "hypertension"))),
      "icd.json"));
  ASSERT_TRUE(
      map.AddConceptMap(P(ConceptMap(kSnomed, Element("44054006", "diabetes"))), "sct.json"));
  EXPECT_EQ(map.size(), 3u);
  EXPECT_EQ(map.category_count(), 2u);

  const ChronicCategory* diabetes = map.Find(kIcd10Cm, "E119");
  ASSERT_NE(diabetes, nullptr);
  EXPECT_EQ(diabetes->code, "diabetes");
  EXPECT_EQ(diabetes->display, "Cat diabetes");
  // One category object, whichever system the code came from.
  EXPECT_EQ(map.Find(kSnomed, "44054006"), diabetes);
  ASSERT_NE(map.Find(kIcd10Cm, "I10"), nullptr);
  EXPECT_EQ(map.Find(kIcd10Cm, "I10")->code, "hypertension");
}

TEST(ChronicConditionMapTest, Icd10MatchesWithOrWithoutDotAndAnyCase) {
  ChronicConditionMap map;
  // The file may carry the dotted form too.
  ASSERT_TRUE(map.AddConceptMap(
      P(ConceptMap(kIcd10Cm, Element("E11.9", "diabetes") + "," + Element("i5022", "hf"))), "x"));
  for (std::string_view code : {"E11.9", "E119", "e11.9", "e119", " E11.9 "}) {
    const ChronicCategory* c = map.Find(kIcd10Cm, code);
    ASSERT_NE(c, nullptr) << code;
    EXPECT_EQ(c->code, "diabetes");
  }
  EXPECT_NE(map.Find(kIcd10Cm, "I50.22"), nullptr);
  EXPECT_EQ(map.Find(kIcd10Cm, "E11.91"), nullptr);
  EXPECT_EQ(map.Find(kIcd10Cm, "E11"), nullptr);
  EXPECT_EQ(map.Find(kIcd10Cm, ""), nullptr);
  EXPECT_EQ(map.Find(kIcd10Cm, "."), nullptr);
  // A long garbage code neither crashes nor matches.
  EXPECT_EQ(map.Find(kIcd10Cm, std::string(200, 'E')), nullptr);
  // Another system is exact: no dot stripping, case matters.
  EXPECT_EQ(map.Find(kSnomed, "E119"), nullptr);
  EXPECT_EQ(map.Find("http://hl7.org/fhir/sid/icd-10", "E11.9"), nullptr);
}

TEST(ChronicConditionMapTest, OtherSystemsMatchExactly) {
  ChronicConditionMap map;
  ASSERT_TRUE(map.AddConceptMap(P(ConceptMap("urn:site:codes", Element("Ab.1", "asthma"))), "x"));
  EXPECT_NE(map.Find("urn:site:codes", "Ab.1"), nullptr);
  EXPECT_EQ(map.Find("urn:site:codes", "AB.1"), nullptr);
  EXPECT_EQ(map.Find("urn:site:codes", "Ab1"), nullptr);
  EXPECT_EQ(map.Find("urn:site:other", "Ab.1"), nullptr);
}

TEST(ChronicConditionMapTest, UnmatchedAndDisjointTargetsAreIgnored) {
  ChronicConditionMap map;
  ASSERT_TRUE(map.AddConceptMap(
      P(ConceptMap(kSnomed, Element("1", "asthma", "unmatched") + "," +
                                Element("2", "asthma", "disjoint") + "," +
                                R"({"code":"3","target":[{"equivalence":"unmatched"}]},)" +
                                R"({"code":"4"},)" + Element("5", "asthma", "equivalent"))),
      "x"));
  EXPECT_EQ(map.Find(kSnomed, "1"), nullptr);
  EXPECT_EQ(map.Find(kSnomed, "2"), nullptr);
  EXPECT_EQ(map.Find(kSnomed, "3"), nullptr);
  EXPECT_EQ(map.Find(kSnomed, "4"), nullptr);
  EXPECT_NE(map.Find(kSnomed, "5"), nullptr);
  EXPECT_EQ(map.size(), 1u);
}

TEST(ChronicConditionMapTest, SameCategoryTwiceIsFineAcrossFilesAndForms) {
  ChronicConditionMap map;
  ASSERT_TRUE(map.AddConceptMap(
      P(ConceptMap(kIcd10Cm, Element("E119", "diabetes") + "," + Element("E11.9", "diabetes"))),
      "a.json"));
  ASSERT_TRUE(map.AddConceptMap(P(ConceptMap(kIcd10Cm, Element("e119", "diabetes"))), "b.json"));
  EXPECT_EQ(map.size(), 1u);
  EXPECT_EQ(map.category_count(), 1u);
}

TEST(ChronicConditionMapTest, ACodeInTwoCategoriesIsAnErrorWithinAFile) {
  ChronicConditionMap map;
  auto status = map.AddConceptMap(
      P(ConceptMap(kIcd10Cm, Element("E119", "diabetes") + "," + Element("E11.9", "ckd"))),
      "site.json");
  ASSERT_FALSE(status);
  EXPECT_TRUE(status.error().is(Errc::kInvalidArgument));
  const std::string& m = status.error().message;
  EXPECT_NE(m.find("site.json: ConceptMap.group[0].element[1]: "), std::string::npos) << m;
  EXPECT_NE(m.find("\"ckd\""), std::string::npos) << m;
  EXPECT_NE(m.find("ConceptMap.group[0].element[0]"), std::string::npos) << m;
  EXPECT_NE(m.find("\"diabetes\""), std::string::npos) << m;
  EXPECT_EQ(map.size(), 0u);
}

TEST(ChronicConditionMapTest, ACodeInTwoCategoriesIsAnErrorAcrossFilesAndAddsNothing) {
  ChronicConditionMap map;
  ASSERT_TRUE(map.AddConceptMap(P(ConceptMap(kIcd10Cm, Element("E119", "diabetes"))), "a.json"));
  auto status = map.AddConceptMap(
      P(ConceptMap(kIcd10Cm, Element("I10", "hypertension") + "," + Element("e11.9", "ckd"))),
      "b.json");
  ASSERT_FALSE(status);
  const std::string& m = status.error().message;
  EXPECT_EQ(m.rfind("b.json: ConceptMap.group[0].element[1]: ", 0), 0u) << m;
  EXPECT_NE(m.find("a.json"), std::string::npos) << m;
  EXPECT_NE(m.find("\"diabetes\""), std::string::npos) << m;
  // Nothing of b.json was added, not even its valid first element.
  EXPECT_EQ(map.Find(kIcd10Cm, "I10"), nullptr);
  EXPECT_EQ(map.size(), 1u);
  EXPECT_EQ(map.category_count(), 1u);
}

TEST(ChronicConditionMapTest, TwoTargetsOfOneElementMustAgree) {
  ChronicConditionMap map;
  auto status = map.AddConceptMap(
      P(ConceptMap(kSnomed, R"({"code":"1","target":[{"code":"a","equivalence":"wider"},)"
                            R"({"code":"b","equivalence":"wider"}]})")),
      "x.json");
  ASSERT_FALSE(status);
  EXPECT_NE(status.error().message.find("x.json: ConceptMap.group[0].element[0]"),
            std::string::npos)
      << status.error().message;
}

template <class Case>
std::string CaseName(const ::testing::TestParamInfo<Case>& param) {
  return param.param.name;
}

struct BadConceptMap {
  std::string name;
  std::string text;
  std::string message;  // expected prefix after "bad.json: "
  Errc code = Errc::kInvalidArgument;
};

class BadConceptMapTest : public ::testing::TestWithParam<BadConceptMap> {};

TEST_P(BadConceptMapTest, IsRejectedWithOriginPathAndExpectation) {
  ChronicConditionMap map;
  auto status = map.AddConceptMap(P(GetParam().text), "bad.json");
  ASSERT_FALSE(status);
  EXPECT_TRUE(status.error().is(GetParam().code)) << status.error().message;
  EXPECT_EQ(status.error().message.rfind("bad.json: " + GetParam().message, 0), 0u)
      << status.error().message;
  EXPECT_EQ(map.size(), 0u);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BadConceptMapTest,
    ::testing::Values(
        BadConceptMap{"WrongResourceType", R"({"resourceType":"ValueSet"})",
                      "resourceType: expected \"ConceptMap\", got \"ValueSet\""},
        BadConceptMap{"NotAnObject", "[1]", "expected a ConceptMap resource"},
        BadConceptMap{"NoGroup", R"({"resourceType":"ConceptMap"})",
                      "ConceptMap.group: expected at least one group"},
        BadConceptMap{"EmptyGroup", R"({"resourceType":"ConceptMap","group":[]})",
                      "ConceptMap.group: expected at least one group"},
        BadConceptMap{"GroupNotArray", R"({"resourceType":"ConceptMap","group":{}})",
                      "ConceptMap.group: expected an array, got a JSON object"},
        BadConceptMap{"MissingSource",
                      R"({"resourceType":"ConceptMap","group":[{"target":"urn:ccm-gateway:)"
                      R"(chronic-category","element":[]}]})",
                      "ConceptMap.group[0].source: expected the code system"},
        BadConceptMap{"WrongTargetSystem",
                      R"({"resourceType":"ConceptMap","group":[{"source":"http://snomed.info/)"
                      R"(sct","target":"urn:other","element":[]}]})",
                      "ConceptMap.group[0].target: expected \"urn:ccm-gateway:chronic-category\""},
        BadConceptMap{"Unmapped",
                      R"({"resourceType":"ConceptMap","group":[{"source":"s","target":"urn:)"
                      R"(ccm-gateway:chronic-category","unmapped":{"mode":"fixed","code":"x"}}]})",
                      "ConceptMap.group[0].unmapped: not supported", Errc::kUnsupported},
        BadConceptMap{"MissingElementCode", ConceptMap("s", R"({"target":[]})"),
                      "ConceptMap.group[0].element[0].code: expected the source code, got "
                      "nothing"},
        BadConceptMap{"NumericElementCode", ConceptMap("s", R"({"code":44054006})"),
                      "ConceptMap.group[0].element[0].code: expected the source code, got the "
                      "number 44054006"},
        BadConceptMap{"MissingTargetCode",
                      ConceptMap("s", Element("1", "a") + "," +
                                          R"({"code":"2","target":[{"equivalence":"wider"}]})"),
                      "ConceptMap.group[0].element[1].target[0].code: expected the chronic "
                      "category code"},
        BadConceptMap{
            "EmptyTargetCode",
            ConceptMap("s", R"({"code":"2","target":[{"code":"","equivalence":"wider"}]})"),
            "ConceptMap.group[0].element[0].target[0].code: expected the chronic "
            "category code (e.g. \"diabetes\"), got \"\""},
        BadConceptMap{"MissingEquivalence",
                      ConceptMap("s", R"({"code":"2","target":[{"code":"a"}]})"),
                      "ConceptMap.group[0].element[0].target[0].equivalence: expected the "
                      "equivalence"},
        BadConceptMap{"UnknownEquivalence", ConceptMap("s", Element("1", "a", "same")),
                      "ConceptMap.group[0].element[0].target[0].equivalence: expected one of"},
        BadConceptMap{"TargetNotArray", ConceptMap("s", R"({"code":"1","target":{}})"),
                      "ConceptMap.group[0].element[0].target: expected an array"},
        BadConceptMap{"DotOnlyIcdCode", ConceptMap(kIcd10Cm, Element(".", "a")),
                      "ConceptMap.group[0].element[0].code: expected an ICD-10-CM code"}),
    CaseName<BadConceptMap>);

TEST(ChronicConditionMapTest, PointersSurviveMovesAndCopiesAreIndependent) {
  ChronicConditionMap map;
  ASSERT_TRUE(map.AddConceptMap(P(ConceptMap(kSnomed, Element("1", "a"))), "x"));
  const ChronicCategory* a = map.Find(kSnomed, "1");
  ASSERT_NE(a, nullptr);
  // Growing the map (many new categories) does not move existing categories.
  std::string many;
  for (int i = 2; i < 500; ++i) {
    if (!many.empty()) many += ",";
    std::string category = "c";  // (not "c" + ...: GCC 12 -Wrestrict false positive)
    category += std::to_string(i);
    many += Element(std::to_string(i), category);
  }
  ASSERT_TRUE(map.AddConceptMap(P(ConceptMap(kSnomed, many)), "y"));
  EXPECT_EQ(map.Find(kSnomed, "1"), a);
  EXPECT_EQ(a->code, "a");

  ChronicConditionMap moved = std::move(map);
  EXPECT_EQ(moved.Find(kSnomed, "1"), a);
  std::vector<ChronicConditionMap> maps;
  maps.push_back(std::move(moved));
  for (int i = 0; i < 10; ++i) maps.emplace_back();  // reallocates the vector
  EXPECT_EQ(maps[0].Find(kSnomed, "1"), a);
  EXPECT_EQ(a->display, "Cat a");

  ChronicConditionMap copy = maps[0];
  ASSERT_NE(copy.Find(kSnomed, "1"), nullptr);
  EXPECT_NE(copy.Find(kSnomed, "1"), a);
  EXPECT_EQ(copy.Find(kSnomed, "1")->code, "a");
  EXPECT_EQ(copy.size(), maps[0].size());
  EXPECT_EQ(copy.category_count(), 499u);
  ASSERT_TRUE(copy.AddConceptMap(P(ConceptMap(kSnomed, Element("x", "new"))), "z"));
  EXPECT_EQ(maps[0].Find(kSnomed, "x"), nullptr);
  EXPECT_EQ(maps[0].category_count(), 499u);
}

TEST(ChronicConditionMapTest, MissingDisplayFallsBackToTheCodeAndLaterDisplayFillsIt) {
  ChronicConditionMap map;
  ASSERT_TRUE(map.AddConceptMap(
      P(ConceptMap("s", R"({"code":"1","target":[{"code":"a","equivalence":"wider"}]})")), "x"));
  ASSERT_NE(map.Find("s", "1"), nullptr);
  EXPECT_EQ(map.Find("s", "1")->display, "a");
  ASSERT_TRUE(map.AddConceptMap(P(ConceptMap("s", Element("2", "a"))), "y"));
  EXPECT_EQ(map.Find("s", "1")->display, "Cat a");
}

// ---------------------------------------------------------------------------------------------

std::string ValueSet(std::string_view compose) {
  return std::string(R"({"resourceType":"ValueSet","status":"active","compose":)") +
         std::string(compose) + "}";
}

TEST(CodeSetTest, IncludeMinusExclude) {
  auto set = CodeSet::FromValueSet(
      P(ValueSet(R"({"include":[{"system":"http://www.ama-assn.org/go/cpt","concept":[)"
                 R"({"code":"99490"},{"code":"99439"},{"code":"99491"}]},)"
                 R"({"system":"http://hl7.org/fhir/sid/icd-10-cm","concept":[{"code":"E11.9"}]}],)"
                 R"("exclude":[{"system":"http://www.ama-assn.org/go/cpt","concept":[)"
                 R"({"code":"99439"},{"code":"12345"}]}]})")),
      "vs.json");
  ASSERT_TRUE(set) << set.error().message;
  EXPECT_EQ(set->size(), 3u);
  EXPECT_FALSE(set->empty());
  EXPECT_TRUE(set->Contains(kCpt, "99490"));
  EXPECT_TRUE(set->Contains(kCpt, "99491"));
  EXPECT_FALSE(set->Contains(kCpt, "99439"));
  EXPECT_FALSE(set->Contains(kSnomed, "99490"));
  EXPECT_TRUE(set->Contains(kIcd10Cm, "E119"));
  EXPECT_TRUE(set->Contains(kIcd10Cm, "e11.9"));
  using Entry = std::pair<std::string, std::string>;
  EXPECT_EQ(set->Entries(), (std::vector<Entry>{{std::string(kIcd10Cm), "E119"},
                                                {std::string(kCpt), "99490"},
                                                {std::string(kCpt), "99491"}}));
}

TEST(CodeSetTest, AddAndCopy) {
  CodeSet set;
  EXPECT_TRUE(set.empty());
  set.Add(kLoinc, "59284-0");
  set.Add(kLoinc, "59284-0");
  EXPECT_EQ(set.size(), 1u);
  CodeSet copy = set;
  copy.Add(kLoinc, "x");
  EXPECT_EQ(set.size(), 1u);
  EXPECT_EQ(copy.size(), 2u);
  CodeSet moved = std::move(copy);
  EXPECT_TRUE(moved.Contains(kLoinc, "x"));
  EXPECT_FALSE(moved.Contains(kLoinc, "59284-00"));
}

struct BadValueSet {
  std::string name;
  std::string text;
  std::string message;  // expected prefix after "vs.json: "
  Errc code = Errc::kInvalidArgument;
};

class BadValueSetTest : public ::testing::TestWithParam<BadValueSet> {};

TEST_P(BadValueSetTest, IsRejectedWithOriginPathAndExpectation) {
  auto set = CodeSet::FromValueSet(P(GetParam().text), "vs.json");
  ASSERT_FALSE(set);
  EXPECT_TRUE(set.error().is(GetParam().code)) << set.error().message;
  EXPECT_EQ(set.error().message.rfind("vs.json: " + GetParam().message, 0), 0u)
      << set.error().message;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BadValueSetTest,
    ::testing::Values(
        BadValueSet{"WrongResourceType", R"({"resourceType":"ConceptMap"})",
                    "resourceType: expected \"ValueSet\", got \"ConceptMap\""},
        BadValueSet{"NoCompose", R"({"resourceType":"ValueSet"})",
                    "ValueSet.compose: expected compose.include"},
        BadValueSet{"EmptyInclude", ValueSet(R"({"include":[]})"),
                    "ValueSet.compose.include: expected at least one include"},
        BadValueSet{"Filter",
                    ValueSet(R"({"include":[{"system":"http://snomed.info/sct","filter":[)"
                             R"({"property":"concept","op":"is-a","value":"73211009"}]}]})"),
                    "ValueSet.compose.include[0].filter: filters are not supported",
                    Errc::kUnsupported},
        BadValueSet{"WholeSystem", ValueSet(R"({"include":[{"system":"http://loinc.org"}]})"),
                    "ValueSet.compose.include[0].concept: a whole code system "
                    "(http://loinc.org) is not supported",
                    Errc::kUnsupported},
        BadValueSet{
            "ImportedValueSet", ValueSet(R"({"include":[{"valueSet":["http://example.org/vs"]}]})"),
            "ValueSet.compose.include[0].valueSet: importing other value sets", Errc::kUnsupported},
        BadValueSet{"ExcludeWithFilter",
                    ValueSet(R"({"include":[{"system":"s","concept":[{"code":"1"}]}],)"
                             R"("exclude":[{"system":"s","filter":[]}]})"),
                    "ValueSet.compose.exclude[0].filter: filters are not supported",
                    Errc::kUnsupported},
        BadValueSet{"MissingSystem", ValueSet(R"({"include":[{"concept":[{"code":"1"}]}]})"),
                    "ValueSet.compose.include[0].system: expected the code system"},
        BadValueSet{"MissingCode",
                    ValueSet(R"({"include":[{"system":"s","concept":[{"code":"1"},{}]}]})"),
                    "ValueSet.compose.include[0].concept[1].code: expected a code, got nothing"}),
    CaseName<BadValueSet>);

// ---------------------------------------------------------------------------------------------

TEST(MappingFilesTest, LoadsConceptMapFilesAndValueSetFiles) {
  TempDir dir;
  WriteFile(dir / "a.json", ConceptMap(kIcd10Cm, Element("E119", "diabetes")));
  WriteFile(dir / "b.json", ConceptMap(kSnomed, Element("59621000", "hypertension")));
  WriteFile(dir / "vs.json", ValueSet(R"({"include":[{"system":"s","concept":[{"code":"1"}]}]})"));
  auto map = LoadChronicConditionMaps({dir / "a.json", dir / "b.json"});
  ASSERT_TRUE(map) << map.error().message;
  EXPECT_EQ(map->size(), 2u);
  EXPECT_NE(map->Find(kSnomed, "59621000"), nullptr);
  auto set = LoadCodeSet(dir / "vs.json");
  ASSERT_TRUE(set) << set.error().message;
  EXPECT_TRUE(set->Contains("s", "1"));
  auto none = LoadChronicConditionMaps({});
  ASSERT_TRUE(none);
  EXPECT_EQ(none->size(), 0u);
}

TEST(MappingFilesTest, MalformedJsonNamesFileLineAndColumn) {
  TempDir dir;
  const auto file = dir / "broken.json";
  WriteFile(file, "{\n  \"resourceType\": \"ConceptMap\",\n  \"group\": [\n    ,\n  ]\n}\n");
  auto map = LoadChronicConditionMaps({file});
  ASSERT_FALSE(map);
  EXPECT_TRUE(map.error().is(Errc::kParseError));
  EXPECT_EQ(map.error().message.rfind(file.string() + ":4:5: ", 0), 0u) << map.error().message;

  WriteFile(dir / "vs.json", "{\"resourceType\": \"ValueSet\",}");
  auto set = LoadCodeSet(dir / "vs.json");
  ASSERT_FALSE(set);
  EXPECT_EQ(set.error().message.rfind((dir / "vs.json").string() + ":1:", 0), 0u)
      << set.error().message;
}

TEST(MappingFilesTest, WrongResourceTypeNamesTheFile) {
  TempDir dir;
  WriteFile(dir / "a.json", ConceptMap(kIcd10Cm, Element("E119", "diabetes")));
  WriteFile(dir / "vs.json", ValueSet(R"({"include":[{"system":"s","concept":[{"code":"1"}]}]})"));
  auto map = LoadChronicConditionMaps({dir / "a.json", dir / "vs.json"});
  ASSERT_FALSE(map);
  EXPECT_TRUE(map.error().is(Errc::kInvalidArgument));
  EXPECT_EQ(map.error().message, (dir / "vs.json").string() +
                                     ": resourceType: expected \"ConceptMap\", got \"ValueSet\"");
  auto set = LoadCodeSet(dir / "a.json");
  ASSERT_FALSE(set);
  EXPECT_EQ(set.error().message, (dir / "a.json").string() +
                                     ": resourceType: expected \"ValueSet\", got \"ConceptMap\"");
}

TEST(MappingFilesTest, ErrorsInsideAFileNameTheFileAndPath) {
  TempDir dir;
  WriteFile(dir / "a.json", ConceptMap(kIcd10Cm, Element("E119", "diabetes")));
  WriteFile(dir / "b.json",
            ConceptMap(kIcd10Cm, R"({"code":"I10","target":[{"equivalence":"wider"}]})"));
  WriteFile(dir / "c.json", ConceptMap(kIcd10Cm, Element("E11.9", "ckd")));
  auto missing_code = LoadChronicConditionMaps({dir / "a.json", dir / "b.json"});
  ASSERT_FALSE(missing_code);
  EXPECT_EQ(missing_code.error().message.rfind(
                (dir / "b.json").string() + ": ConceptMap.group[0].element[0].target[0].code: ", 0),
            0u)
      << missing_code.error().message;
  auto conflict = LoadChronicConditionMaps({dir / "a.json", dir / "c.json"});
  ASSERT_FALSE(conflict);
  const std::string& m = conflict.error().message;
  EXPECT_EQ(m.rfind((dir / "c.json").string() + ": ConceptMap.group[0].element[0]: ", 0), 0u) << m;
  EXPECT_NE(m.find((dir / "a.json").string()), std::string::npos) << m;

  WriteFile(
      dir / "filter.json",
      ValueSet(R"({"include":[{"system":"s","filter":[{"property":"a","op":"=","value":"b"}]}]})"));
  auto filter = LoadCodeSet(dir / "filter.json");
  ASSERT_FALSE(filter);
  EXPECT_TRUE(filter.error().is(Errc::kUnsupported));
  EXPECT_EQ(filter.error().message.rfind(
                (dir / "filter.json").string() + ": ValueSet.compose.include[0].filter: ", 0),
            0u)
      << filter.error().message;
}

TEST(MappingFilesTest, MissingFileIsNotFound) {
  TempDir dir;
  auto map = LoadChronicConditionMaps({dir / "nope.json"});
  ASSERT_FALSE(map);
  EXPECT_TRUE(map.error().is(Errc::kNotFound));
  EXPECT_NE(map.error().message.find("nope.json"), std::string::npos);
  auto set = LoadCodeSet(dir / "nope.json");
  ASSERT_FALSE(set);
  EXPECT_TRUE(set.error().is(Errc::kNotFound));
}

}  // namespace
}  // namespace ccm::mappings
