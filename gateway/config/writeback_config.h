// Configuration of what `ccm-gateway bill` writes: the `writeBack` section (CarePlans and
// ChargeItems written to a FHIR server) and `billing.provider`, `billing.identifierSystem` and
// `billing.payers[]` (claim Bundles and CSV summaries). docs/configuration.md lists every key.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "fhir/json.h"
#include "fhir/result.h"
#include "gateway/config/sync_config.h"

namespace ccm::gateway {

// The practice as the billing provider on claims and ChargeItems.
struct ProviderConfig {
  std::string reference;  // "Organization/<id>" or "Practitioner/<id>" on the EHR
  std::string name;
  std::string npi;  // 10 digits, Luhn-checked; the billing NPI on claims
};

struct PayerConfig {
  std::string name;  // [A-Za-z0-9_-]+: names the channel, files and the batch identifiers
  std::string display;
  std::string identifier_system, identifier_value;  // the payer's id (e.g. a MAC's payer id)
  // The identifier system of the payer's member ids on Patient.identifier; "" = the Medicare
  // Beneficiary Identifier only. A claim without either is held.
  std::string member_id_system;
  std::filesystem::path directory;       // claim Bundles and CSV files go here
  std::optional<SourceConfig> endpoint;  // claim Bundles are POSTed here
  bool csv = true;                       // write the CSV summary (needs directory)
  // The endpoint's CapabilityStatement must declare conditionalCreate for Bundle
  // (gateway/writeback/write_capabilities.h); false: the operator vouches for it.
  bool require_conditional_create = true;
};

struct WriteBackConfig {
  bool care_plans = false;
  bool charge_items = false;
  // Where CarePlans and ChargeItems go: writeBack.target, a source name or a source-like object.
  std::optional<SourceConfig> target;
  std::string care_plan_identifier_system = "urn:ccm-gateway:care-plan";
  std::string author;     // CarePlan.author reference, optional
  std::string care_team;  // CarePlan.careTeam reference, optional
  bool provenance = false;
  std::string agent;  // Provenance.agent.who reference; display "ccm-gateway" when empty
  int max_conflict_retries = 3;
  // The target's CapabilityStatement must declare conditionalCreate for what is written
  // (gateway/writeback/write_capabilities.h); false: the operator vouches for it.
  bool require_conditional_create = true;

  std::string identifier_system = "urn:ccm-gateway";  // prefix of ChargeItem/Claim/Bundle ids
  ProviderConfig provider;
  std::vector<PayerConfig> payers;

  bool any_output() const { return charge_items || !payers.empty(); }
};

// Reads the sections from an already parsed config. `sync` resolves writeBack.target (a source
// name; default the first source). Errors name the key and what is expected.
Result<WriteBackConfig> WriteBackConfigFromJson(const fhir::json::Value& root,
                                                std::string_view origin,
                                                const std::filesystem::path& base_dir,
                                                const EnvLookup& env, const SyncConfig& sync,
                                                Credentials credentials = Credentials::kRead);
// Why `uri` cannot be the system of an identifier the gateway searches for or conditionally
// creates on (`identifier=system|value`), or "" when it can: not an absolute URI ("scheme:..."),
// or it holds a character a token search reads as syntax ('|', ',', '$' or a backslash; R4
// search.html#escaping) or whitespace.
std::string IdentifierSystemProblem(std::string_view uri);

// The write-back and billing sections of a config file, credentials read (kept for tests; the
// commands load the whole file once, with LoadGatewayConfig).
Result<WriteBackConfig> LoadWriteBackConfig(const std::filesystem::path& file, const EnvLookup& env,
                                            const SyncConfig& sync);

}  // namespace ccm::gateway
