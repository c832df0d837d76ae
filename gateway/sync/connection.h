// Connections to a configured FHIR endpoint (a source, a write-back target, a payer): its auth,
// TLS, timeouts and retries as one FhirClient.
#pragma once

#include <memory>
#include <string_view>

#include "fhir/client/auth.h"
#include "fhir/client/fhir_client.h"
#include "fhir/result.h"
#include "gateway/config/sync_config.h"

namespace ccm::gateway {

// The token source of `source`'s auth (shared by its connections; thread-safe).
Result<std::shared_ptr<fhir::TokenSource>> MakeTokenSource(const SourceConfig& source);

// A client for `source` (its base URL, auth, TLS, timeouts and retries); `purpose` goes into the
// User-Agent ("sync", "write-back").
Result<std::unique_ptr<fhir::FhirClient>> MakeFhirClient(const SourceConfig& source,
                                                         std::string_view purpose);

}  // namespace ccm::gateway
