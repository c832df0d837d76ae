#include "fhir/r4_model.h"

#include <algorithm>
#include <string>

#include <gtest/gtest.h>

namespace ccm::fhir::r4 {
namespace {

TEST(R4ModelTest, ResourceAndPrimitiveTypes) {
  EXPECT_EQ(ResourceTypes().size(), 146u);  // R4 resource-types CodeSystem minus the 2 abstract
  EXPECT_TRUE(std::is_sorted(ResourceTypes().begin(), ResourceTypes().end()));
  for (const char* t : {"Patient", "Encounter", "Bundle", "Parameters", "Binary", "CarePlan",
                        "OperationOutcome", "VerificationResult"}) {
    EXPECT_TRUE(IsResourceType(t)) << t;
  }
  // Abstract bases, datatypes, wrong case, later-version resources are not R4 resource types.
  for (const char* t : {"Resource", "DomainResource", "Period", "patient", "SubscriptionStatus",
                        "ClinicalDocument", ""}) {
    EXPECT_FALSE(IsResourceType(t)) << t;
  }
  EXPECT_EQ(PrimitiveTypes().size(), 20u);
  EXPECT_TRUE(IsPrimitiveType("dateTime"));
  EXPECT_TRUE(IsPrimitiveType("xhtml"));
  EXPECT_FALSE(IsPrimitiveType("Period"));
}

TEST(R4ModelTest, SuggestsTheResourceTypeAMisspeltOneMeans) {
  EXPECT_EQ(SuggestResourceType("patient"), "Patient");
  EXPECT_EQ(SuggestResourceType("PATIENT"), "Patient");
  EXPECT_EQ(SuggestResourceType("Encounters"), "Encounter");
  EXPECT_EQ(SuggestResourceType("encounters"), "Encounter");
  EXPECT_EQ(SuggestResourceType("Observations"), "Observation");
  EXPECT_EQ(SuggestResourceType("careplan"), "CarePlan");
  EXPECT_EQ(SuggestResourceType("Obsrvation"), "Observation");
  EXPECT_EQ(SuggestResourceType("Conditon"), "Condition");
  EXPECT_EQ(SuggestResourceType("Bundel"), "Bundle");
  // Nothing close, or nothing wrong.
  EXPECT_EQ(SuggestResourceType("Report"), "");
  EXPECT_EQ(SuggestResourceType("xyz"), "");
  EXPECT_EQ(SuggestResourceType(""), "");
  EXPECT_EQ(SuggestResourceType("Patient"), "");
}

TEST(R4ModelTest, FindsElementsWithTypesAndCardinality) {
  const ElementInfo* status = FindElement("Encounter", "status");
  ASSERT_NE(status, nullptr);
  EXPECT_EQ(status->type, "code");
  EXPECT_EQ(status->min, 1u);
  EXPECT_FALSE(status->many);
  EXPECT_EQ(status->type_kind, TypeKind::kPrimitive);
  EXPECT_EQ(status->value_set, "http://hl7.org/fhir/ValueSet/encounter-status");
  EXPECT_TRUE(status->AllowsCode("finished"));
  EXPECT_TRUE(status->AllowsCode("entered-in-error"));
  EXPECT_FALSE(status->AllowsCode("completed"));  // R4 uses "finished"
  EXPECT_FALSE(status->AllowsCode("Finished"));   // case-sensitive

  const ElementInfo* period = FindElement("Encounter", "period");
  ASSERT_NE(period, nullptr);
  EXPECT_EQ(period->type, "Period");
  EXPECT_EQ(period->type_kind, TypeKind::kComplex);

  const ElementInfo* individual = FindElement("Encounter", "participant.individual");
  ASSERT_NE(individual, nullptr);
  EXPECT_EQ(individual->type, "Reference");
  const ElementInfo* participant = FindElement("Encounter", "participant");
  ASSERT_NE(participant, nullptr);
  EXPECT_EQ(participant->type, "Encounter.participant");
  EXPECT_TRUE(participant->many);

  const ElementInfo* reason = FindElement("Encounter", "reasonCode");
  ASSERT_NE(reason, nullptr);
  EXPECT_TRUE(reason->many);
  EXPECT_EQ(reason->type, "CodeableConcept");
  EXPECT_NE(FindElement("Encounter", "reasonCode.coding.code"), nullptr);

  EXPECT_EQ(FindElement("Encounter", "nonsense"), nullptr);
  EXPECT_EQ(FindElement("Encounter", "status.value"), nullptr);  // no steps into primitives
  EXPECT_EQ(FindElement("Nonsense", "id"), nullptr);
}

TEST(R4ModelTest, StatusLikeCodeableConceptsAreNotCodeChecked) {
  // Condition.clinicalStatus is a CodeableConcept: only `code` elements carry allowed codes.
  const ElementInfo* clinical = FindElement("Condition", "clinicalStatus");
  ASSERT_NE(clinical, nullptr);
  EXPECT_EQ(clinical->type, "CodeableConcept");
  EXPECT_TRUE(clinical->codes.empty());
  // Required bindings that cannot be enumerated offline (BCP-13 mime types) are not checked.
  const ElementInfo* content_type = FindElement("Attachment", "contentType");
  ASSERT_NE(content_type, nullptr);
  EXPECT_TRUE(content_type->codes.empty());
  // Nested CodeSystem concepts are included.
  const ElementInfo* gender = FindElement("Patient", "gender");
  ASSERT_NE(gender, nullptr);
  EXPECT_EQ(gender->codes.size(), 4u);
}

TEST(R4ModelTest, ChoiceTypesAreExpanded) {
  const ElementInfo* q = FindChild("Observation", "valueQuantity");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->type, "Quantity");
  EXPECT_EQ(q->choice_base, "value");
  EXPECT_TRUE(q->is_choice());
  const ElementInfo* onset = FindChild("Condition", "onsetDateTime");
  ASSERT_NE(onset, nullptr);
  EXPECT_EQ(onset->type, "dateTime");
  EXPECT_NE(FindChild("Condition", "onsetPeriod"), nullptr);
  EXPECT_EQ(FindChild("Condition", "onset[x]"), nullptr);
  EXPECT_EQ(FindChild("Condition", "onset"), nullptr);
  EXPECT_NE(FindChild("Extension", "valueBase64Binary"), nullptr);
  EXPECT_NE(FindChild("Extension", "valueCodeableConcept"), nullptr);
  EXPECT_NE(FindElement("Observation", "valueQuantity.value"), nullptr);
}

TEST(R4ModelTest, ContentReferencesAndNestedElementsResolve) {
  const ElementInfo* link = FindElement("Bundle", "entry.link");
  ASSERT_NE(link, nullptr);
  EXPECT_EQ(link->type, "Bundle.link");
  EXPECT_TRUE(link->many);
  EXPECT_NE(FindElement("Bundle", "entry.link.relation"), nullptr);
  const ElementInfo* item = FindElement("Questionnaire", "item.item");
  ASSERT_NE(item, nullptr);
  EXPECT_EQ(item->type, "Questionnaire.item");
  EXPECT_NE(FindElement("Questionnaire", "item.item.item.linkId"), nullptr);
  const ElementInfo* repeat = FindElement("Timing", "repeat");
  ASSERT_NE(repeat, nullptr);
  EXPECT_EQ(repeat->type, "Timing.repeat");
  EXPECT_NE(FindElement("Timing", "repeat.boundsPeriod"), nullptr);
  const ElementInfo* outcome = FindElement("Bundle", "entry.response.outcome");
  ASSERT_NE(outcome, nullptr);
  EXPECT_EQ(outcome->type_kind, TypeKind::kResource);
  const ElementInfo* contained = FindElement("Patient", "contained");
  ASSERT_NE(contained, nullptr);
  EXPECT_EQ(contained->type, "Resource");
}

TEST(R4ModelTest, InheritedElementsAndIds) {
  const ElementInfo* id = FindChild("Patient", "id");
  ASSERT_NE(id, nullptr);
  EXPECT_EQ(id->type, "id");  // Resource.id
  const ElementInfo* element_id = FindChild("Period", "id");
  ASSERT_NE(element_id, nullptr);
  EXPECT_EQ(element_id->type, "string");  // Element.id
  EXPECT_NE(FindChild("Patient", "meta"), nullptr);
  EXPECT_NE(FindChild("Patient", "modifierExtension"), nullptr);
  EXPECT_NE(FindChild("Encounter.participant", "modifierExtension"), nullptr);
  EXPECT_EQ(FindChild("Period", "modifierExtension"), nullptr);
  const ElementInfo* url = FindChild("Extension", "url");
  ASSERT_NE(url, nullptr);
  EXPECT_EQ(url->type, "uri");
  EXPECT_EQ(url->min, 1u);
}

TEST(R4ModelTest, TableIsConsistent) {
  // Every element type is a primitive, "Resource", or a structure in the table; every resource
  // type has a structure; choice groups share cardinality.
  std::size_t elements = 0;
  for (std::string_view rt : ResourceTypes()) {
    const StructureInfo* s = FindStructure(rt);
    ASSERT_NE(s, nullptr) << rt;
    EXPECT_EQ(s->kind, StructureKind::kResource);
    ASSERT_NE(FindChild(rt, "id"), nullptr) << rt;
    for (const ElementInfo& e : s->elements) {
      ++elements;
      EXPECT_EQ(FindChild(rt, e.name), &e);
      if (e.type_kind == TypeKind::kComplex) {
        const StructureInfo* t = FindStructure(e.type);
        ASSERT_NE(t, nullptr) << rt << "." << e.name << ": " << e.type;
        for (const ElementInfo& c : t->elements) {
          if (c.type_kind == TypeKind::kComplex) {
            EXPECT_NE(FindStructure(c.type), nullptr) << c.type;
          }
        }
      }
      for (std::size_t i = 1; i < e.codes.size(); ++i) EXPECT_LT(e.codes[i - 1], e.codes[i]);
    }
  }
  EXPECT_GT(elements, 3000u);
}

}  // namespace
}  // namespace ccm::fhir::r4
