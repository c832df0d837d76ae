#include "gateway/bill_checks.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include "fhir/http_client.h"
#include "gateway/sync.h"

namespace ccm::gateway {
namespace {

std::optional<fhir::TimePoint> Instant(std::string_view text) {
  if (text.empty()) return std::nullopt;
  auto t = fhir::FhirDateTime::ParseInstant(text);
  if (!t) return std::nullopt;
  return t->Earliest();
}

// Whether a search's first page shows at least one match (by its total, or an entry).
bool AnyMatch(const fhir::json::Value& bundle) {
  if (bundle["total"].is_number() && bundle["total"].number_text() != "0") return true;
  return bundle["entry"].size() > 0;
}

}  // namespace

std::string Describe(const PullGap& g) {
  std::string what;
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
                               const EngineConfig& engine) {
  std::map<std::pair<std::string, std::string>, const PullStatus*> by_key;
  for (const auto& s : statuses) by_key[{s.source, s.type}] = &s;
  Completeness out;
  bool every_type_complete_once = true;
  std::optional<fhir::TimePoint> oldest;
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
      if (s != nullptr &&
          (s->state == PullState::kComplete || s->state == PullState::kNotOffered)) {
        continue;
      }
      PullGap gap{source.name, type, std::nullopt, "", "", ""};
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
  return out;
}

Result<std::vector<std::string>> FindPriorBilling(const WriteBackConfig& config,
                                                  fhir::FhirClient* ehr) {
  std::vector<std::string> found;
  for (const PayerConfig& payer : config.payers) {
    if (payer.directory.empty()) continue;
    std::error_code ec;
    std::vector<std::string> files;
    for (std::filesystem::directory_iterator it(payer.directory, ec), end; !ec && it != end;
         it.increment(ec)) {
      std::string name = it->path().filename().string();
      if (name.starts_with("claims-") && name.ends_with(".json")) files.push_back(name);
    }
    if (ec && ec != std::errc::no_such_file_or_directory) {
      return MakeError(Errc::kIo, fmt::format("cannot list the claims directory {}: {}",
                                              payer.directory.string(), ec.message()));
    }
    if (files.empty()) continue;
    std::sort(files.begin(), files.end());
    found.push_back(fmt::format("{} claim file(s) in {} (e.g. {})", files.size(),
                                payer.directory.string(), files.front()));
  }
  // "system|" matches every identifier of the system (R4 search.html#token); one match is enough.
  auto search = [](fhir::FhirClient& client, std::string_view type,
                   const std::string& system) -> Result<bool> {
    CCM_TRY_ASSIGN(auto page,
                   client.SearchFirstPage(type, {{"identifier", system + "|"}, {"_count", "1"}}));
    return AnyMatch(page);
  };
  if (config.charge_items && ehr != nullptr) {
    std::string system = config.identifier_system + ":charge-item";
    auto any = search(*ehr, "ChargeItem", system);
    if (!any) {
      return Error(any.error().code,
                   fmt::format("cannot check the write-back target for ChargeItems already "
                               "written: {}",
                               any.error().message));
    }
    if (*any) {
      found.push_back(fmt::format("ChargeItems with identifier system {} on {}", system,
                                  fhir::RedactUrl(ehr->base_url())));
    }
  }
  for (const PayerConfig& payer : config.payers) {
    if (!payer.endpoint) continue;
    auto client = MakeFhirClient(*payer.endpoint, "billing");
    if (!client) return client.error();
    std::string system = config.identifier_system + ":claim-batch";
    auto any = search(**client, "Bundle", system);
    if (!any) {
      return Error(any.error().code,
                   fmt::format("cannot check payer {}'s endpoint for claim Bundles already "
                               "sent: {}",
                               payer.name, any.error().message));
    }
    if (*any) {
      found.push_back(fmt::format("claim Bundles with identifier system {} at payer {} ({})",
                                  system, payer.name, fhir::RedactUrl(payer.endpoint->base_url)));
    }
  }
  return found;
}

}  // namespace ccm::gateway
