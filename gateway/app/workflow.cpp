#include "gateway/app/workflow.h"

#include <chrono>
#include <stdexcept>

#include "gateway/store/sqlite_state_store.h"

namespace ccm::gateway::app {

void throw_exception_from_error(const WorkflowError& e, const boost::source_location&) {
  throw std::runtime_error(e.message);
}

WorkflowResult<std::unique_ptr<StateStore>> OpenStateStore(const GatewayConfig& config) {
  auto store = OpenSqliteStateStore(config.sync.state_path);
  if (!store) return Fail(ErrorKind::kFailed, "state-failed", store.error().message);
  return std::move(*store);
}

YearMonth CurrentMonth(const EngineConfig& engine) {
  auto now = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
  date::year_month_day ymd{std::chrono::floor<date::days>(now)};
  if (engine.practice.time_zone != nullptr) {
    auto local = engine.practice.time_zone->to_local(now);
    ymd = date::year_month_day{std::chrono::floor<date::days>(local)};
  }
  return YearMonth{static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month())};
}

}  // namespace ccm::gateway::app
