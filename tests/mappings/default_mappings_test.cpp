// The built-in default mappings (mappings/data/*.json, embedded into the library): what they map,
// what they must never map, that they match the CCW source list and the files on disk, and that
// they are valid FHIR.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "fhir/issues.h"
#include "fhir/json.h"
#include "fhir/validate.h"
#include "mappings/code_maps.h"
#include "mappings/code_systems.h"
#include "test_util.h"

namespace ccm::mappings {
namespace {

namespace fs = std::filesystem;
namespace json = fhir::json;
using ::ccm::testing::ReadFile;
using ::ccm::testing::SharedData;
using ::ccm::testing::SourceDir;

const fs::path kDataDir = SourceDir() / "mappings" / "data";

const ChronicConditionMap& Defaults() {
  static const ChronicConditionMap map = [] {
    auto m = DefaultChronicConditionMap();
    if (!m) ADD_FAILURE() << m.error().message;
    return m ? std::move(*m) : ChronicConditionMap();
  }();
  return map;
}

std::string CategoryOf(std::string_view system, std::string_view code) {
  const ChronicCategory* c = Defaults().Find(system, code);
  return c == nullptr ? "" : c->code;
}

json::Value ParseEmbedded(std::string_view name) {
  auto v = json::Parse(EmbeddedMappingFile(name));
  EXPECT_TRUE(v) << name;
  return v ? *v : json::Value();
}

// The categories of the CodeSystem: code -> CCW condition ids, and whether it is a Common one.
struct CategoryInfo {
  std::vector<int> ccw_ids;
  bool common = false;
};
std::map<std::string, CategoryInfo> CodeSystemCategories() {
  std::map<std::string, CategoryInfo> out;
  json::Value cs = ParseEmbedded("chronic-categories.codesystem.json");
  for (const json::Value& concept_value : cs["concept"].array()) {
    CategoryInfo& info = out[std::string(concept_value["code"].str())];
    for (const json::Value& p : concept_value["property"].array()) {
      if (p["code"].str() == "ccw-condition-id") {
        info.ccw_ids.push_back(std::stoi(std::string(p["valueInteger"].number_text())));
      }
      if (p["code"].str() == "ccw-type") info.common = p["valueString"].str() == "Common";
    }
  }
  return out;
}

TEST(DefaultMappingsTest, Load) {
  auto map = DefaultChronicConditionMap();
  ASSERT_TRUE(map) << map.error().message;
  const std::size_t categories = CodeSystemCategories().size();
  EXPECT_EQ(categories, 64u);
  EXPECT_EQ(map->category_count(), categories);
  EXPECT_GT(map->size(), 5000u);

  auto activity = DefaultActivityCodes();
  ASSERT_TRUE(activity) << activity.error().message;
  EXPECT_EQ(activity->size(), 10u);
  for (std::string_view code :
       {"99490", "99439", "99491", "99437", "99487", "99489", "99424", "99425", "99426", "99427"}) {
    EXPECT_TRUE(activity->Contains(kCpt, code)) << code;
  }
  EXPECT_FALSE(activity->Contains(kCpt, "99213"));
  EXPECT_FALSE(activity->Contains(kSnomed, "99490"));

  auto consent = DefaultConsentCodes();
  ASSERT_TRUE(consent) << consent.error().message;
  EXPECT_EQ(consent->size(), 1u);
  EXPECT_TRUE(consent->Contains(kLoinc, "59284-0"));
}

TEST(DefaultMappingsTest, IcdCodesMatchWithOrWithoutDot) {
  for (std::string_view code : {"E11.9", "E119", "e11.9", "E11.65", "E10.9"}) {
    EXPECT_EQ(CategoryOf(kIcd10Cm, code), "diabetes") << code;
  }
  EXPECT_EQ(CategoryOf(kIcd10Cm, "I10"), "hypertension");
  EXPECT_EQ(CategoryOf(kIcd10Cm, "N18.3"), "chronic_kidney_disease");
  EXPECT_EQ(CategoryOf(kIcd10Cm, "J44.9"), "chronic_obstructive_pulmonary_disease");
  EXPECT_EQ(CategoryOf(kIcd10Cm, "I50.22"), "heart_failure_and_non_ischemic_heart_disease");
  EXPECT_EQ(CategoryOf(kIcd10Cm, "I25.10"), "ischemic_heart_disease");
  EXPECT_EQ(CategoryOf(kIcd10Cm, "F32.9"), "depression_bipolar_or_other_depressive_mood_disorders");
  EXPECT_EQ(CategoryOf(kIcd10Cm, "F20.9"), "schizophrenia_and_other_psychotic_disorders");
  EXPECT_EQ(CategoryOf(kIcd10Cm, "B18.2"), "hepatitis_c_chronic");
  const ChronicCategory* c = Defaults().Find(kIcd10Cm, "E11.9");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->display, "Diabetes");
  // SNOMED and ICD-10-CM land in the same category object.
  EXPECT_EQ(Defaults().Find(kSnomed, "44054006"), c);
  EXPECT_EQ(Defaults().Find(kSnomed, "59621000"), Defaults().Find(kIcd10Cm, "I10"));
  EXPECT_EQ(Defaults().Find(kSnomed, "38341003"), Defaults().Find(kIcd10Cm, "I10"));
}

TEST(DefaultMappingsTest, AcuteConditionsAreNotChronic) {
  for (std::string_view code : {
           "I21.09", "I21.4", "I22.0",           // acute myocardial infarction
           "J18.9", "J15.9", "J12.89",           // pneumonia
           "S72.001A", "S72.002A", "S32.301A",   // hip / pelvic fracture
           "I63.9", "G45.9", "I69.30",           // stroke, TIA, unspecified stroke sequelae
           "B15.9", "B16.9", "B17.10", "B17.9",  // acute hepatitis A/B/C, unspecified acute
           "B19.20", "B17.2",                    // unspecified hepatitis C, hepatitis E
       }) {
    EXPECT_EQ(Defaults().Find(kIcd10Cm, code), nullptr)
        << code << " -> " << CategoryOf(kIcd10Cm, code);
  }
  // Paralytic stroke sequelae are a CCW Mobility Impairment, which is chronic.
  EXPECT_EQ(CategoryOf(kIcd10Cm, "I69.351"), "mobility_impairments");
  for (std::string_view code : {"22298006", "233604007", "230690007", "10509002", "195662009",
                                "16114001", "44465007", "840539006"}) {
    EXPECT_EQ(Defaults().Find(kSnomed, code), nullptr) << code;
  }
}

TEST(DefaultMappingsTest, SocialCircumstanceFindingsAreNeverChronic) {
  for (std::string_view code :
       {"160903007", "160904001", "741062008", "73595000", "224295006", "224299000",
        "5251000175109", "423315002", "422650009", "706893006", "424393004", "105531004",
        "266948004", "713458007", "266934004", "160968000", "361055000", "10939881000119105"}) {
    EXPECT_EQ(Defaults().Find(kSnomed, code), nullptr)
        << code << " -> " << CategoryOf(kSnomed, code);
  }
}

TEST(DefaultMappingsTest, EveryCodeOfTheIssueListMaps) {
  const std::map<std::string_view, std::vector<std::string_view>> expected = {
      {"diabetes", {"44054006"}},
      {"hypertension", {"59621000", "38341003"}},
      {"chronic_kidney_disease", {"431855005", "431856006", "433144002", "431857002", "46177005"}},
      {"chronic_obstructive_pulmonary_disease", {"185086009", "87433001"}},
      {"asthma", {"195967001", "233678006"}},
      {"heart_failure_and_non_ischemic_heart_disease", {"88805009", "84114007"}},
      {"ischemic_heart_disease", {"414545008"}},
      {"atrial_fibrillation_and_flutter", {"49436004"}},
      {"hyperlipidemia", {"55822004"}},
      {"depression_bipolar_or_other_depressive_mood_disorders", {"370143000", "36923009"}},
      {"rheumatoid_arthritis_osteoarthritis", {"239873007", "239872002", "201834006", "69896004"}},
      {"osteoporosis_with_or_without_pathological_fracture", {"64859006"}},
      {"alzheimers_disease", {"26929004", "230265002"}},
      {"epilepsy", {"84757009", "128613002"}},
      {"hypothyroidism", {"83664006"}},
      {"fibromyalgia_and_chronic_pain_and_fatigue", {"82423001"}},
      {"human_immunodeficiency_virus_and_or_acquired_immunodeficiency_syndrome_hiv_aids",
       {"86406008"}},
      {"hepatitis_b_chronic", {"61977001"}},
      {"hepatitis_c_chronic", {"128302006"}},
      {"anemia", {"271737000"}},
      {"obesity", {"162864005", "408512008"}},
      {"cancer_breast", {"254837009"}},
      {"cancer_colorectal", {"363406005"}},
      {"cancer_lung", {"254637007", "424132000"}},
      {"cancer_prostate", {"126906006"}},
  };
  const auto categories = CodeSystemCategories();
  for (const auto& [category, codes] : expected) {
    EXPECT_TRUE(categories.count(std::string(category))) << category;
    for (std::string_view code : codes) EXPECT_EQ(CategoryOf(kSnomed, code), category) << code;
  }
  // Chronic disorders Synthea records beyond the issue's list.
  EXPECT_EQ(CategoryOf(kSnomed, "127013003"), "diabetes");
  EXPECT_EQ(CategoryOf(kSnomed, "90781000119102"), "diabetes");
  EXPECT_EQ(CategoryOf(kSnomed, "157141000119108"), "diabetes");
  EXPECT_EQ(CategoryOf(kSnomed, "368581000119106"), "diabetes");
  EXPECT_EQ(CategoryOf(kSnomed, "109838007"), "cancer_colorectal");
  EXPECT_EQ(CategoryOf(kSnomed, "443165006"), "osteoporosis_with_or_without_pathological_fracture");
  EXPECT_EQ(CategoryOf(kSnomed, "278860009"), "fibromyalgia_and_chronic_pain_and_fatigue");
  EXPECT_EQ(CategoryOf(kSnomed, "1121000119107"), "fibromyalgia_and_chronic_pain_and_fatigue");
  EXPECT_EQ(CategoryOf(kSnomed, "302870006"), "hyperlipidemia");
  EXPECT_EQ(CategoryOf(kSnomed, "53741008"), "ischemic_heart_disease");
}

// Every category a ConceptMap targets is in the CodeSystem, with the same display, and every
// ConceptMap element has exactly one target: no code can ever count as two conditions.
TEST(DefaultMappingsTest, ConceptMapsUseTheCodeSystemAndOneTargetPerCode) {
  json::Value cs = ParseEmbedded("chronic-categories.codesystem.json");
  std::map<std::string, std::string> display;
  for (const json::Value& c : cs["concept"].array()) {
    display[std::string(c["code"].str())] = std::string(c["display"].str());
  }
  EXPECT_EQ(cs["count"].number_text(), std::to_string(display.size()));
  std::set<std::string> used;
  for (std::string_view file :
       {"ccw-chronic-conditions.conceptmap.json", "snomed-chronic-conditions.conceptmap.json"}) {
    json::Value cm = ParseEmbedded(file);
    ASSERT_EQ(cm["group"].size(), 1u) << file;
    const json::Value& group = cm["group"][std::size_t{0}];
    EXPECT_EQ(group["target"].str(), kChronicCategory);
    std::set<std::string> seen;
    for (const json::Value& e : group["element"].array()) {
      const std::string code(e["code"].str());
      EXPECT_TRUE(seen.insert(code).second) << file << ": " << code << " listed twice";
      ASSERT_EQ(e["target"].size(), 1u) << file << ": " << code;
      const json::Value& t = e["target"][std::size_t{0}];
      const std::string category(t["code"].str());
      ASSERT_TRUE(display.count(category)) << file << ": " << code << " -> " << category;
      EXPECT_EQ(t["display"].str(), display[category]) << file << ": " << code;
      EXPECT_EQ(t["equivalence"].str(), "wider");
      used.insert(category);
    }
  }
  // No category is dead weight: each has at least one code.
  EXPECT_EQ(used.size(), display.size());
}

TEST(DefaultMappingsTest, ClaimDiagnosesAreChronicIcd10CodesOfTheSameCondition) {
  auto dx = DefaultDiagnosisTranslation();
  ASSERT_TRUE(dx) << dx.error().message;
  EXPECT_EQ(dx->Find(kSnomed, "44054006")->code, "E11.9");
  EXPECT_EQ(dx->Find(kSnomed, "59621000")->code, "I10");
  EXPECT_EQ(dx->Find(kSnomed, "59621000")->system, kIcd10Cm);
  EXPECT_EQ(dx->Find(kSnomed, "126906006"), nullptr);  // "neoplasm of prostate": behaviour unknown
  EXPECT_EQ(dx->Find(kIcd10Cm, "E119"), nullptr);
  // Every curated SNOMED CT concept is either mapped or explicitly left unmatched, and every
  // target is a code of the CCW chronic list -- of the concept's own category, except where CCW
  // files the diabetic kidney codes (E11.29) under chronic kidney disease.
  json::Value snomed = ParseEmbedded("snomed-chronic-conditions.conceptmap.json");
  json::Value map = ParseEmbedded("snomed-icd10cm-diagnoses.conceptmap.json");
  std::map<std::string, std::string> listed;
  for (const json::Value& e : map["group"][std::size_t{0}]["element"].array()) {
    listed[std::string(e["code"].str())] =
        std::string(e["target"][std::size_t{0}]["equivalence"].str());
  }
  std::size_t mapped = 0;
  for (const json::Value& e : snomed["group"][std::size_t{0}]["element"].array()) {
    std::string code(e["code"].str());
    ASSERT_TRUE(listed.contains(code)) << code << " is missing from the diagnosis map";
    const auto* t = dx->Find(kSnomed, code);
    if (listed[code] == "unmatched") {
      EXPECT_EQ(t, nullptr);
      continue;
    }
    ASSERT_NE(t, nullptr) << code;
    ++mapped;
    const ChronicCategory* icd_category = Defaults().Find(kIcd10Cm, t->code);
    ASSERT_NE(icd_category, nullptr) << code << " -> " << t->code << " is not a CCW chronic code";
    std::string expected(e["target"][std::size_t{0}]["code"].str());
    if (t->code == "E11.29") {
      EXPECT_EQ(icd_category->code, "chronic_kidney_disease");
    } else {
      EXPECT_EQ(icd_category->code, expected) << code << " -> " << t->code;
    }
  }
  EXPECT_EQ(mapped, dx->size());
  EXPECT_GE(mapped, 60u);
}

TEST(DefaultMappingsTest, DiagnosisTranslationRefusesConflictsAndNamesThePath) {
  CodeTranslation t;
  auto cm = json::Parse(R"({"resourceType":"ConceptMap","group":[{"source":"s","target":"t",
    "element":[{"code":"1","target":[{"code":"A","equivalence":"equivalent"}]},
               {"code":"1","target":[{"code":"B","equivalence":"equivalent"}]}]}]})");
  ASSERT_TRUE(cm);
  auto added = t.AddConceptMap(*cm, "x.json");
  ASSERT_FALSE(added);
  EXPECT_NE(added.error().message.find(
                "x.json: ConceptMap.group[0].element[1]: 1 is mapped to both A and B"),
            std::string::npos)
      << added.error().message;
  EXPECT_EQ(t.size(), 0u);  // nothing of a failed map is kept
  auto no_target = json::Parse(R"({"resourceType":"ConceptMap","group":[{"source":"s"}]})");
  EXPECT_FALSE(t.AddConceptMap(*no_target, "y.json"));
}

