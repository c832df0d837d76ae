#include "fhir/build.h"

#include <string>

namespace ccm::fhir::build {

using json::Value;

Value Str(std::string_view s) { return Value::String(std::string(s)); }

Value Ref(std::string_view reference) {
  Value r = Value::MakeObject();
  r.set("reference", Str(reference));
  return r;
}

Value Coding(std::string_view system, std::string_view code, std::string_view display) {
  Value c = Value::MakeObject();
  c.set("system", Str(system));
  c.set("code", Str(code));
  if (!display.empty()) c.set("display", Str(display));
  return c;
}

Value Concept(std::string_view system, std::string_view code, std::string_view display) {
  Value cc = Value::MakeObject();
  cc.set("coding", Value::MakeArray({Coding(system, code, display)}));
  return cc;
}

Value Identifier(std::string_view system, std::string_view value) {
  Value i = Value::MakeObject();
  i.set("system", Str(system));
  i.set("value", Str(value));
  return i;
}

std::string_view ReferenceId(std::string_view reference) noexcept {
  auto slash = reference.rfind('/');
  return slash == std::string_view::npos ? reference : reference.substr(slash + 1);
}

}  // namespace ccm::fhir::build
