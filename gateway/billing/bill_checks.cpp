#include "gateway/billing/bill_checks.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <map>

namespace ccm::gateway {
namespace {

std::optional<fhir::TimePoint> Instant(std::string_view text) {
  if (text.empty()) return std::nullopt;
  auto t = fhir::FhirDateTime::ParseInstant(text);
  if (!t) return std::nullopt;
  return t->Earliest();
}

}  // namespace

std::string Describe(const PullGap& g) {
  std::string what;
  if (g.stale) {
    return fmt::format(
        "{}/{}: the last complete pull started {}, before the month ended ({}): what was "
        "documented since is not in the store",
        g.source, g.type, g.since, g.needed_from);
  }
  if (!g.state) {
    what = "never pulled";
  } else if (*g.state == PullState::kRunning) {
    what =
        fmt::format("running since {} while no sync holds the lock: a sync died mid-pull", g.since);
  } else {
    what = fmt::format("{} since {}", ToCode(*g.state), g.since);
  }
  std::string last = !g.state ? ""
                     : g.last_complete.empty()
                         ? " (never pulled completely)"
                         : fmt::format(" (last complete pull finished {})", g.last_complete);
  return fmt::format("{}/{}: {}{}{}", g.source, g.type, what, last,
                     g.detail.empty() ? "" : ": " + g.detail);
}

Completeness CheckCompleteness(const std::vector<PullStatus>& statuses, const SyncConfig& sync,
                               const EngineConfig& engine,
                               std::optional<fhir::TimePoint> needed_from) {
  std::map<std::pair<std::string, std::string>, const PullStatus*> by_key;
  for (const auto& s : statuses) by_key[{s.source, s.type}] = &s;
  Completeness out;
  bool every_type_complete_once = true, every_type_full_once = true;
  std::optional<fhir::TimePoint> oldest, oldest_full;
  for (const SourceConfig& source : sync.sources) {
    std::vector<std::string> types =
        source.resource_types.empty() ? DefaultResourceTypes(engine) : source.resource_types;
    for (const auto& type : types) {
      auto it = by_key.find({source.name, type});
      const PullStatus* s = it == by_key.end() ? nullptr : it->second;
      // A type the server does not offer has nothing to confirm: it counts from when the server
      // said so (a not-offered outcome need not follow a BeginPull, so its start may be old).
      std::string_view complete_from = s == nullptr ? std::string_view()
                                       : s->state == PullState::kNotOffered
                                           ? std::string_view(s->finished_at)
                                           : std::string_view(s->last_complete_started);
      if (auto started = Instant(complete_from)) {
        oldest = oldest ? std::min(*oldest, *started) : *started;
      } else {
        every_type_complete_once = false;
      }
      std::string_view full_from = s == nullptr ? std::string_view()
                                   : s->state == PullState::kNotOffered
                                       ? std::string_view(s->finished_at)
                                       : std::string_view(s->last_full_complete_started);
      if (auto started = Instant(full_from)) {
        oldest_full = oldest_full ? std::min(*oldest_full, *started) : *started;
      } else {
        every_type_full_once = false;
      }
      if (s != nullptr && s->state == PullState::kComplete && needed_from) {
        auto started = Instant(s->last_complete_started);
        if (!started || *started < *needed_from) {
          out.gaps.push_back(PullGap{source.name, type, s->state, s->last_complete_started,
                                     s->last_complete_finished, "", true,
                                     fhir::FormatUtc(*needed_from)});
          continue;
        }
      }
      if (s != nullptr &&
          (s->state == PullState::kComplete || s->state == PullState::kNotOffered)) {
        continue;
      }
      PullGap gap{source.name, type, std::nullopt, "", "", "", false, ""};
      if (s != nullptr) {
        gap.state = s->state;
        gap.since = s->state == PullState::kRunning || s->failing_since.empty() ? s->started_at
                                                                                : s->failing_since;
        gap.last_complete = s->last_complete_finished;
        gap.detail = s->detail;
      }
      out.gaps.push_back(std::move(gap));
    }
  }
  if (every_type_complete_once) out.complete_since = oldest;
  if (every_type_full_once) out.full_complete_since = oldest_full;
  return out;
}

fhir::TimePoint MonthEnd(const YearMonth& month, const EngineConfig& engine) {
  date::year_month_day next =
      date::year{month.year} / date::month{month.month} / 1 + date::months{1};
  date::local_days local{next};
  if (engine.practice.time_zone != nullptr) {
    return std::chrono::time_point_cast<fhir::TimePoint::duration>(
        engine.practice.time_zone->to_sys(local, date::choose::earliest));
  }
  return std::chrono::time_point_cast<fhir::TimePoint::duration>(
      date::sys_days{local.time_since_epoch()});
}

}  // namespace ccm::gateway
