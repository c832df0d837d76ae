#include "fhir/r4_model.h"

#include <algorithm>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace ccm::fhir::r4 {
namespace {

// Row types of the generated table (see scripts/gen-r4-model.mjs for how it is derived).
struct StructureRow {
  const char* name;
  char kind;  // 'R' resource, 'T' datatype, 'B' backbone, 'a' abstract
  int first;
  int count;
};

struct ElementRow {
  const char* name;
  const char* type;
  const char* choice;
  int min;
  int many;
  int value_set;  // index into kValueSetRows, -1 when codes are not checked
};

struct ValueSetRow {
  const char* url;
  int first;
  int count;
};

#include "fhir/r4_model_data.inc"

StructureKind ToKind(char c) {
  switch (c) {
    case 'R':
      return StructureKind::kResource;
    case 'T':
      return StructureKind::kDatatype;
    case 'B':
      return StructureKind::kBackbone;
    default:
      return StructureKind::kAbstract;
  }
}

// The indexes over the generated rows. Built once (function-local static), then only read.
class Model {
 public:
  Model() {
    primitives_.insert(std::begin(kPrimitiveTypes), std::end(kPrimitiveTypes));
    elements_.reserve(std::size(kElementRows));
    for (const ElementRow& row : kElementRows) {
      ElementInfo e;
      e.name = row.name;
      e.type = row.type;
      e.choice_base = row.choice;
      e.min = static_cast<std::uint32_t>(row.min);
      e.many = row.many != 0;
      if (primitives_.contains(e.type)) {
        e.type_kind = TypeKind::kPrimitive;
      } else if (e.type == "Resource") {
        e.type_kind = TypeKind::kResource;
      } else {
        e.type_kind = TypeKind::kComplex;
      }
      if (row.value_set >= 0) {
        const ValueSetRow& vs = kValueSetRows[row.value_set];
        e.value_set = vs.url;
        e.codes = std::span<const std::string_view>(kCodes + vs.first,
                                                    static_cast<std::size_t>(vs.count));
      }
      elements_.push_back(e);
    }
    structures_.reserve(std::size(kStructureRows));
    children_.resize(std::size(kStructureRows));
    for (const StructureRow& row : kStructureRows) {
      StructureInfo s;
      s.name = row.name;
      s.kind = ToKind(row.kind);
      s.elements = std::span<const ElementInfo>(elements_.data() + row.first,
                                                static_cast<std::size_t>(row.count));
      auto& children = children_[structures_.size()];
      for (const ElementInfo& e : s.elements) children.emplace(e.name, &e);
      by_name_.emplace(s.name, structures_.size());
      if (s.kind == StructureKind::kResource) resource_types_.push_back(s.name);
      structures_.push_back(s);
    }
    std::sort(resource_types_.begin(), resource_types_.end());
  }

  bool IsPrimitive(std::string_view name) const { return primitives_.contains(name); }

  const StructureInfo* Structure(std::string_view name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : &structures_[it->second];
  }

  const ElementInfo* Child(std::string_view structure, std::string_view name) const {
    auto it = by_name_.find(structure);
    if (it == by_name_.end()) return nullptr;
    const auto& children = children_[it->second];
    auto c = children.find(name);
    return c == children.end() ? nullptr : c->second;
  }

  std::span<const std::string_view> resource_types() const { return resource_types_; }

 private:
  std::unordered_set<std::string_view> primitives_;
  std::vector<ElementInfo> elements_;
  std::vector<StructureInfo> structures_;
  std::vector<std::unordered_map<std::string_view, const ElementInfo*>> children_;
  std::unordered_map<std::string_view, std::size_t> by_name_;
  std::vector<std::string_view> resource_types_;
};

const Model& GetModel() {
  static const Model model;
  return model;
}

}  // namespace

bool ElementInfo::AllowsCode(std::string_view code) const noexcept {
  if (codes.empty()) return true;
  return std::binary_search(codes.begin(), codes.end(), code);
}

bool IsResourceType(std::string_view name) noexcept {
  const StructureInfo* s = GetModel().Structure(name);
  return s != nullptr && s->kind == StructureKind::kResource;
}

bool IsPrimitiveType(std::string_view name) noexcept { return GetModel().IsPrimitive(name); }

std::span<const std::string_view> ResourceTypes() noexcept { return GetModel().resource_types(); }

std::span<const std::string_view> PrimitiveTypes() noexcept { return kPrimitiveTypes; }

namespace {

char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool EqualIgnoringCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](char x, char y) { return Lower(x) == Lower(y); });
}

// Edit distance ignoring case, a swap of two neighbouring letters counting as one edit (optimal
// string alignment); gives up (returning limit + 1) past `limit`.
std::size_t EditDistance(std::string_view a, std::string_view b, std::size_t limit) {
  if ((a.size() > b.size() ? a.size() - b.size() : b.size() - a.size()) > limit) return limit + 1;
  std::vector<std::size_t> before(b.size() + 1), prev(b.size() + 1), row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    row[0] = i;
    std::size_t best = row[0];
    for (std::size_t j = 1; j <= b.size(); ++j) {
      bool same = Lower(a[i - 1]) == Lower(b[j - 1]);
      row[j] = std::min({prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (same ? 0 : 1)});
      if (i > 1 && j > 1 && Lower(a[i - 1]) == Lower(b[j - 2]) &&
          Lower(a[i - 2]) == Lower(b[j - 1])) {
        row[j] = std::min(row[j], before[j - 2] + 1);
      }
      best = std::min(best, row[j]);
    }
    if (best > limit) return limit + 1;
    std::swap(before, prev);
    std::swap(prev, row);
  }
  return prev[b.size()];
}

}  // namespace

std::string_view SuggestResourceType(std::string_view name) {
  if (name.empty() || IsResourceType(name)) return {};
  std::span<const std::string_view> types = ResourceTypes();
  for (std::string_view t : types) {
    if (EqualIgnoringCase(t, name)) return t;
  }
  // Plurals: "Encounters", "Observations", "ActivityDefinitions"; "-ies" is not an R4 ending.
  for (std::string_view suffix : {"s", "es"}) {
    if (name.size() <= suffix.size() || !name.ends_with(suffix)) continue;
    std::string_view stem = name.substr(0, name.size() - suffix.size());
    for (std::string_view t : types) {
      if (EqualIgnoringCase(t, stem)) return t;
    }
  }
  const std::size_t limit = std::max<std::size_t>(1, name.size() / 4);
  std::string_view best;
  std::size_t best_distance = limit + 1;
  for (std::string_view t : types) {
    std::size_t d = EditDistance(name, t, limit);
    if (d < best_distance) {
      best = t;
      best_distance = d;
    }
  }
  return best;
}

const StructureInfo* FindStructure(std::string_view name) noexcept {
  return GetModel().Structure(name);
}

const ElementInfo* FindChild(std::string_view structure, std::string_view json_name) noexcept {
  return GetModel().Child(structure, json_name);
}

const ElementInfo* FindElement(std::string_view type, std::string_view relative_path) noexcept {
  const ElementInfo* current = nullptr;
  std::string_view structure = type;
  while (true) {
    std::size_t dot = relative_path.find('.');
    std::string_view step = relative_path.substr(0, dot);
    current = FindChild(structure, step);
    if (current == nullptr || dot == std::string_view::npos) return current;
    if (current->type_kind != TypeKind::kComplex) return nullptr;
    structure = current->type;
    relative_path.remove_prefix(dot + 1);
  }
}

}  // namespace ccm::fhir::r4
