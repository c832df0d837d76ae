#include "gateway/cli/cli.h"

int main(int argc, char** argv) { return ccm::gateway::RunCli(argc, argv); }
