/* The network layer: one libevent loop per worker thread, each with its own
 * SO_REUSEPORT listener; accepted sockets become TLS connections that speak
 * HTTP/2 or HTTP/1.1 by ALPN. Owns every file descriptor. */
#ifndef GW_NET_SERVER_H
#define GW_NET_SERVER_H

#include "conf/conf.h"

#include "http/req.h"

/* What the server serves: a request handler (which may answer later through
 * gw_reply_post) and what SIGHUP does (NULL: logged as unsupported). */
struct gw_app {
  void (*handle)(struct gw_req *req, struct gw_resp *resp);
  void (*reload)(void);
};

/* Runs the server described by |conf| (borrowed) until SIGTERM or SIGINT,
 * then stops accepting, lets in-flight requests finish within
 * limits.shutdown_timeout_ms and returns. Returns 0 after a clean stop, or a
 * GW_ERR_* when start-up failed (the reason has been logged). */
int gw_server_run(const struct gw_conf *conf, const struct gw_app *app);

#endif
