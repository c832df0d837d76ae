// What must hold before `ccm-gateway bill` acts on a month (docs/architecture.md "Billing ledger
// and write-back", docs/ccm-rules.md "Hold rules"): the data it bills from is complete, and the
// state file it records in is the practice's ledger, not a new one beside claims already sent.
//
// Contract
// - CheckCompleteness is a pure function of the pull status in the store and the config: every
//   configured source needs its `resourceTypes` (or DefaultResourceTypes) pulled, and each such
//   type's last pull must be kComplete or kNotOffered. Anything else -- never pulled, kRunning
//   (the caller holds the sync lock, so that is a sync that died mid-pull), kFailed,
//   kIncomplete -- is a gap. It also gives the time from which the data is known complete, which
//   confirms the ledger's proposals.
// - FindPriorBilling looks for claims this practice already made outside the state file: claim
//   files in the payers' directories, and (when those channels are configured) ChargeItems on the
//   write-back target and claim Bundles at the payers' endpoints carrying the gateway's identifier
//   systems. Only reads; errors are returned (a check that could not be made is not a pass).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "fhir/datetime.h"
#include "fhir/fhir_client.h"
#include "fhir/result.h"
#include "gateway/ccm_config.h"
#include "gateway/state_store.h"
#include "gateway/sync_config.h"
#include "gateway/writeback_config.h"

namespace ccm::gateway {

// A needed source/type whose data is not known to be complete.
struct PullGap {
  std::string source, type;
  std::optional<PullState> state;  // nullopt: never pulled
  std::string since;               // failing since (the running pull's start for kRunning)
  std::string last_complete;       // when its last complete pull finished ("" when none)
  std::string detail;              // what the sync recorded (no patient data)
};
// "ehr/Encounter: failed since 2026-11-02T10:00:00Z (last complete pull finished ...): HTTP 503"
std::string Describe(const PullGap& gap);

struct Completeness {
  std::vector<PullGap> gaps;  // by source, then type as configured
  // The start of the oldest of the last complete pulls of every needed type (for a type not
  // offered: when that was recorded): the data is known complete as of then. nullopt when some
  // needed type has never been pulled completely.
  std::optional<fhir::TimePoint> complete_since;
};

Completeness CheckCompleteness(const std::vector<PullStatus>& statuses, const SyncConfig& sync,
                               const EngineConfig& engine);

// What already shows that this practice billed (one line each, no patient data), for a state
// file whose ledger is empty. `ehr` is the write-back target's client (searched only with
// writeBack.chargeItems); payers' endpoints get a client of their own.
Result<std::vector<std::string>> FindPriorBilling(const WriteBackConfig& config,
                                                  fhir::FhirClient* ehr);

}  // namespace ccm::gateway