// Minimal CSV (RFC 4180 quoting) for the CCW source list.
std::vector<std::string> SplitCsvLine(const std::string& line) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        fields.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        fields.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields.emplace_back();
    } else if (c != '\r') {
      fields.back() += c;
    }
  }
  return fields;
}

// Checked against the source list when ../shared is present (it is not needed to build or run).
TEST(DefaultMappingsTest, EveryCcwCodeHasAtMostOneCategoryFromItsOwnConditions) {
  const fs::path csv = SharedData() / "code-lists" / "cms_ccw_chronic_conditions_hierarchy.csv";
  if (!fs::exists(csv)) GTEST_SKIP() << csv << " not present";
  std::ifstream in(csv);
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  const std::vector<std::string> header = SplitCsvLine(line);
  auto column = [&](std::string_view name) {
    return static_cast<std::size_t>(std::find(header.begin(), header.end(), name) - header.begin());
  };
  const std::size_t id_col = column("condition_id"), system_col = column("code_system"),
                    inclusion_col = column("inclusion_type"), code_col = column("code");
  ASSERT_LT(code_col, header.size());
  std::map<std::string, std::set<int>> conditions_of;  // ICD code -> CCW condition ids listing it
  while (std::getline(in, line)) {
    const auto f = SplitCsvLine(line);
    ASSERT_EQ(f.size(), header.size()) << line;
    if (f[system_col] != "ICD-10-CM" || f[inclusion_col] != "Include") continue;
    conditions_of[f[code_col]].insert(std::stoi(f[id_col]));
  }
  ASSERT_GT(conditions_of.size(), 5000u);

  const auto categories = CodeSystemCategories();
  std::map<int, std::string> category_of_condition;
  for (const auto& [code, info] : categories) {
    for (int id : info.ccw_ids) category_of_condition[id] = code;
  }
  const std::set<int> excluded = {1, 31, 32, 34, 36, 38, 39, 61, 72};
  const std::set<std::string> acute_hepatitis = {"B170", "B178", "B179"};
  for (int id : excluded) EXPECT_FALSE(category_of_condition.count(id)) << id;
  EXPECT_EQ(category_of_condition.size(), 75u - excluded.size());
  EXPECT_EQ(category_of_condition[24], category_of_condition[23]);
  EXPECT_EQ(category_of_condition[65], category_of_condition[66]);

  std::size_t mapped = 0, overlaps = 0;
  for (const auto& [code, ids] : conditions_of) {
    SCOPED_TRACE(code);
    std::set<std::string> candidates;
    bool in_excluded = false;
    for (int id : ids) {
      if (excluded.count(id)) {
        in_excluded = true;
      } else {
        ASSERT_TRUE(category_of_condition.count(id)) << id;
        candidates.insert(category_of_condition[id]);
      }
    }
    const std::string got = CategoryOf(kIcd10Cm, code);
    if (candidates.empty() || acute_hepatitis.count(code) ||
        (in_excluded && got != "osteoporosis_with_or_without_pathological_fracture")) {
      EXPECT_EQ(got, "") << "listed by an excluded acute condition";
      continue;
    }
    ASSERT_TRUE(candidates.count(got)) << "mapped to " << got << ", not one of its conditions";
    ++mapped;
    if (candidates.size() > 1) {
      ++overlaps;
      // The Common condition wins over the others.
      const bool any_common =
          std::any_of(candidates.begin(), candidates.end(),
                      [&](const std::string& c) { return categories.at(c).common; });
      if (any_common) {
        EXPECT_TRUE(categories.at(got).common);
      }
    }
  }
  const std::size_t snomed_codes =
      ParseEmbedded("snomed-chronic-conditions.conceptmap.json")["group"][std::size_t{0}]["element"]
          .size();
  EXPECT_EQ(mapped + snomed_codes, Defaults().size());  // every ICD-10-CM entry comes from the CSV
  EXPECT_GT(overlaps, 200u);
  EXPECT_EQ(CategoryOf(kIcd10Cm, "M80.051A"), "osteoporosis_with_or_without_pathological_fracture");
}

