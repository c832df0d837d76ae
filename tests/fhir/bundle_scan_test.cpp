// ScanBundle: resources as exact spans of a page, what paging needs, and errors for bad JSON.
#include "fhir/bundle_scan.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "fhir/json.h"

namespace ccm::fhir {
namespace {

TEST(BundleScanTest, FindsEachResourceAsItsExactText) {
  std::string page = R"({"resourceType": "Bundle", "type": "searchset", "total": 3,
    "link": [{"relation": "self", "url": "http://h/fhir/Encounter?_count=2"},
             {"relation": "next", "url": "http://h/fhir/Encounter?_count=2&_offset=2"}],
    "entry": [
      {"fullUrl": "http://h/fhir/Encounter/1", "search": {"mode": "match"},
       "resource": {"resourceType": "Encounter", "id": "1",
                    "meta": {"versionId": "7", "lastUpdated": "2026-11-01T10:00:00.123Z",
                             "tag": [{"code": "x", "id": "not-this"}]},
                    "length": {"value": 30.50, "unit": "min"},
                    "contained": [{"resourceType": "Practitioner", "id": "inner"}]}},
      {"resource": {"id": "2\u00e9", "resourceType": "Encounter"}, "search": {"mode": "include"}},
      {"search": {"mode": "outcome"},
       "resource": {"resourceType": "OperationOutcome", "issue": []}},
      {"request": {"method": "GET", "url": "x"}}
    ]})";
  auto scanned = ScanBundle(page);
  ASSERT_TRUE(scanned) << scanned.error().message;
  EXPECT_EQ(scanned->resource_type, "Bundle");
  EXPECT_EQ(scanned->type, "searchset");
  EXPECT_EQ(scanned->total, std::optional<std::size_t>(3));
  EXPECT_EQ(scanned->next_url, "http://h/fhir/Encounter?_count=2&_offset=2");
  ASSERT_EQ(scanned->entries.size(), 4u);
  const ScannedEntry& a = scanned->entries[0];
  EXPECT_EQ(a.resource_type, "Encounter");
  EXPECT_EQ(a.id, "1");
  EXPECT_EQ(a.version_id, "7");
  EXPECT_EQ(a.last_updated, "2026-11-01T10:00:00.123Z");
  EXPECT_EQ(a.search_mode, "match");
  std::string_view text = std::string_view(page).substr(a.begin, a.end - a.begin);
  EXPECT_TRUE(text.starts_with(R"({"resourceType": "Encounter")")) << text;
  EXPECT_TRUE(text.ends_with(R"("id": "inner"}]})")) << text;
  EXPECT_NE(text.find("30.50"), std::string_view::npos) << "the decimal as written";
  auto parsed = json::Parse(text);
  ASSERT_TRUE(parsed) << "the span is a JSON object on its own";
  EXPECT_EQ((*parsed)["id"].str(), "1");
  EXPECT_EQ(scanned->entries[1].id, "2\xc3\xa9") << "escapes decoded";
  EXPECT_EQ(scanned->entries[1].search_mode, "include");
  EXPECT_EQ(scanned->entries[2].resource_type, "OperationOutcome");
  EXPECT_FALSE(scanned->entries[3].has_resource);
}

TEST(BundleScanTest, NoNextLinkAndNonBundles) {
  auto last = ScanBundle(R"({"resourceType":"Bundle","link":[{"relation":"self","url":"u"}]})");
  ASSERT_TRUE(last);
  EXPECT_EQ(last->next_url, "");
  EXPECT_TRUE(last->entries.empty());
  auto oo = ScanBundle(R"({"resourceType":"OperationOutcome","issue":[]})");
  ASSERT_TRUE(oo);
  EXPECT_EQ(oo->resource_type, "OperationOutcome");
}

TEST(BundleScanTest, InvalidTextIsAnErrorWithItsPlace) {
  auto cut = ScanBundle("{\"resourceType\":\"Bundle\",\n\"entry\":[{\"resource\":{\"id\":\"1\"");
  ASSERT_FALSE(cut);
  EXPECT_TRUE(cut.error().is(Errc::kParseError));
  EXPECT_NE(cut.error().message.find("line 2"), std::string::npos) << cut.error().message;
  EXPECT_FALSE(ScanBundle("{\"a\":\"\xff\"}"));
  EXPECT_FALSE(ScanBundle(std::string("{\"a\":1}\0", 8)));
  EXPECT_FALSE(ScanBundle("{\"resourceType\":\"Bundle\"}}garbage"));
  std::string deep(200, '[');
  auto too_deep = ScanBundle("{\"a\":" + deep + std::string(200, ']') + "}");
  ASSERT_FALSE(too_deep);
  EXPECT_NE(too_deep.error().message.find("nesting"), std::string::npos);
}

TEST(BundleScanTest, TotalIsKeptOnlyWhenItIsAnUnsignedInt) {
  for (const char* total : {"-1", "1.5", "1e3", "\"7\"", "null"}) {
    auto scanned = ScanBundle(fmt::format(R"({{"resourceType": "Bundle", "total": {}}})", total));
    ASSERT_TRUE(scanned) << total;
    EXPECT_FALSE(scanned->total) << total;
  }
  auto nested = ScanBundle(R"({"resourceType": "Bundle", "entry": [{"resource":
      {"resourceType": "Bundle", "total": 5}}]})");
  ASSERT_TRUE(nested);
  EXPECT_FALSE(nested->total) << "only the page's own total counts";
}

}  // namespace
}  // namespace ccm::fhir
