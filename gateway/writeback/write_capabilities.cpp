#include "gateway/writeback/write_capabilities.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace ccm::gateway {

using fhir::json::Value;

std::vector<std::string> MissingConditionalCreate(const Value& cs,
                                                  const std::vector<std::string>& types) {
  std::vector<std::string> missing;
  for (const auto& type : types) {
    bool declared = false;
    for (const Value& rest : cs["rest"].array()) {
      // A client-mode rest describes what the server does as a client: not this.
      if (rest["mode"].str() != "server") continue;
      for (const Value& r : rest["resource"].array()) {
        if (r["type"].str() == type && r["conditionalCreate"].is_bool() &&
            r["conditionalCreate"].as_bool()) {
          declared = true;
        }
      }
    }
    if (!declared) missing.push_back(type);
  }
  return missing;
}

Status CheckConditionalCreate(fhir::FhirClient& client, const std::vector<std::string>& types,
                              std::string_view role, std::string_view override_key) {
  if (types.empty()) return {};
  auto cs = client.Capabilities();
  if (!cs) {
    return Error{cs.error().code,
                 fmt::format("{}: its CapabilityStatement could not be read, so it is not known "
                             "to honour conditional creates: {}",
                             role, cs.error().message)};
  }
  auto missing = MissingConditionalCreate(*cs, types);
  if (missing.empty()) return {};
  return MakeError(
      Errc::kUnsupported,
      fmt::format("{}: the server's CapabilityStatement does not declare conditionalCreate for "
                  "{}; every create the gateway makes is conditional (If-None-Exist), and a "
                  "server that ignores it creates a duplicate whenever a create is retried after "
                  "a lost answer. Enable conditional create on the server, or, if you know it "
                  "honours If-None-Exist anyway, set {} to false",
                  role, fmt::join(missing, ", "), override_key));
}

}  // namespace ccm::gateway
