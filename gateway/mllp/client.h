/* One MLLP exchange over TLS, as a client: connect, handshake (the gateway's
 * client certificate; the peer verified against the CA and its name), send
 * one framed message, read one framed answer (the ACK). Non-blocking: the
 * caller polls the socket for the events asked and calls step() again. */
#ifndef GW_MLLP_CLIENT_H
#define GW_MLLP_CLIENT_H

#include <stddef.h>
#include <stdint.h>

struct gw_tls;
struct gw_mllp_call;

enum gw_mllp_call_state { GW_MLLP_CALL_PENDING = 0, GW_MLLP_CALL_DONE, GW_MLLP_CALL_FAILED };

/* Starts sending |msg| (|len| bytes, copied) to |host|:|port|; the whole
 * exchange must end by |deadline_ms| (gw_wall_ms clock). Never NULL except
 * when out of memory; a failure to start shows up at the first step(). */
struct gw_mllp_call *gw_mllp_call_new(struct gw_tls *tls, const char *host, const char *port, const void *msg,
                                      size_t len, int64_t deadline_ms);
/* Advances as far as the socket allows. */
enum gw_mllp_call_state gw_mllp_call_step(struct gw_mllp_call *c, int64_t now_ms);
/* The socket to poll and the poll(2) events it waits for (-1 when none). */
int gw_mllp_call_fd(const struct gw_mllp_call *c, short *events);
/* After DONE: the answer's message (without framing). */
const char *gw_mllp_call_answer(const struct gw_mllp_call *c, size_t *len);
/* After FAILED: why, in words. */
const char *gw_mllp_call_error(const struct gw_mllp_call *c);
void gw_mllp_call_free(struct gw_mllp_call *c);

#endif
