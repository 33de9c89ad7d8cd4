#include "mllp/client.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/err.h"
#include "mllp/mllp.h"
#include "tls/tls.h"

#define MAX_ANSWER (256u << 10) /* an ACK is small; a peer sending more is cut off */

enum phase { P_CONNECT, P_HANDSHAKE, P_SEND, P_RECV, P_DONE, P_FAILED };

struct gw_mllp_call {
  enum phase phase;
  int fd;
  short want; /* poll events the current phase waits for */
  struct gw_tls_conn *tc;
  char host[256];
  uint8_t *out; /* the framed message */
  size_t out_len, sent;
  struct gw_buf in;
  size_t ans_start, ans_len;
  int64_t deadline_ms;
  char err[200];
};

static enum gw_mllp_call_state fail(struct gw_mllp_call *c, const char *fmt, const char *arg) {
  snprintf(c->err, sizeof(c->err), fmt, arg ? arg : "");
  c->phase = P_FAILED;
  c->want = 0;
  return GW_MLLP_CALL_FAILED;
}

struct gw_mllp_call *gw_mllp_call_new(struct gw_tls *tls, const char *host, const char *port, const void *msg,
                                      size_t len, int64_t deadline_ms) {
  struct gw_mllp_call *c = calloc(1, sizeof(*c));
  if (!c)
    return NULL;
  c->fd = -1;
  c->deadline_ms = deadline_ms;
  gw_buf_init(&c->in, MAX_ANSWER);
  snprintf(c->host, sizeof(c->host), "%s", host);
  c->out = malloc(len + 3);
  if (!c->out) {
    free(c);
    return NULL;
  }
  c->out[0] = GW_MLLP_SB;
  memcpy(c->out + 1, msg, len);
  c->out[len + 1] = GW_MLLP_EB;
  c->out[len + 2] = GW_MLLP_CR;
  c->out_len = len + 3;
  /* the address: numeric hosts resolve at once; a name is looked up here, once per exchange */
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
  int gr = getaddrinfo(host, port, &hints, &ai);
  if (gr != 0 || !ai) {
    fail(c, "cannot resolve %s", host);
    return c;
  }
  c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
  if (c->fd < 0 || (connect(c->fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS)) {
    fail(c, "cannot connect: %s", strerror(errno));
    freeaddrinfo(ai);
    return c;
  }
  freeaddrinfo(ai);
  c->tc = gw_tls_client_conn_new(tls, c->fd, host);
  if (!c->tc) {
    fail(c, "%sout of memory", NULL);
    return c;
  }
  c->phase = P_CONNECT;
  c->want = POLLOUT;
  return c;
}

/* Maps a TLS call's result to the events to wait for; false when it failed. */
static bool wait_for(struct gw_mllp_call *c, long r) {
  if (r == GW_TLS_WANT_READ)
    c->want = POLLIN;
  else if (r == GW_TLS_WANT_WRITE)
    c->want = POLLOUT;
  else
    return false;
  return true;
}

enum gw_mllp_call_state gw_mllp_call_step(struct gw_mllp_call *c, int64_t now_ms) {
  if (c->phase == P_DONE)
    return GW_MLLP_CALL_DONE;
  if (c->phase == P_FAILED)
    return GW_MLLP_CALL_FAILED;
  if (now_ms >= c->deadline_ms)
    return fail(c, "no answer in time%s", NULL);
  if (c->phase == P_CONNECT) {
    struct pollfd pf = {.fd = c->fd, .events = POLLOUT};
    if (poll(&pf, 1, 0) <= 0)
      return GW_MLLP_CALL_PENDING;
    int e = 0;
    socklen_t el = sizeof(e);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &el) != 0 || e != 0)
      return fail(c, "cannot connect: %s", strerror(e ? e : errno));
    c->phase = P_HANDSHAKE;
  }
  if (c->phase == P_HANDSHAKE) {
    int r = gw_tls_handshake(c->tc);
    if (r != GW_OK) {
      if (wait_for(c, r))
        return GW_MLLP_CALL_PENDING;
      return fail(c, "TLS: %s", gw_tls_verify_error(c->tc));
    }
    c->phase = P_SEND;
  }
  if (c->phase == P_SEND) {
    long r = gw_tls_write(c->tc, c->out, c->out_len); /* all or nothing */
    if (r < 0) {
      if (wait_for(c, r))
        return GW_MLLP_CALL_PENDING;
      return fail(c, "%sthe connection broke while sending", NULL);
    }
    c->sent = c->out_len;
    c->phase = P_RECV;
    c->want = POLLIN;
  }
  while (c->phase == P_RECV) {
    uint8_t buf[4096];
    long r = gw_tls_read(c->tc, buf, sizeof(buf));
    if (r == 0)
      return fail(c, "%sthe peer closed the connection without an answer", NULL);
    if (r < 0) {
      if (wait_for(c, r))
        return GW_MLLP_CALL_PENDING;
      return fail(c, "%sthe connection broke while reading the answer", NULL);
    }
    if (gw_buf_append(&c->in, buf, (size_t)r))
      return fail(c, "%sthe answer exceeds 256 KiB", NULL);
    size_t start, len, used;
    enum gw_mllp_result fr = gw_mllp_next(c->in.data, c->in.len, &start, &len, &used);
    if (fr == GW_MLLP_BAD)
      return fail(c, "%sthe answer is not MLLP framed", NULL);
    if (fr == GW_MLLP_FRAME) {
      c->ans_start = start;
      c->ans_len = len;
      c->phase = P_DONE;
      c->want = 0;
      gw_tls_close_notify(c->tc);
    }
  }
  return GW_MLLP_CALL_DONE;
}

int gw_mllp_call_fd(const struct gw_mllp_call *c, short *events) {
  *events = c->want;
  return (c->phase == P_DONE || c->phase == P_FAILED) ? -1 : c->fd;
}

const char *gw_mllp_call_answer(const struct gw_mllp_call *c, size_t *len) {
  *len = c->ans_len;
  return (const char *)c->in.data + c->ans_start;
}

const char *gw_mllp_call_error(const struct gw_mllp_call *c) { return c->err; }

void gw_mllp_call_free(struct gw_mllp_call *c) {
  if (!c)
    return;
  gw_tls_conn_free(c->tc);
  if (c->fd >= 0)
    close(c->fd);
  gw_buf_cleanup(&c->in);
  free(c->out);
  free(c);
}
