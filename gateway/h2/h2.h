/* HTTP/2 server session glue over nghttp2. Does no I/O: bytes go in with
 * gw_h2_recv() and come out of gw_h2_send(); the network layer owns the
 * socket. The only folder that includes nghttp2 for server sessions. */
#ifndef GW_H2_H2_H
#define GW_H2_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"
#include "core/metrics.h"
#include "http/req.h"

struct gw_h2;

struct gw_h2_hooks {
  /* A request is complete (or refused early, see req->early_status). The
   * callee answers now or later with gw_h2_respond(); |req| stays valid until
   * then or until the stream closes (on_abandon). */
  void (*on_request)(void *ud, struct gw_req *req);
  /* The peer reset or the session closed a stream whose request had been
   * handed out and not answered: the callee must forget |req|. May be NULL. */
  void (*on_abandon)(void *ud, struct gw_req *req);
};

/* Creates a server session and queues the server SETTINGS. |lim|, |hooks|
 * and |m| are borrowed and must outlive the session. Returns NULL on
 * allocation failure. */
struct gw_h2 *gw_h2_new(const struct gw_limits *lim, const struct gw_h2_hooks *hooks, void *ud, struct gw_metrics *m);
/* Frees the session and every stream it holds; NULL is a no-op. */
void gw_h2_free(struct gw_h2 *h);

/* Feeds |len| received bytes. Returns 0; GW_ERR_PROTO when the peer broke the
 * protocol (garbage preface included); GW_ERR_CALM when the peer flooded
 * (rapid reset, SETTINGS/PING/PRIORITY floods). On an error a GOAWAY may be
 * queued: flush gw_h2_send() once, then close. */
int gw_h2_recv(struct gw_h2 *h, const uint8_t *data, size_t len);

/* Points |*out| at the next bytes to write (valid until the next call) and
 * returns their count; 0 when nothing is pending; a GW_ERR_* on failure. */
long gw_h2_send(struct gw_h2 *h, const uint8_t **out);

/* Submits the response to |req| (which must come from on_request). Takes
 * ownership of |resp->body|. Returns 0 or a GW_ERR_*. */
int gw_h2_respond(struct gw_h2 *h, struct gw_req *req, struct gw_resp *resp);

/* Graceful stop: GOAWAY with the last processed stream; open streams finish. */
void gw_h2_shutdown(struct gw_h2 *h);
/* Immediate stop with |code| (an HTTP/2 error code). */
void gw_h2_terminate(struct gw_h2 *h, uint32_t code);

/* True when the session has nothing more to read or write. */
bool gw_h2_finished(const struct gw_h2 *h);
/* Number of open streams. */
int gw_h2_open_streams(const struct gw_h2 *h);
/* Streams whose response was submitted but is not sent completely (e.g. the peer grants no window). */
int gw_h2_unsent_responses(const struct gw_h2 *h);
/* Start time (ns) of the oldest stream whose request is still arriving, or 0. */
uint64_t gw_h2_oldest_incomplete(const struct gw_h2 *h);

/* Why the session ended itself: 0 not at all, 1 rapid reset, 2 control-frame flood. */
int gw_h2_calm_reason(const struct gw_h2 *h);

/* The request of |stream_id| when it was handed out and not answered yet, or NULL. */
struct gw_req *gw_h2_pending(struct gw_h2 *h, int32_t stream_id);

/* Attaches the connection facts copied into every request. Borrowed. */
void gw_h2_set_peer(struct gw_h2 *h, const struct gw_identity *id, const char *addr, uint64_t conn_id);

#endif
