// What a server that `bill` writes to must promise before anything is written to it: every
// create the gateway makes (CarePlan, ChargeItem, claim Bundle) is conditional on an identifier
// (If-None-Exist), and a server that ignores that header creates a duplicate whenever a create is
// retried after a lost answer -- a second ChargeItem, a second claim. R4 declares the support in
// CapabilityStatement.rest.resource.conditionalCreate (capabilitystatement.html); this checks it.
//
// Contract
// - MissingConditionalCreate is pure: the types in `types` whose entry in the server-mode rest of
//   `cs` does not say conditionalCreate = true (a type not listed at all is missing too).
// - CheckConditionalCreate reads the server's CapabilityStatement (GET [base]/metadata) and fails
//   with kUnsupported naming `role`, the types and the fix when some type is missing; with the
//   client's error when the statement cannot be read (nothing is assumed then).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "fhir/client/fhir_client.h"
#include "fhir/json.h"
#include "fhir/result.h"

namespace ccm::gateway {

std::vector<std::string> MissingConditionalCreate(const fhir::json::Value& cs,
                                                  const std::vector<std::string>& types);

// `role` names the server and the key that vouches for it instead, e.g.
// "writeBack.target \"ehr\"" / "writeBack.requireConditionalCreate".
Status CheckConditionalCreate(fhir::FhirClient& client, const std::vector<std::string>& types,
                              std::string_view role, std::string_view override_key);

}  // namespace ccm::gateway
