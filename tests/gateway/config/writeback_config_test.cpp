// The identifier systems of the writeBack and billing sections: every system that ends up in an
// `identifier=system|value` search or conditional create is checked when the config is read.
#include "gateway/config/writeback_config.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "fhir/json.h"

namespace ccm::gateway {
namespace {

TEST(IdentifierSystemTest, SystemsUsedInTokenSearchesAreCheckedAtConfigLoad) {
  for (std::string_view ok :
       {"urn:ccm-gateway", "https://clinic.example/fhir/ccm", "urn:oid:2.16.840.1.113883.4.927",
        "http://hl7.org/fhir/sid/us-mbi"}) {
    EXPECT_EQ(IdentifierSystemProblem(ok), "") << ok;
  }
  EXPECT_NE(IdentifierSystemProblem("urn:a|b").find("contains '|'"), std::string::npos);
  EXPECT_NE(IdentifierSystemProblem("urn:a,b").find("contains ','"), std::string::npos);
  EXPECT_NE(IdentifierSystemProblem("urn:a$b").find("contains '$'"), std::string::npos);
  EXPECT_NE(IdentifierSystemProblem("urn:a\\b").find("contains '\\'"), std::string::npos);
  EXPECT_NE(IdentifierSystemProblem("urn:my clinic").find("whitespace"), std::string::npos);
  EXPECT_NE(IdentifierSystemProblem("urn:x\t").find("whitespace"), std::string::npos);
  EXPECT_NE(IdentifierSystemProblem("ccm-gateway").find("not an absolute URI"), std::string::npos);
  EXPECT_NE(IdentifierSystemProblem("").find("not an absolute URI"), std::string::npos);
  EXPECT_NE(IdentifierSystemProblem("1x:y").find("not an absolute URI"), std::string::npos);

  SyncConfig sync;
  sync.sources.push_back(SourceConfig{.name = "ehr", .base_url = "https://ehr/fhir"});
  auto load = [&](const std::string& text) {
    auto v = fhir::json::Parse(text);
    EXPECT_TRUE(v) << text;
    return WriteBackConfigFromJson(*v, "site.json", "/etc/ccm", {}, sync);
  };
  const std::string provider = R"("provider": {"name": "C", "npi": "1234567893"})";
  struct Case {
    std::string json, key;
  };
  for (const Case& c : std::vector<Case>{
           {R"({"billing": {"identifierSystem": "urn:ccm|gw"}})", "billing.identifierSystem"},
           {R"({"writeBack": {"carePlanIdentifierSystem": "https://clinic.example/ccm plan"}})",
            "writeBack.carePlanIdentifierSystem"},
           {R"({"billing": {)" + provider +
                R"(, "payers": [{"name": "m", "directory": "x", "identifierSystem": "urn:a,b",
                    "identifierValue": "1"}]}})",
            "billing.payers[0].identifierSystem"},
           {R"({"billing": {)" + provider +
                R"(, "payers": [{"name": "m", "directory": "x", "memberIdSystem": "members"}]}})",
            "billing.payers[0].memberIdSystem"},
       }) {
    auto r = load(c.json);
    ASSERT_FALSE(r) << c.json;
    EXPECT_TRUE(r.error().message.starts_with(fmt::format("site.json: {}: ", c.key)))
        << r.error().message;
    EXPECT_NE(r.error().message.find("use an absolute URI without"), std::string::npos);
  }
  auto good =
      load(R"({"billing": {)" + provider +
           R"(, "payers": [{"name": "m", "directory": "x", "memberIdSystem": "urn:oid:1.2.3"}]}})");
  ASSERT_TRUE(good) << good.error().message;
  EXPECT_EQ(good->payers[0].member_id_system, "urn:oid:1.2.3");
}

}  // namespace
}  // namespace ccm::gateway
