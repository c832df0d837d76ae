// FactStore: the de-duplicating index of every resource read (open addressing over chunked
// entries). Checked against a std::map model through growth past many table sizes and chunks.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>

#include "gateway/ccm/facts.h"

namespace ccm::gateway {
namespace {

Extracted Stamped(std::string key, std::string version, bool with_fact = false) {
  Extracted e;
  e.key = std::move(key);
  e.stored.stamp.version_id = std::move(version);
  if (with_fact) e.stored.fact = std::make_unique<Fact>(PractitionerFact{});
  return e;
}

TEST(FactStoreTest, KeepsTheNewestVersionOfEveryKeyThroughGrowth) {
  FactStore facts;  // no Reserve: the table grows from its smallest size
  std::map<std::string, int> model;
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> key_of(0, 20'000), version_of(1, 50);
  std::size_t added = 0, duplicates = 0;
  for (int i = 0; i < 60'000; ++i) {
    std::string key = "Encounter/" + std::to_string(key_of(rng));
    int version = version_of(rng);
    ++added;
    auto [it, fresh] = model.emplace(key, version);
    if (!fresh) {
      ++duplicates;
      it->second = std::max(it->second, version);
    }
    facts.Add(Stamped(key, std::to_string(version)));
  }
  EXPECT_EQ(facts.size(), model.size());
  EXPECT_EQ(facts.counts().resources, added);
  EXPECT_EQ(facts.counts().duplicates, duplicates);
  for (const auto& [key, version] : model) {
    const StoredFact* f = facts.Find(key);
    ASSERT_NE(f, nullptr) << key;
    EXPECT_EQ(f->stamp.version_id, std::to_string(version)) << key;
  }
  EXPECT_EQ(facts.Find("Encounter/20001"), nullptr);
  EXPECT_EQ(facts.Find("Condition/1"), nullptr) << "the type is part of the key";
  EXPECT_EQ(facts.Find(""), nullptr);
}

TEST(FactStoreTest, NotableEntriesAreListedOnceAndStayValidAsTheStoreGrows) {
  FactStore facts;
  facts.Reserve(10);  // far too small: the table is rebuilt many times below
  facts.Add(Stamped("Practitioner/a", "1", true));
  facts.Add(Stamped("Practitioner/a", "2", true));  // newer, replaces: still listed once
  for (int i = 0; i < 10'000; ++i) facts.Add(Stamped("Encounter/" + std::to_string(i), "1"));
  facts.Add(Stamped("Practitioner/b", "1", true));
  ASSERT_EQ(facts.notable().size(), 2u);
  EXPECT_EQ(*facts.notable()[0].first, "Practitioner/a");
  EXPECT_EQ(facts.notable()[0].second->stamp.version_id, "2");
  EXPECT_EQ(facts.notable()[0].second, facts.Find("Practitioner/a"));
  EXPECT_EQ(*facts.notable()[1].first, "Practitioner/b");
  EXPECT_EQ(facts.counts().kept, 2u);
  // An older version arriving later changes nothing.
  facts.Add(Stamped("Practitioner/a", "1"));
  EXPECT_EQ(facts.Find("Practitioner/a")->stamp.version_id, "2");
  EXPECT_NE(facts.Find("Practitioner/a")->fact, nullptr);
}

TEST(FactStoreTest, ResourcesOfOtherTypesAreCountedNotKept) {
  FactStore facts;
  facts.Add(Extracted{});
  EXPECT_EQ(facts.size(), 0u);
  EXPECT_EQ(facts.counts().resources, 1u);
  EXPECT_EQ(facts.counts().ignored_types, 1u);
}

}  // namespace
}  // namespace ccm::gateway
