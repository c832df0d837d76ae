// Pulling a source with FHIR Bulk Data $export (sources[].bulk; docs/design/bulk.md) into the state
// store, with the integrity rules of the search pull (sync.h):
// - One export per source and sync: the source's types (`_type`), its level (system, Patient or
//   Group), its typeFilters, and `_since` = the oldest of the types' cursors when every type has a
//   cursor made by an export of the same level, group and filters (else everything, a full pull).
// - The cursor of a type is the manifest's transactionTime, stored in the transaction that records
//   the type complete, and only once every output file of the type is in (each file's lines all
//   stored, its `count` verified), no error OperationOutcome names the type (or, naming no type,
//   the export), and transactionTime is believable (not ahead of our clock by more than
//   sync.maxClockSkewSeconds, not before the `_since` asked). Otherwise the type is failed (an
//   error) or incomplete: what arrived is stored, the cursor stays, nothing is removed.
// - Files are downloaded bulk.parallelDownloads at a time, streamed line by line into the store in
//   transactions of about a MiB: memory is bounded by a few batches, not by file sizes.
// - `deleted` (v2, with _since) removes those resources, in the completing transaction of a
//   complete type. A full export removes nothing it did not see (not yet: see docs/design/bulk.md).
// - The status URL is DELETEd when the export is done with (also after a failure).
// - Not yet: the status URL is not persisted, so a killed run starts a new export next time.
#pragma once

#include <string>
#include <vector>

#include "gateway/config/sync_config.h"
#include "gateway/store/state_store.h"
#include "gateway/sync/sync.h"

namespace ccm::gateway {

// Pulls `types` of `source` (which has `bulk`) into `store`. Never throws; failures are in the
// result and in the store's pull status, as for SyncSource.
SourceSync SyncBulkSource(const SourceConfig& source, const std::vector<std::string>& types,
                          StateStore& store, const SyncOptions& options,
                          const SyncObserver& observer);

}  // namespace ccm::gateway
