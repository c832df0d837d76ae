// Test certificates made with the openssl tool: a CA, a server certificate for 127.0.0.1 and a
// client certificate (CN "ccm-gateway") it signed, plus a second CA with a client certificate it
// signed (for "a certificate from another CA").
#pragma once

#include <cstdlib>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "test_util.h"

namespace ccm::testing {

// Writes ca.pem/ca.key, server.pem/server.key, client.pem/client.key, other-ca.pem and
// other-client.pem/other-client.key into `dir`.
inline void MakeCertificates(const TempDir& dir) {
  std::string d = dir.path().string();
  std::string script = fmt::format(R"(set -e; cd {}
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=ccm test CA"
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=127.0.0.1"
    printf "subjectAltName=IP:127.0.0.1\n" > ext.cnf
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext.cnf
    openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj "/CN=ccm-gateway"
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2
    openssl req -x509 -newkey rsa:2048 -nodes -keyout other-ca.key -out other-ca.pem -days 2 -subj "/CN=other CA"
    openssl req -newkey rsa:2048 -nodes -keyout other-client.key -out other-client.csr -subj "/CN=intruder"
    openssl x509 -req -in other-client.csr -CA other-ca.pem -CAkey other-ca.key -CAcreateserial -out other-client.pem -days 2
  )",
                                   d);
  ASSERT_EQ(std::system(("(" + script + ") >/dev/null 2>&1").c_str()), 0) << "openssl failed";
}

}  // namespace ccm::testing
