// What the application layer's workflows (EvaluateMonth, RunSyncCycle, CloseMonth, QueryLedger)
// have in common: their error type, and the state store they open.
//
// The workflows take structs and return structs. They never print, never pick an exit status
// and never look at a terminal: the command line (gateway/cli/) and the HTTP service adapt them.
// Progress and events reach the caller through the observers each workflow states.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include <boost/system/result.hpp>

#include "fhir/result.h"
#include "gateway/ccm/engine.h"
#include "gateway/config/gateway_config.h"
#include "gateway/store/state_store.h"

namespace ccm::gateway::app {

// Why a workflow did not do what was asked, by what the caller should do about it. The command
// line maps these to exit statuses 2, 2, 1 and 3 (README.md); an HTTP service to 400, 422, 409
// and 500.
enum class ErrorKind {
  kInvalidRequest,  // the request itself is wrong (a month not yet ended, an id that is no id)
  kInvalidSetup,    // the configuration or the state is not usable for it; fix that first
  kRefused,         // doing it now would be unsafe (a lock held, incomplete data): nothing done
  kFailed,          // it could not run: the state store, a local file, the built-in data
};

struct WorkflowError {
  ErrorKind kind = ErrorKind::kFailed;
  // Where it stopped, for logs and machines: "config-failed", "state-failed", "sync-locked",
  // "bill-locked", "incomplete-data", "prior-billing", "ledger-failed", ...
  std::string code;
  // For people: what, why, and how to go on. May span lines (a list of what is missing); holds
  // no secret and no patient data.
  std::string message;
};

// Found by ADL when `.value()` is called on a failed WorkflowResult.
[[noreturn]] void throw_exception_from_error(const WorkflowError& e,
                                             const boost::source_location& loc);

template <class T>
using WorkflowResult = boost::system::result<T, WorkflowError>;
using WorkflowStatus = boost::system::result<void, WorkflowError>;

inline WorkflowError Fail(ErrorKind kind, std::string code, std::string message) {
  return WorkflowError{kind, std::move(code), std::move(message)};
}

// Opens (creating when missing) the state store the configuration names (state.path). The one
// place that picks the store's implementation (SQLite). kFailed when it cannot be opened.
WorkflowResult<std::unique_ptr<StateStore>> OpenStateStore(const GatewayConfig& config);

// The current calendar month in the practice time zone.
YearMonth CurrentMonth(const EngineConfig& engine);

}  // namespace ccm::gateway::app
