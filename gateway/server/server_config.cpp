#include "gateway/server/server_config.h"

#include <fmt/format.h>

#include <filesystem>

#include "gateway/base/config_keys.h"

namespace ccm::gateway::server {
namespace {

using fhir::json::Value;
using namespace config;  // NOLINT(google-build-using-namespace): the key readers

// A list of {"sha256", "name"} objects at `path`.
Result<std::vector<TokenAuth::Entry>> TokenList(const Value& list, std::string_view origin,
                                                const std::string& path) {
  if (!list.is_array()) {
    return ConfigError(origin, path,
                       "expected a list of {\"sha256\": \"<hex>\", \"name\": \"...\"}");
  }
  std::vector<TokenAuth::Entry> out;
  for (std::size_t i = 0; i < list.size(); ++i) {
    std::string p = fmt::format("{}[{}]", path, i);
    const Value& t = list[i];
    if (!t.is_object()) return ConfigError(origin, p, "expected an object");
    if (t.find("token") != nullptr) {
      return ConfigError(origin, Join(p, "token"),
                         "tokens are never written in the config: give the hex SHA-256 of the "
                         "token as \"sha256\" (printf %s \"$TOKEN\" | sha256sum)");
    }
    CCM_TRY(CheckKeys(t, origin, p, {"sha256", "name"}));
    CCM_TRY_ASSIGN(auto sha, StringKey(t, "sha256", origin, p));
    CCM_TRY_ASSIGN(auto name, StringKey(t, "name", origin, p));
    if (!sha) return ConfigError(origin, Join(p, "sha256"), "required: the token's SHA-256 in hex");
    if (!name) return ConfigError(origin, Join(p, "name"), "required: who uses this token");
    out.push_back({*sha, *name});
  }
  return out;
}

}  // namespace

Result<ServerConfig> ServerConfigFromJson(const Value* s, std::string_view origin,
                                          const std::filesystem::path& base_dir) {
  ServerConfig c;
  if (s == nullptr) return c;
  const std::string p = "server";
  if (s->find("token") != nullptr || s->find("tokenFile") != nullptr) {
    return ConfigError(origin, Join(p, "token"),
                       "tokens are never written in the config: list their SHA-256 hashes in "
                       "server.tokens, or in a file named by server.tokensFile");
  }
  CCM_TRY(CheckKeys(*s, origin, p,
                    {"address", "port", "ioThreads", "workerThreads", "tls", "tokens", "tokensFile",
                     "limits", "logPatientIds", "sessionMinutes", "billingSummaryMaxAgeSeconds"}));
  CCM_TRY_ASSIGN(auto address, StringKey(*s, "address", origin, p));
  if (address) c.address = *address;
  CCM_TRY_ASSIGN(auto port, IntKey(*s, "port", origin, p, 0, 65535));
  if (port) c.port = static_cast<std::uint16_t>(*port);
  CCM_TRY_ASSIGN(auto io, IntKey(*s, "ioThreads", origin, p, 1, 64));
  if (io) c.io_threads = static_cast<unsigned>(*io);
  CCM_TRY_ASSIGN(auto workers, IntKey(*s, "workerThreads", origin, p, 1, 256));
  if (workers) c.worker_threads = static_cast<unsigned>(*workers);
  CCM_TRY_ASSIGN(auto log_ids, BoolKey(*s, "logPatientIds", origin, p));
  c.log_patient_ids = log_ids.value_or(false);
  // At most a day: a session outliving a shift is a session left open on a shared workstation.
  CCM_TRY_ASSIGN(auto session, IntKey(*s, "sessionMinutes", origin, p, 1, 1440));
  if (session) c.session_lifetime = std::chrono::minutes(*session);
  CCM_TRY_ASSIGN(auto summary_age, IntKey(*s, "billingSummaryMaxAgeSeconds", origin, p, 0, 86400));
  if (summary_age) c.billing_summary_max_age = std::chrono::seconds(*summary_age);

  CCM_TRY_ASSIGN(const Value* tls, Section(*s, "tls", origin, p));
  if (tls != nullptr) {
    std::string tp = Join(p, "tls");
    CCM_TRY(CheckKeys(*tls, origin, tp, {"certFile", "keyFile", "clientCaFile"}));
    TlsFiles files;
    for (auto [key, target, required] :
         {std::tuple{"certFile", &files.cert_file, true},
          std::tuple{"keyFile", &files.key_file, true},
          std::tuple{"clientCaFile", &files.client_ca_file, false}}) {
      CCM_TRY_ASSIGN(auto f, StringKey(*tls, key, origin, tp));
      if (!f) {
        if (required) return ConfigError(origin, Join(tp, key), "required with server.tls");
        continue;
      }
      std::filesystem::path path = Resolve(base_dir, *f);
      std::error_code ec;
      if (!std::filesystem::is_regular_file(path, ec)) {
        return ConfigError(origin, Join(tp, key), fmt::format("{}: no such file", path.string()));
      }
      *target = path.string();
    }
    c.tls = std::move(files);
  }

  if (const Value* tokens = s->find("tokens")) {
    CCM_TRY_ASSIGN(c.tokens, TokenList(*tokens, origin, Join(p, "tokens")));
  }
  CCM_TRY_ASSIGN(auto tokens_file, StringKey(*s, "tokensFile", origin, p));
  if (tokens_file) c.tokens_file = Resolve(base_dir, *tokens_file);

  CCM_TRY_ASSIGN(const Value* limits, Section(*s, "limits", origin, p));
  if (limits != nullptr) {
    std::string lp = Join(p, "limits");
    CCM_TRY(CheckKeys(*limits, origin, lp,
                      {"headerBytes", "bodyBytes", "readTimeoutMs", "writeTimeoutMs",
                       "idleTimeoutSeconds", "maxConnections"}));
    CCM_TRY_ASSIGN(auto header, IntKey(*limits, "headerBytes", origin, lp, 1024, 1 << 20));
    if (header) c.limits.header_bytes = static_cast<std::size_t>(*header);
    CCM_TRY_ASSIGN(auto body, IntKey(*limits, "bodyBytes", origin, lp, 0, 1LL << 30));
    if (body) c.limits.body_bytes = static_cast<std::size_t>(*body);
    CCM_TRY_ASSIGN(auto read, IntKey(*limits, "readTimeoutMs", origin, lp, 100, 600'000));
    if (read) c.limits.read_timeout = std::chrono::milliseconds(*read);
    CCM_TRY_ASSIGN(auto write, IntKey(*limits, "writeTimeoutMs", origin, lp, 100, 600'000));
    if (write) c.limits.write_timeout = std::chrono::milliseconds(*write);
    CCM_TRY_ASSIGN(auto idle, IntKey(*limits, "idleTimeoutSeconds", origin, lp, 1, 3600));
    if (idle) c.limits.idle_timeout = std::chrono::seconds(*idle);
    CCM_TRY_ASSIGN(auto conns, IntKey(*limits, "maxConnections", origin, lp, 1, 100'000));
    if (conns) c.limits.max_connections = static_cast<std::size_t>(*conns);
  }
  return c;
}

Result<std::shared_ptr<const TokenAuth>> LoadTokens(const ServerConfig& config) {
  std::vector<TokenAuth::Entry> entries = config.tokens;
  if (!config.tokens_file.empty()) {
    std::string origin = config.tokens_file.string();
    // The file is an object with a "tokens" list, like the config's own key.
    CCM_TRY_ASSIGN(Value file, ReadJsonFile(config.tokens_file, "server.tokensFile"));
    const Value* tokens = file.find("tokens");
    if (tokens == nullptr) {
      return ConfigError(origin, "tokens",
                         "expected a list of {\"sha256\": \"<hex>\", \"name\": \"...\"}");
    }
    CCM_TRY_ASSIGN(auto more, TokenList(*tokens, origin, "tokens"));
    entries.insert(entries.end(), more.begin(), more.end());
  }
  CCM_TRY_ASSIGN(TokenAuth auth, TokenAuth::Make(entries));
  return std::shared_ptr<const TokenAuth>(std::make_shared<TokenAuth>(std::move(auth)));
}

}  // namespace ccm::gateway::server