// Conditions from Synthea (the samples here and in ../shared): every "(finding)" we did not choose
// deliberately (chronic pain, BMI obesity) stays unmapped, so social circumstances (employment,
// stress, education, isolation, violence, housing, criminal record, transport, ...) never count.
TEST(DefaultMappingsTest, SyntheaFindingsAreNotChronicUnlessChosen) {
  const std::set<std::string> chosen_findings = {"82423001", "278860009", "1121000119107",
                                                 "162864005", "408512008"};
  std::vector<fs::path> files;
  for (const fs::path& root : {SourceDir() / "samples", SharedData() / "fhir"}) {
    if (!fs::exists(root)) continue;
    for (const auto& dir : fs::directory_iterator(root)) {
      if (!dir.is_directory() || dir.path().filename().string().rfind("synthea-", 0) != 0) continue;
      for (const auto& f : fs::directory_iterator(dir.path())) {
        if (f.path().filename().string().rfind("Condition", 0) == 0) files.push_back(f.path());
      }
    }
  }
  ASSERT_FALSE(files.empty());
  std::size_t findings = 0, social_seen = 0;
  const std::set<std::string> social = {"160903007", "73595000",  "422650009",
                                        "706893006", "105531004", "713458007"};
  for (const fs::path& file : files) {
    std::ifstream in(file);
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      auto r = json::Parse(line);
      ASSERT_TRUE(r) << file;
      for (const json::Value& coding : (*r)["code"]["coding"].array()) {
        const std::string code(coding["code"].str());
        const std::string_view display = coding["display"].str();
        if (coding["system"].str() != kSnomed) continue;
        if (display.size() < 9 || display.substr(display.size() - 9) != "(finding)") continue;
        ++findings;
        social_seen += social.count(code);
        if (chosen_findings.count(code)) {
          EXPECT_NE(Defaults().Find(kSnomed, code), nullptr) << code << " " << display;
        } else {
          EXPECT_EQ(Defaults().Find(kSnomed, code), nullptr)
              << code << " " << display << " -> " << CategoryOf(kSnomed, code);
        }
      }
    }
  }
  EXPECT_GT(findings, 100u);
  EXPECT_GT(social_seen, 50u);  // the test saw real social-circumstance findings
}

