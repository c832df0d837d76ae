#include "gateway/writeback/prior_billing.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "fhir/client/http_client.h"
#include "gateway/sync/connection.h"
#include "gateway/writeback/billing_outputs.h"

namespace ccm::gateway {
namespace {

// Whether a search's first page shows at least one match (by its total, or an entry).
bool AnyMatch(const fhir::json::Value& bundle) {
  if (bundle["total"].is_number() && bundle["total"].number_text() != "0") return true;
  return bundle["entry"].size() > 0;
}

}  // namespace

Result<std::vector<std::string>> ClaimFilesUnknownToTheLedger(const WriteBackConfig& config,
                                                              LedgerStore& store) {
  std::vector<std::string> unknown;
  for (const PayerConfig& payer : config.payers) {
    if (payer.directory.empty()) continue;
    CCM_TRY_ASSIGN(auto batches, store.DeliveryBatches(PayerChannel(payer)));
    // Nothing ever queued for the payer: a new ledger, which FindPriorBilling checks.
    if (batches.empty()) continue;
    std::set<std::string, std::less<>> known(batches.begin(), batches.end());
    // Files are named claims-<payer>-<batch>.json (billing_outputs.cpp Send).
    const std::string prefix = fmt::format("claims-{}-", payer.name);
    std::error_code ec;
    std::vector<std::string> files;
    for (std::filesystem::directory_iterator it(payer.directory, ec), end; !ec && it != end;
         it.increment(ec)) {
      std::string name = it->path().filename().string();
      if (!name.starts_with(prefix) || !name.ends_with(".json")) continue;
      std::string batch = name.substr(prefix.size(), name.size() - prefix.size() - 5);
      if (!known.contains(batch)) files.push_back(name);
    }
    if (ec && ec != std::errc::no_such_file_or_directory) {
      return MakeError(Errc::kIo, fmt::format("cannot list the claims directory {}: {}",
                                              payer.directory.string(), ec.message()));
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      unknown.push_back(fmt::format("{} in {}", f, payer.directory.string()));
    }
  }
  return unknown;
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
