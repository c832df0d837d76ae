// `ccm-gateway serve`: the HTTP service (docs/api.md) over the same workflows as the commands,
// with the scheduled sync (gateway/server/serve.h).
#include <fmt/format.h>

#include "gateway/base/config_keys.h"
#include "gateway/cli/build_info.h"
#include "gateway/cli/cli_common.h"
#include "gateway/config/gateway_config.h"
#include "gateway/server/serve.h"
#include "gateway/server/server_config.h"

namespace ccm::gateway::cli {
namespace {

class ServeCommand : public Command {
 public:
  ServeCommand()
      : Command("serve", "--config FILE",
                "Run the HTTP service (docs/api.md): the CCM status of a patient, the billing "
                "summary of a month, syncs on request and every sync.intervalSeconds (when set), "
                "health, readiness and Prometheus metrics. Listens on server.address:server.port "
                "(server.* in docs/configuration.md); every route but /healthz, /readyz and "
                "/metadata needs a bearer token of server.tokens.\nSIGTERM/SIGINT stop it "
                "gracefully (exit 0); SIGHUP re-reads the tokens. Logs JSON lines on stderr, one "
                "per request (no patient data).",
                "ccm-gateway serve --config site.json") {
    AddRequired("--config", config_, "The gateway's config (server, sources, state, sync)")
        ->type_name("FILE");
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
    server::ServeOptions options;
    options.version = std::string(BuildVersion());
    options.commit = std::string(BuildCommit());
    Status s = server::Serve(*config, *server, options);
    if (!s) {
      console.Error(s.error().message);
      return s.error().is(Errc::kInvalidArgument) ? kExitUsage : kExitFatal;
    }
    return kExitOk;
  }

 private:
  std::string config_;
};

}  // namespace

std::unique_ptr<Command> MakeServeCommand() { return std::make_unique<ServeCommand>(); }

}  // namespace ccm::gateway::cli
