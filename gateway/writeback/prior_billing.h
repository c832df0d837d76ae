// Whether this practice already billed outside the state file (docs/ccm-rules.md "Hold rules"):
// `bill` refuses a new or emptied ledger beside claims already sent.
//
// Contract
// - FindPriorBilling looks for claims this practice already made outside the state file: claim
//   files in the payers' directories, and (when those channels are configured) ChargeItems on the
//   write-back target and claim Bundles at the payers' endpoints carrying the gateway's identifier
//   systems. Only reads; errors are returned (a check that could not be made is not a pass).
#pragma once

#include <string>
#include <vector>

#include "fhir/client/fhir_client.h"
#include "fhir/result.h"
#include "gateway/config/writeback_config.h"
#include "gateway/store/state_store.h"

namespace ccm::gateway {

// What already shows that this practice billed (one line each, no patient data), for a state
// file whose ledger is empty. `ehr` is the write-back target's client (searched only with
// writeBack.chargeItems); payers' endpoints get a client of their own.
Result<std::vector<std::string>> FindPriorBilling(const WriteBackConfig& config,
                                                  fhir::FhirClient* ehr);

// Claim files in the payers' directories whose batch no delivery in `store` was queued in (one
// line each: the file and its directory): the claims were written by a newer copy of the state
// file -- an older backup was restored -- or by another gateway. Billing from this state file
// could bill their patient-months again. A payer the store never queued anything for is left to
// FindPriorBilling (a new ledger).
Result<std::vector<std::string>> ClaimFilesUnknownToTheLedger(const WriteBackConfig& config,
                                                              LedgerStore& store);

}  // namespace ccm::gateway
