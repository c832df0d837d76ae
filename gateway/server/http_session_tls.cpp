// The TLS session (see http_server_impl.h for why it is a file of its own).
#include "gateway/server/http_server_impl.h"

namespace ccm::gateway::server {
namespace {

// "certificate:<subject CN>" of the client's verified certificate, "" when there is none.
std::string CertificatePrincipal(SSL* ssl) {
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (cert == nullptr) return "";
  char cn[256] = {0};
  int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
  X509_free(cert);
  return n > 0 ? fmt::format("certificate:{}", std::string_view(cn, static_cast<std::size_t>(n)))
               : "certificate:(no CN)";
}

}  // namespace

asio::awaitable<void> HttpServer::Impl::Secure(tcp::socket socket) {
  auto stream = std::make_shared<beast::ssl_stream<beast::tcp_stream>>(std::move(socket), *tls);
  beast::get_lowest_layer(*stream).expires_after(options.limits.read_timeout);
  auto [ec] = co_await stream->async_handshake(ssl::stream_base::server, kTuple);
  if (ec) co_return;  // not TLS, or a certificate the CA did not sign: nothing to answer
  std::string certificate =
      options.tls->client_ca_file.empty() ? "" : CertificatePrincipal(stream->native_handle());
  co_await Serve(stream, std::move(certificate));
  beast::get_lowest_layer(*stream).expires_after(std::chrono::seconds(2));
  auto [sec] = co_await stream->async_shutdown(kTuple);
  static_cast<void>(sec);  // a client that closed first is not an error (stream_truncated)
}

}  // namespace ccm::gateway::server
