// The SQLite implementation of the state store (gateway/store/state_store.h): the embedded default,
// one file per gateway.
#pragma once

#include <filesystem>
#include <memory>

#include "fhir/result.h"
#include "gateway/store/state_store.h"

namespace ccm::gateway {

// Opens (creating when missing) a SQLite state file, in WAL mode, and migrates its schema to the
// current version. Fails with a clear message when the file is not a ccm-gateway state file, is
// from a newer ccm-gateway, or cannot be opened.
Result<std::unique_ptr<StateStore>> OpenSqliteStateStore(const std::filesystem::path& path);

// The schema version this build writes.
int CurrentStateSchemaVersion() noexcept;

}  // namespace ccm::gateway
