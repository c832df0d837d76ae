#include "gateway/config/writeback_config.h"

#include <fmt/format.h>

#include <set>

#include "gateway/base/config_keys.h"

namespace ccm::gateway {
namespace {

using fhir::json::Value;
using namespace config;  // NOLINT(google-build-using-namespace): the key readers

// NPI check digit: Luhn over "80840" + the first nine digits (CMS, "Requirements for NPI check
// digit", 2004: the card issuer prefix 80840 is part of the computation).
bool ValidNpi(std::string_view npi) {
  if (npi.size() != 10) return false;
  for (char c : npi) {
    if (c < '0' || c > '9') return false;
  }
  std::string digits = fmt::format("80840{}", npi.substr(0, 9));
  int sum = 0;
  bool twice = true;  // the rightmost digit of the payload is doubled
  for (auto it = digits.rbegin(); it != digits.rend(); ++it) {
    int d = *it - '0';
    if (twice) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    twice = !twice;
  }
  return (10 - sum % 10) % 10 == npi[9] - '0';
}

bool ValidName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

// A literal reference "Type/id" to one of `types`.
Result<std::optional<std::string>> ReferenceKey(const Value& parent, std::string_view key,
                                                std::string_view origin, std::string_view path,
                                                std::initializer_list<std::string_view> types) {
  CCM_TRY_ASSIGN(auto v, StringKey(parent, key, origin, path));
  if (!v) return v;
  auto slash = v->find('/');
  bool ok = slash != std::string::npos && slash + 1 < v->size() &&
            v->find('/', slash + 1) == std::string::npos;
  if (ok) {
    std::string_view type = std::string_view(*v).substr(0, slash);
    ok = false;
    for (auto t : types) ok = ok || t == type;
  }
  if (!ok) {
    std::string expected;
    for (auto t : types)
      expected += fmt::format("{}\"{}/<id>\"", expected.empty() ? "" : " or ", t);
    return ConfigError(origin, Join(path, key), fmt::format("\"{}\": expected {}", *v, expected));
  }
  return v;
}

// A key holding the system of identifiers the gateway searches for (see IdentifierSystemProblem).
Result<std::optional<std::string>> IdentifierSystemKey(const Value& parent, std::string_view key,
                                                       std::string_view origin,
                                                       std::string_view path) {
  CCM_TRY_ASSIGN(auto v, StringKey(parent, key, origin, path));
  if (!v) return v;
  if (std::string problem = IdentifierSystemProblem(*v); !problem.empty()) {
    return ConfigError(origin, Join(path, key),
                       fmt::format("\"{}\" {}; use an absolute URI without '|', ',', '$', '\\' "
                                   "or spaces, such as \"https://clinic.example/fhir/ccm\"",
                                   *v, problem));
  }
  return v;
}

Result<PayerConfig> ParsePayer(const Value& p, std::string_view origin, const std::string& path,
                               const std::filesystem::path& base, const EnvLookup& env,
                               Credentials credentials) {
  if (!p.is_object()) return ConfigError(origin, path, "expected an object");
  CCM_TRY(CheckKeys(p, origin, path,
                    {"name", "display", "identifierSystem", "identifierValue", "memberIdSystem",
                     "directory", "endpoint", "csv", "requireConditionalCreate"}));
  PayerConfig out;
  CCM_TRY_ASSIGN(auto name, StringKey(p, "name", origin, path));
  if (!name || !ValidName(*name)) {
    return ConfigError(origin, Join(path, "name"),
                       "required: a short unique name of letters, digits, '-' and '_' (it names "
                       "the output files)");
  }
  out.name = *name;
  CCM_TRY_ASSIGN(auto display, StringKey(p, "display", origin, path));
  out.display = display.value_or(out.name);
  CCM_TRY_ASSIGN(auto sys, IdentifierSystemKey(p, "identifierSystem", origin, path));
  CCM_TRY_ASSIGN(auto val, StringKey(p, "identifierValue", origin, path));
  if (sys.has_value() != val.has_value()) {
    return ConfigError(origin, Join(path, sys ? "identifierValue" : "identifierSystem"),
                       "identifierSystem and identifierValue go together");
  }
  out.identifier_system = sys.value_or("");
  out.identifier_value = val.value_or("");
  CCM_TRY_ASSIGN(auto member, IdentifierSystemKey(p, "memberIdSystem", origin, path));
  out.member_id_system = member.value_or("");
  CCM_TRY_ASSIGN(auto dir, StringKey(p, "directory", origin, path));
  if (dir) out.directory = Resolve(base, *dir);
  CCM_TRY_ASSIGN(const Value* ep, Section(p, "endpoint", origin, path));
  if (ep != nullptr) {
    Value named = *ep;
    if (named.find("name") == nullptr) named.set("name", Value::String(out.name));
    CCM_TRY_ASSIGN(out.endpoint, SourceConfigFromJson(named, origin, Join(path, "endpoint"), base,
                                                      env, credentials));
  }
  CCM_TRY_ASSIGN(auto csv, BoolKey(p, "csv", origin, path));
  out.csv = csv.value_or(true);
  CCM_TRY_ASSIGN(auto conditional, BoolKey(p, "requireConditionalCreate", origin, path));
  out.require_conditional_create = conditional.value_or(true);
  if (out.directory.empty() && !out.endpoint) {
    return ConfigError(origin, path,
                       "a payer needs a directory (claim Bundles and CSV are written there), an "
                       "endpoint (claim Bundles are POSTed there), or both");
  }
  if (out.directory.empty() && csv.value_or(false)) {
    return ConfigError(origin, Join(path, "csv"), "the CSV summary needs a directory");
  }
  return out;
}

}  // namespace

Result<WriteBackConfig> WriteBackConfigFromJson(const Value& root, std::string_view origin,
                                                const std::filesystem::path& base_dir,
                                                const EnvLookup& env, const SyncConfig& sync,
                                                Credentials credentials) {
  WriteBackConfig out;
  CCM_TRY_ASSIGN(LoggingConfig logging, LoggingFromJson(root, origin));
  CCM_TRY_ASSIGN(const Value* w, Section(root, "writeBack", origin, ""));
  if (w != nullptr) {
    const std::string p = "writeBack";
    CCM_TRY(CheckKeys(*w, origin, p,
                      {"carePlans", "chargeItems", "target", "carePlanIdentifierSystem", "author",
                       "careTeam", "provenance", "provenanceAgent", "maxConflictRetries",
                       "requireConditionalCreate"}));
    CCM_TRY_ASSIGN(auto cp, BoolKey(*w, "carePlans", origin, p));
    out.care_plans = cp.value_or(false);
    CCM_TRY_ASSIGN(auto ci, BoolKey(*w, "chargeItems", origin, p));
    out.charge_items = ci.value_or(false);
    CCM_TRY_ASSIGN(auto sys, IdentifierSystemKey(*w, "carePlanIdentifierSystem", origin, p));
    if (sys) out.care_plan_identifier_system = *sys;
    CCM_TRY_ASSIGN(auto author, ReferenceKey(*w, "author", origin, p,
                                             {"Practitioner", "PractitionerRole", "Organization",
                                              "CareTeam", "Device", "RelatedPerson", "Patient"}));
    out.author = author.value_or("");
    CCM_TRY_ASSIGN(auto team, ReferenceKey(*w, "careTeam", origin, p, {"CareTeam"}));
    out.care_team = team.value_or("");
    CCM_TRY_ASSIGN(auto prov, BoolKey(*w, "provenance", origin, p));
    out.provenance = prov.value_or(false);
    CCM_TRY_ASSIGN(auto agent, ReferenceKey(*w, "provenanceAgent", origin, p,
                                            {"Device", "Organization", "Practitioner"}));
    out.agent = agent.value_or("");
    CCM_TRY_ASSIGN(auto retries, IntKey(*w, "maxConflictRetries", origin, p, 0, 20));
    if (retries) out.max_conflict_retries = static_cast<int>(*retries);
    CCM_TRY_ASSIGN(auto conditional, BoolKey(*w, "requireConditionalCreate", origin, p));
    out.require_conditional_create = conditional.value_or(true);
    if (const Value* t = w->find("target"); t != nullptr && t->is_object()) {
      // A FHIR endpoint written to but not synced from (e.g. a billing server): a source-like
      // object with its own baseUrl, auth, TLS, timeouts and retries.
      Value named = *t;
      if (named.find("name") == nullptr) named.set("name", Value::String("write-back-target"));
      CCM_TRY_ASSIGN(out.target, SourceConfigFromJson(named, origin, Join(p, "target"), base_dir,
                                                      env, credentials));
      out.target->server_diagnostics = logging.server_diagnostics;
    } else {
      CCM_TRY_ASSIGN(auto target, StringKey(*w, "target", origin, p));
      if (target) {
        for (const auto& s : sync.sources) {
          if (s.name == *target) out.target = s;
        }
        if (!out.target) {
          return ConfigError(origin, Join(p, "target"),
                             fmt::format("\"{}\" is not the name of a configured source (or "
                                         "give an object with baseUrl, auth, ...)",
                                         *target));
        }
      } else if (!sync.sources.empty()) {
        out.target = sync.sources.front();
      }
    }
    if ((out.care_plans || out.charge_items) && !out.target) {
      return ConfigError(origin, p,
                         "carePlans and chargeItems write to a FHIR server: configure a source "
                         "(sources[]) or set writeBack.target");
    }
  }

  CCM_TRY_ASSIGN(const Value* b, Section(root, "billing", origin, ""));
  if (b != nullptr) {
    const std::string p = "billing";
    CCM_TRY_ASSIGN(auto sys, IdentifierSystemKey(*b, "identifierSystem", origin, p));
    if (sys) out.identifier_system = *sys;
    CCM_TRY_ASSIGN(const Value* prov, Section(*b, "provider", origin, p));
    if (prov != nullptr) {
      const std::string pp = "billing.provider";
      CCM_TRY(CheckKeys(*prov, origin, pp, {"reference", "name", "npi"}));
      CCM_TRY_ASSIGN(
          auto ref, ReferenceKey(*prov, "reference", origin, pp, {"Organization", "Practitioner"}));
      CCM_TRY_ASSIGN(auto name, StringKey(*prov, "name", origin, pp));
      CCM_TRY_ASSIGN(auto npi, StringKey(*prov, "npi", origin, pp));
      if (npi && !ValidNpi(*npi)) {
        return ConfigError(origin, Join(pp, "npi"),
                           fmt::format("\"{}\" is not a valid NPI (10 digits with a Luhn check "
                                       "digit over the 80840 prefix)",
                                       *npi));
      }
      out.provider = ProviderConfig{ref.value_or(""), name.value_or(""), npi.value_or("")};
    }
    if (const Value* payers = b->find("payers")) {
      if (!payers->is_array()) return ConfigError(origin, "billing.payers", "expected an array");
      std::set<std::string> names;
      for (std::size_t i = 0; i < payers->size(); ++i) {
        std::string path = fmt::format("billing.payers[{}]", i);
        CCM_TRY_ASSIGN(PayerConfig payer,
                       ParsePayer((*payers)[i], origin, path, base_dir, env, credentials));
        if (payer.endpoint) payer.endpoint->server_diagnostics = logging.server_diagnostics;
        if (!names.insert(payer.name).second) {
          return ConfigError(
              origin, Join(path, "name"),
              fmt::format("\"{}\" is used twice; payer names must be unique", payer.name));
        }
        out.payers.push_back(std::move(payer));
      }
    }
  }
  if (!out.payers.empty() && (out.provider.npi.empty() || out.provider.name.empty())) {
    return ConfigError(origin, "billing.provider",
                       "claims need the billing provider: set billing.provider.name and "
                       "billing.provider.npi");
  }
  return out;
}

std::string IdentifierSystemProblem(std::string_view uri) {
  // RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), then ':'.
  auto colon = uri.find(':');
  bool scheme = colon != std::string_view::npos && colon > 0 && colon + 1 < uri.size() &&
                ((uri[0] >= 'a' && uri[0] <= 'z') || (uri[0] >= 'A' && uri[0] <= 'Z'));
  for (std::size_t i = 1; scheme && i < colon; ++i) {
    char c = uri[i];
    scheme = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '+' || c == '-' || c == '.';
  }
  if (!scheme) return "is not an absolute URI (expected a scheme such as https: or urn:)";
  for (unsigned char c : uri) {
    // R4 search.html#escaping: '|' separates system and value, ',' alternatives, '$' composite
    // parts, a backslash escapes them; a server may also split on whitespace or drop it.
    if (c == '|' || c == ',' || c == '$' || c == '\\') {
      return fmt::format(
          "contains '{}', which a FHIR token search (identifier=system|value) reads "
          "as syntax",
          static_cast<char>(c));
    }
    if (c <= ' ' || c == 0x7f) {
      return "contains whitespace or a control character, which a FHIR token search "
             "(identifier=system|value) cannot carry";
    }
  }
  return "";
}

Result<WriteBackConfig> LoadWriteBackConfig(const std::filesystem::path& file, const EnvLookup& env,
                                            const SyncConfig& sync) {
  CCM_TRY_ASSIGN(Value v, ReadJsonFile(file, "config"));
  return WriteBackConfigFromJson(v, file.string(), file.parent_path(), env, sync);
}

}  // namespace ccm::gateway
