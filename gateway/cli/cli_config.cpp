// `ccm-gateway config check`: validate a config file and say what the gateway will do with it,
// without contacting anything. `ccm-gateway version`: what was built, from what.
#include <algorithm>

#include <fmt/format.h>

#include "fhir/client/http_client.h"
#include "gateway/cli/build_info.h"
#include "gateway/cli/cli_common.h"
#include "gateway/config/gateway_config.h"
#include "gateway/sync/sync.h"

namespace ccm::gateway::cli {
namespace {

std::string Join(const std::vector<std::string>& items, std::string_view separator = ", ") {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : std::string(separator)) + i;
  return out;
}

std::string Years() {
  std::vector<std::string> years;
  for (int y : BuiltInFeeScheduleYears()) years.push_back(std::to_string(y));
  return Join(years);
}

std::string Auth(const SourceConfig& s) {
  const AuthConfig& a = s.auth;
  std::vector<std::string> parts = {std::string(ToCode(a.kind))};
  if (!a.client_id.empty()) parts.push_back(fmt::format("client {}", a.client_id));
  if (a.kind == AuthKind::kSmartBackendServices) {
    parts.push_back(fmt::format("key id {}, {}", a.key_id,
                                a.algorithm == fhir::JwtAlgorithm::kEs384 ? "ES384" : "RS384"));
  }
  if (!a.secret_source.empty()) parts.push_back(fmt::format("secret from {}", a.secret_source));
  if (!a.token_url.empty()) {
    parts.push_back(fmt::format("token URL {}", fhir::RedactUrl(a.token_url)));
  } else if (a.kind == AuthKind::kSmartBackendServices) {
    parts.push_back("token URL from <baseUrl>/.well-known/smart-configuration");
  }
  if (!a.scope.empty()) parts.push_back(fmt::format("scope \"{}\"", a.scope));
  return Join(parts, "; ");
}

std::string Connection(const SourceConfig& s) {
  std::vector<std::string> parts;
  parts.push_back(fmt::format("{} connection(s)", s.max_concurrency));
  parts.push_back(fmt::format("retries up to {} attempts", s.retry.max_attempts));
  if (!s.http.tls.verify) parts.push_back("TLS NOT VERIFIED");
  if (!s.http.tls.ca_file.empty()) parts.push_back(fmt::format("CAs {}", s.http.tls.ca_file));
  if (!s.http.tls.client_cert.empty()) {
    parts.push_back(fmt::format("client certificate {}", s.http.tls.client_cert));
  }
  return Join(parts, "; ");
}

// Where the gateway writes, it first checks that the server declares conditional create.
std::string ConditionalCreate(bool required) {
  return required ? "conditional create required of the server"
                  : "conditional create NOT checked (requireConditionalCreate: false)";
}

std::string Tokens(const server::ServerConfig& s) {
  std::string inline_tokens = fmt::format("{} token hash(es) in the config", s.tokens.size());
  if (s.tokens_file.empty()) return inline_tokens;
  return fmt::format("{}, more in {} (re-read on SIGHUP)", inline_tokens, s.tokens_file.string());
}

// What `config check` prints: one line per thing the gateway will do, secrets never (only where
// they come from), URLs without their query.
std::string Describe(const GatewayConfig& c, const server::ServerConfig& server) {
  std::string out;
  auto line = [&out](std::string_view text) { out += std::string(text) + "\n"; };
  const EngineConfig& e = c.engine;
  line(fmt::format("practice: {}; billing practitioners: {} NPI(s), {} reference(s)",
                   e.practice.time_zone_name, e.practice.billing_practitioner_npis.size(),
                   e.practice.billing_practitioner_refs.size()));
  line(e.fee_schedule_configured
           ? fmt::format("fee schedule: {} ({}, {} codes)", e.fee_schedule.year,
                         e.fee_schedule.title.empty() ? "configured" : e.fee_schedule.title,
                         e.fee_schedule.rates.size())
           : fmt::format("fee schedule: the built-in one of the service month's year (built in: "
                         "{})",
                         Years()));
  line(fmt::format("state: {}", c.sync.state_path.string()));
  line(fmt::format(
      "sync: every {} s without --once; waits up to {} s for another sync or bill; trusts server "
      "clocks within {} s; --full removes at most {} % of a type",
      c.sync.interval.count(), c.sync.lock_wait.count(), c.sync.max_clock_skew.count(),
      c.sync.max_delete_percent));
  if (c.sync.sources.empty()) line("sources: none (sync and bill need one)");
  for (const SourceConfig& s : c.sync.sources) {
    line(fmt::format("source {}: {}", s.name, fhir::RedactUrl(s.base_url)));
    line(fmt::format("  auth: {}", Auth(s)));
    std::string scope = s.scope == ScopeKind::kGroup ? fmt::format("the members of {}", s.group)
                        : s.scope == ScopeKind::kPatients
                            ? fmt::format("{} patient(s)", s.patients.size())
                            : std::string("all patients");
    if (s.bulk) {
      const BulkConfig& b = *s.bulk;
      std::string where = b.level == fhir::BulkLevel::kGroup ? fmt::format("{}/$export", b.group)
                          : b.level == fhir::BulkLevel::kPatient ? std::string("Patient/$export")
                                                                 : std::string("$export");
      line(fmt::format(
          "  pulls: {} with Bulk Data {}; {} download(s) at a time; waits up to {} "
          "min for an export{}",
          Join(SourceResourceTypes(s, e)), where, b.parallel_downloads, b.max_wait.count(),
          b.type_filters.empty() ? "" : fmt::format("; {} type filter(s)", b.type_filters.size())));
    } else {
      line(fmt::format("  pulls: {}; {}; {} per page", Join(SourceResourceTypes(s, e)), scope,
                       s.page_size));
    }
    line(fmt::format("  connection: {}", Connection(s)));
  }
  const WriteBackConfig& wb = c.write_back;
  std::vector<std::string> writes;
  if (wb.care_plans) writes.emplace_back("care plans");
  if (wb.charge_items) writes.emplace_back("ChargeItems");
  if (writes.empty()) {
    line("write-back: off");
  } else {
    line(fmt::format("write-back: {} to {} ({}){}; {}", Join(writes), wb.target->name,
                     fhir::RedactUrl(wb.target->base_url), wb.provenance ? ", with Provenance" : "",
                     ConditionalCreate(wb.require_conditional_create)));
    if (std::find_if(c.sync.sources.begin(), c.sync.sources.end(), [&](const SourceConfig& s) {
          return s.name == wb.target->name;
        }) == c.sync.sources.end()) {
      line(fmt::format("  auth: {}", Auth(*wb.target)));
    }
  }
  if (!wb.provider.name.empty() || !wb.provider.npi.empty()) {
    line(fmt::format("billing provider: {} (NPI {}{})", wb.provider.name, wb.provider.npi,
                     wb.provider.reference.empty() ? "" : ", " + wb.provider.reference));
  }
  if (wb.payers.empty()) line("payers: none (bill records the ledger; no claims are made)");
  for (const PayerConfig& p : wb.payers) {
    std::vector<std::string> to;
    if (!p.directory.empty()) {
      to.push_back(
          fmt::format("claim Bundles{} to {}", p.csv ? " and CSV" : "", p.directory.string()));
    }
    if (p.endpoint) {
      to.push_back(fmt::format("claim Bundles POSTed to {} (auth {}; {})",
                               fhir::RedactUrl(p.endpoint->base_url), Auth(*p.endpoint),
                               ConditionalCreate(p.require_conditional_create)));
    }
    line(fmt::format("payer {} ({}): {}", p.name, p.display, Join(to, "; ")));
  }
  line(fmt::format("serve: listens on {}:{} ({}); {}; {} I/O and {} worker thread(s)",
                   server.address, server.port,
                   !server.tls                          ? "plain HTTP"
                   : server.tls->client_ca_file.empty() ? "TLS"
                                                        : "TLS, client certificates required",
                   Tokens(server), server.io_threads, server.worker_threads));
  const server::ServerLimits& l = server.limits;
  line(fmt::format(
      "  limits: headers {} bytes, body {} bytes; read {} ms, write {} ms, idle {} ms; "
      "{} connections; access log patient ids {}",
      l.header_bytes, l.body_bytes, l.read_timeout.count(), l.write_timeout.count(),
      l.idle_timeout.count(), l.max_connections, server.log_patient_ids ? "IN CLEAR" : "hashed"));
  line(fmt::format("  billing summaries cached until the store changes{}",
                   !((wb.care_plans || wb.charge_items) && wb.target) ? ""
                   : server.billing_summary_max_age.count() == 0
                       ? "; they read the EHR: computed for every request"
                       : fmt::format("; they read the EHR: at most {} s",
                                     server.billing_summary_max_age.count())));
  // Shares are kept in basis points (1/100 of a percent).
  const ProgramAssumptions& a = c.program;
  line(fmt::format(
      "program ($ccm-program projection): {}.{:02} % of patients qualify, {}.{:02} % of those "
      "enrol, {} USD net per patient-month",
      a.qualify_bp / 100, a.qualify_bp % 100, a.enrol_bp / 100, a.enrol_bp % 100,
      FormatCents(a.net_per_patient_month)));
  line(fmt::format(
      "  the care team's page at / (sessions of {} min after sign-in{})",
      server.session_lifetime.count(),
      server.tls ? ", cookie Secure" : "; plain HTTP: put TLS in front beyond loopback"));
  line(fmt::format(
      "logging: server diagnostics {}",
      c.logging.server_diagnostics ? "copied into messages (may hold patient data)" : "withheld"));
  return out;
}

class ConfigCheckCommand : public Command {
 public:
  ConfigCheckCommand()
      : Command(
            "config check", "--config FILE",
            "Validate every section of a config file -- the secrets and TLS files it names "
            "included -- and print what the gateway will do with it: sources, resource types, "
            "auth kinds, state file, outputs, the service (server section, its tokens file read). "
            "Contacts nothing. Exit 0 when valid, 2 "
            "otherwise (the error names the key).",
            "ccm-gateway config check --config site.json") {
    AddRequired("--config", config_, "The config file to check")->type_name("FILE");
  }

  int Run(Console& console) override {
    auto config = LoadGatewayConfig(config_);
    if (!config) {
      console.Error(config.error().message);
      return config.error().is(Errc::kInternal) ? kExitFatal : kExitUsage;
    }
    auto server = LoadServerSection(config_);
    if (!server) {
      console.Error(server.error().message);
      return kExitUsage;
    }
    fmt::print("{}: valid (nothing was contacted)\n{}", config_, Describe(*config, *server));
    return kExitOk;
  }

 private:
  std::string config_;
};

class VersionCommand : public Command {
 public:
  VersionCommand()
      : Command("version", "",
                "Print the version, the git commit and build type it was built from, and the "
                "fee-schedule years built in.",
                "ccm-gateway version") {}

  int Run(Console&) override {
    fmt::print("ccm-gateway {}\ncommit: {}\nbuild: {}\nfee schedules built in: {}\n",
               BuildVersion(), BuildCommit(), BuildType(), Years());
    return kExitOk;
  }
};

}  // namespace

std::unique_ptr<Command> MakeConfigCheckCommand() { return std::make_unique<ConfigCheckCommand>(); }
std::unique_ptr<Command> MakeVersionCommand() { return std::make_unique<VersionCommand>(); }

}  // namespace ccm::gateway::cli