TEST(DefaultMappingsTest, EmbeddedFilesEqualTheFilesOnDisk) {
  std::vector<std::string> on_disk;
  for (const auto& f : fs::directory_iterator(kDataDir)) {
    if (f.path().extension() == ".json") on_disk.push_back(f.path().filename().string());
  }
  std::sort(on_disk.begin(), on_disk.end());
  std::vector<std::string> embedded;
  for (std::string_view name : EmbeddedMappingFileNames()) embedded.emplace_back(name);
  EXPECT_EQ(embedded, on_disk);
  EXPECT_EQ(on_disk.size(), 6u);
  for (const std::string& name : on_disk) {
    const std::string disk = ReadFile(kDataDir / name);
    ASSERT_FALSE(disk.empty()) << name;
    EXPECT_TRUE(EmbeddedMappingFile(name) == disk) << name << " differs; rebuild";
  }
  EXPECT_EQ(EmbeddedMappingFile("no-such-file.json"), "");
  EXPECT_EQ(EmbeddedMappingFile(""), "");
}

TEST(DefaultMappingsTest, DataFilesAreValidFhir) {
  for (std::string_view name : EmbeddedMappingFileNames()) {
    SCOPED_TRACE(std::string(name));
    auto resource = json::Parse(ReadFile(kDataDir / name));
    ASSERT_TRUE(resource) << resource.error().message;
    const fhir::IssueList issues = fhir::Validate(*resource);
    for (const fhir::Issue& issue : issues) ADD_FAILURE() << fhir::FormatIssue(issue);
    const json::Value& r = *resource;
    EXPECT_EQ(r["status"].str(), "active");
    EXPECT_EQ(r["url"].str().rfind("urn:ccm-gateway:", 0), 0u);
    for (std::string_view key : {"version", "name", "title", "description"}) {
      EXPECT_FALSE(r[key].str().empty()) << key;
    }
  }
}

TEST(DefaultMappingsTest, LoadsFast) {
  const auto start = std::chrono::steady_clock::now();
  auto map = DefaultChronicConditionMap();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - start)
                      .count();
  ASSERT_TRUE(map);
  RecordProperty("default_chronic_condition_map_ms", static_cast<int>(ms));
  // Generous: a few tens of ms in a release build; sanitizer builds are several times slower.
  EXPECT_LT(ms, 5000);
}

}  // namespace
}  // namespace ccm::mappings
