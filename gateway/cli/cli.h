// The `ccm-gateway` command line: parses arguments and dispatches to the subcommands.
#pragma once

namespace ccm::gateway {

// Runs the command line; returns the process exit status. Catches every exception (the boundary).
int RunCli(int argc, char** argv);

}  // namespace ccm::gateway
