// The plain-HTTP session (see http_server_impl.h for why it is a file of its own).
#include "gateway/server/http_server_impl.h"

namespace ccm::gateway::server {

asio::awaitable<void> HttpServer::Impl::Plain(tcp::socket socket) {
  auto stream = std::make_shared<beast::tcp_stream>(std::move(socket));
  co_await Serve(stream, "");
}

}  // namespace ccm::gateway::server
