// What must hold before `ccm-gateway bill` acts on a month (docs/architecture.md "Billing ledger
// and write-back", docs/ccm-rules.md "Hold rules"): the data it bills from is complete, and the
// state file it records in is the practice's ledger, not a new one beside claims already sent.
//
// Contract
// - CheckCompleteness is a pure function of the pull status in the store and the config: every
//   configured source needs its `resourceTypes` (or DefaultResourceTypes) pulled, and each such
//   type's last pull must be kComplete or kNotOffered. Anything else -- never pulled, kRunning
//   (the caller holds the sync lock, so that is a sync that died mid-pull), kFailed,
//   kIncomplete -- is a gap. So is a complete pull that started before `needed_from` (for a
//   closed month: the instant the month ended in the practice time zone), since what was
//   documented for the month's last days may have arrived after it. It also gives the time from
//   which the data is known complete, and the time from which it is known complete *and re-read in
//   full*, which confirms the ledger's proposals (only a full pull sees what was deleted or lost).
// - The other check, that no claims exist beside a new state file, reads servers and files:
//   gateway/writeback/prior_billing.h.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "fhir/datetime.h"
#include "fhir/result.h"
#include "gateway/ccm/engine.h"
#include "gateway/ccm/engine_config.h"
#include "gateway/config/sync_config.h"
#include "gateway/config/writeback_config.h"
#include "gateway/store/state_store.h"

namespace ccm::gateway {

// A needed source/type whose data is not known to be complete.
struct PullGap {
  std::string source, type;
  std::optional<PullState> state;  // nullopt: never pulled
  std::string since;               // failing since (the running pull's start for kRunning)
  std::string last_complete;       // when its last complete pull finished ("" when none)
  std::string detail;              // what the sync recorded (no patient data)
  // A complete pull that started before the data was needed (the month's end): `since` is its
  // start, `needed_from` that instant.
  bool stale = false;
  std::string needed_from;
};
// "ehr/Encounter: failed since 2026-11-02T10:00:00Z (last complete pull finished ...): HTTP 503"
std::string Describe(const PullGap& gap);

struct Completeness {
  std::vector<PullGap> gaps;  // by source, then type as configured
  // The start of the oldest of the last complete pulls of every needed type (for a type not
  // offered: when that was recorded): the data is known complete as of then. nullopt when some
  // needed type has never been pulled completely.
  std::optional<fhir::TimePoint> complete_since;
  // The same over the last complete *full* pulls: nullopt when some needed type has never been
  // pulled completely in full.
  std::optional<fhir::TimePoint> full_complete_since;
};

Completeness CheckCompleteness(const std::vector<PullStatus>& statuses, const SyncConfig& sync,
                               const EngineConfig& engine,
                               std::optional<fhir::TimePoint> needed_from = std::nullopt);

// The instant `month` ends (the first instant of the next month) in the practice time zone
// (UTC when none is configured).
fhir::TimePoint MonthEnd(const YearMonth& month, const EngineConfig& engine);

}  // namespace ccm::gateway
