#include "gateway/cli.h"

#include <cstdio>

namespace ccm::gateway {

int RunCli(int, char**) {
  std::fputs("usage: ccm-gateway <command> [options]\n", stderr);
  return 2;
}

}  // namespace ccm::gateway
