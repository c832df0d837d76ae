#include "gateway/server/http_server.h"

#include "gateway/server/http_server_impl.h"

namespace ccm::gateway::server {

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { Stop(std::chrono::milliseconds(0)); }

std::uint16_t HttpServer::port() const noexcept { return impl_->port; }

std::size_t HttpServer::connections() const noexcept { return impl_->active.load(); }

void HttpServer::SetTokens(std::shared_ptr<const TokenAuth> tokens) {
  std::lock_guard lock(impl_->tokens_m);
  impl_->options.tokens = std::move(tokens);
}

Result<std::unique_ptr<HttpServer>> HttpServer::Start(HttpServerOptions options,
                                                      const Router& router) {
  auto impl = std::make_unique<Impl>(std::move(options), router);
  Impl& s = *impl;
  if (s.options.tls) {
    s.tls.emplace(ssl::context::tls_server);
    error_code ec;
    s.tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                           ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                           ssl::context::no_tlsv1_1,
                       ec);
    s.tls->use_certificate_chain_file(s.options.tls->cert_file, ec);
    if (!ec) s.tls->use_private_key_file(s.options.tls->key_file, ssl::context::pem, ec);
    if (ec) {
      return MakeError(Errc::kInvalidArgument, fmt::format("server.tls: cannot use {} with {}: {}",
                                                           s.options.tls->cert_file,
                                                           s.options.tls->key_file, ec.message()));
    }
    if (!s.options.tls->client_ca_file.empty()) {
      s.tls->load_verify_file(s.options.tls->client_ca_file, ec);
      if (ec) {
        return MakeError(Errc::kInvalidArgument,
                         fmt::format("server.tls.clientCaFile: cannot use {}: {}",
                                     s.options.tls->client_ca_file, ec.message()));
      }
      s.tls->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
    }
  }
  error_code ec;
  auto address = asio::ip::make_address(s.options.address, ec);
  if (ec) {
    return MakeError(Errc::kInvalidArgument,
                     fmt::format("server.address: \"{}\" is not an IP address", s.options.address));
  }
  tcp::endpoint endpoint(address, s.options.port);
  s.acceptor.open(endpoint.protocol(), ec);
  if (!ec) s.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) s.acceptor.bind(endpoint, ec);
  if (!ec) s.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return MakeError(Errc::kIo, fmt::format("cannot listen on {}:{}: {}", s.options.address,
                                            s.options.port, ec.message()));
  }
  s.port = s.acceptor.local_endpoint().port();
  asio::co_spawn(s.ioc, s.Accept(), asio::detached);
  for (unsigned i = 0; i < std::max(1u, s.options.io_threads); ++i) {
    s.io_threads.emplace_back([&s] { s.ioc.run(); });
  }
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

void HttpServer::Stop(std::chrono::milliseconds grace) {
  Impl& s = *impl_;
  if (s.stopped) return;
  s.stopped = true;
  s.stopping = true;
  asio::post(s.ioc, [&s] {
    error_code ignored;
    s.acceptor.close(ignored);
  });
  {
    std::lock_guard lock(s.idle_m);
    for (auto& [id, close] : s.idle) close();
  }
  {
    std::unique_lock lock(s.m);
    s.cv.wait_for(lock, grace, [&s] { return s.active.load() == 0; });
  }
  s.ioc.stop();
  for (auto& t : s.io_threads) {
    if (t.joinable()) t.join();
  }
  s.workers.join();
}

}  // namespace ccm::gateway::server
