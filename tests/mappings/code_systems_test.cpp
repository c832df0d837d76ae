#include "mappings/code_systems.h"

#include <gtest/gtest.h>

namespace ccm::mappings {
namespace {

TEST(CodeSystemsTest, Icd10IsMatchedWithOrWithoutTheDot) {
  EXPECT_EQ(NormalizeIcd10("E11.9"), "E119");
  EXPECT_EQ(NormalizeIcd10("E119"), "E119");
  EXPECT_EQ(NormalizeIcd10(" i50.22 "), "I5022");
  EXPECT_EQ(NormalizeIcd10(""), "");
  EXPECT_NE(NormalizeIcd10("E11.9"), NormalizeIcd10("E11.91"));
}

}  // namespace
}  // namespace ccm::mappings
