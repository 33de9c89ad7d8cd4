#include "net/server.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <http_parser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/fmt.h"
#include "core/log.h"
#include "core/metrics.h"
#include "h1/h1.h"
#include "h2/h2.h"
#include "http/router.h"
#include "mllp/mllp.h"
#include "tls/tls.h"

#define SWEEP_MS         100
#define OUT_CHUNK        16384       /* one TLS record's worth of plaintext per SSL_write */
#define OUT_HIGH_WATER   (64 * 1024) /* stop pulling HTTP/2 frames past this much queued output */
#define IN_CHUNK         16384
#define LINGER_MS        1000 /* read-and-discard after our last byte, so the peer sees it */
#define H2_CODE_NO_ERROR 0

struct server;

struct reply_item {
  struct reply_item *next;
  struct gw_reply_token t;
  struct gw_resp resp;
};

struct worker {
  struct server *srv;
  struct evconnlistener *mllp_lis;
  struct evconnlistener *console_lis;
  struct event *reply_ev;
  struct reply_item *rq_head, *rq_tail; /* under reply_mu */
  struct conn *zombies;                 /* closed connections still owed deferred answers */
  int idx;
  pthread_t th;
  struct event_base *base;
  struct evconnlistener *lis;
  struct event *sweep_ev;
  struct event *stop_ev;
  struct gw_metrics *m;
  struct conn *conns;
  int nconns;
  bool stopping;
  uint64_t deadline_ns;
  uint64_t last_refusal_log_ns;
  uint8_t inbuf[IN_CHUNK]; /* decrypted input, consumed before the next read */
};

struct server {
  const struct gw_conf *conf;
  const struct gw_app *app;
  struct gw_tls *tls;     /* swapped by SIGHUP under tls_mu; connections keep the context they began with */
  struct gw_tls *ctls;    /* the console's (client certificate optional), swapped likewise */
  pthread_mutex_t tls_mu; /* held only while a worker starts a connection and while the pointer is swapped */
  int nworkers;
  struct worker *w;
  _Atomic uint32_t nconns;
  _Atomic uint64_t next_id;
  struct event_base *main_base;
};

enum cstate { C_HS, C_H1, C_H2, C_MLLP, C_LINGER };

struct conn {
  struct worker *w;
  int fd;
  struct gw_tls_conn *tls;
  struct event *rev, *wev; /* read (persistent) and write (armed only when a write would block) */
  struct gw_buf out;       /* plaintext waiting for SSL_write; freed when empty */
  size_t out_off;
  bool want_write_on_read; /* TLS needs the socket readable to finish a write */
  uint64_t id;
  enum cstate state;
  bool closing; /* flush what is queued, then linger and free */
  struct gw_identity ident;
  struct gw_h1 *h1;
  struct gw_h2 *h2;
  uint64_t accepted_ns, last_active_ns, linger_until_ns;
  uint64_t last_sent_ns; /* the socket last took bytes */
  uint64_t send_wait_ns; /* output has been pending since (0: none pending) */
  struct conn *prev, *next;
  int npending;          /* deferred answers not yet received */
  bool dead;             /* closed; the struct lives on while npending > 0 */
  bool mllp;             /* accepted on the MLLP listener */
  bool console;          /* accepted on the console's listener (client certificate optional) */
  struct gw_buf backlog; /* HTTP/1.1 or MLLP input waiting while a request awaits its answer */
  bool mwait, in_pump;   /* MLLP: a message awaits its answer; the framing loop is running */
  bool mdiscard;         /* MLLP: the rest of a frame over the limit (answered already) is dropped */
  struct gw_req mreq;    /* MLLP: the message being answered */
  int32_t mcount;
  char peer[64];
  char logid[448]; /* "proto=… peer=… role=… cn=… rpwdl=… regon=…", built once per connection */
  size_t logid_len;
};

static bool conn_flush(struct conn *c);
static void conn_free(struct conn *c);
static int out_append(struct conn *c, const void *data, size_t len);

/* ---- request handling (synchronous for now) ---- */

/* The identity part of every log line of |c|: formatted once, after the handshake. */
static void build_logid(struct conn *c) {
  struct gw_fmt f;
  gw_fmt_init(&f, c->logid, sizeof(c->logid));
  gw_fmt_str(&f, c->state == C_H2     ? "proto=h2 peer="
                 : c->state == C_MLLP ? "proto=mllp peer="
                                      : "proto=http/1.1 peer=");
  gw_fmt_str(&f, c->peer);
  gw_fmt_str(&f, " role=");
  gw_fmt_str(&f, gw_role_name(c->ident.role));
  gw_fmt_str(&f, " cn=");
  gw_fmt_quoted(&f, c->ident.cn);
  gw_fmt_str(&f, " rpwdl=");
  gw_fmt_str(&f, c->ident.rpwdl[0] ? c->ident.rpwdl : "-");
  gw_fmt_str(&f, " regon=");
  gw_fmt_str(&f, c->ident.regon[0] ? c->ident.regon : "-");
  c->logid_len = gw_fmt_len(&f, c->logid);
}

/* The access log: one line per answered request, with the caller's identity. */
static void log_request(struct conn *c, const struct gw_req *req, const struct gw_resp *resp, uint64_t dur_ns) {
  if (!GW_LOG_ON(GW_LOG_INFO))
    return;
  char line[1024];
  struct gw_fmt f;
  gw_fmt_init(&f, line, sizeof(line));
  gw_fmt_str(&f, "conn=");
  gw_fmt_u64(&f, c->id);
  gw_fmt_str(&f, " stream=");
  gw_fmt_u64(&f, (uint64_t)req->stream_id);
  gw_fmt_mem(&f, " ", 1);
  gw_fmt_mem(&f, c->logid, c->logid_len);
  gw_fmt_str(&f, " method=");
  gw_fmt_str(&f, req->method[0] ? req->method : "-");
  char path[256];
  gw_router_log_path(req->path, path, sizeof(path));
  gw_fmt_str(&f, " path=");
  gw_fmt_quoted(&f, path);
  gw_fmt_str(&f, " status=");
  gw_fmt_u64(&f, (uint64_t)resp->status);
  gw_fmt_str(&f, " req_bytes=");
  gw_fmt_u64(&f, req->body.len);
  gw_fmt_str(&f, " resp_bytes=");
  gw_fmt_u64(&f, resp->body_len);
  gw_fmt_str(&f, " dur_us=");
  gw_fmt_u64(&f, dur_ns / 1000);
  gw_log_fields(GW_LOG_INFO, "request", line, gw_fmt_len(&f, line));
}

static void mllp_pump(struct conn *c);
static void mllp_too_large(struct conn *c);
static size_t mllp_discard(struct conn *c, const uint8_t *d, size_t n);
static void h1_feed_backlog(struct conn *c);

/* Sends |resp| for |req| on |c|'s protocol, with metrics and the access log. */
static void conn_respond(struct conn *c, struct gw_req *req, struct gw_resp *resp) {
  uint64_t now = gw_now_ns();
  c->last_active_ns = now;
  gw_metrics_request(c->w->m, req->method[0] ? req->method : "OTHER", resp->status, now - req->start_ns);
  log_request(c, req, resp, now - req->start_ns);
  int rv = GW_OK;
  if (c->h2) {
    rv = gw_h2_respond(c->h2, req, resp);
  } else if (c->h1) {
    rv = gw_h1_respond(c->h1, req, resp);
  } else { /* MLLP: the answer (an ACK) framed */
    uint8_t sb = GW_MLLP_SB, eb[2] = {GW_MLLP_EB, GW_MLLP_CR};
    if (resp->body_len && /* none: enhanced mode asked for no acknowledgment */
        (out_append(c, &sb, 1) || out_append(c, resp->body, resp->body_len) || out_append(c, eb, 2)))
      rv = GW_ERR_NOMEM;
    gw_req_cleanup(&c->mreq);
    c->mwait = false;
  }
  gw_resp_cleanup(resp);
  if (rv)
    c->closing = true;
}

static void answer(struct conn *c, struct gw_req *req) {
  struct gw_resp resp = {0};
  req->reply = (struct gw_reply_token){.worker = c->w, .conn = c, .conn_id = c->id, .stream_id = req->stream_id};
  req->console = c->console;
  c->w->srv->app->handle(req, &resp);
  if (resp.deferred) {
    c->npending++;
    return;
  }
  conn_respond(c, req, &resp);
}

static void on_h2_request(void *ud, struct gw_req *req) { answer(ud, req); }
static void on_h1_request(void *ud, struct gw_req *req) { answer(ud, req); }

/* ---- deferred answers: posted from any thread, sent by the connection's worker ---- */

static pthread_mutex_t reply_mu = PTHREAD_MUTEX_INITIALIZER;
static bool replies_open;

void gw_reply_post(const struct gw_reply_token *t, struct gw_resp *resp) {
  struct reply_item *it = calloc(1, sizeof(*it));
  if (it) {
    it->t = *t;
    it->resp = *resp;
    resp->body = NULL;
    resp->body_len = 0;
  }
  pthread_mutex_lock(&reply_mu);
  if (!replies_open || !it) {
    pthread_mutex_unlock(&reply_mu);
    if (it)
      gw_resp_cleanup(&it->resp);
    free(it);
    gw_resp_cleanup(resp);
    return;
  }
  struct worker *w = t->worker;
  if (w->rq_tail)
    w->rq_tail->next = it;
  else
    w->rq_head = it;
  w->rq_tail = it;
  event_active(w->reply_ev, EV_READ, 0);
  pthread_mutex_unlock(&reply_mu);
}

static void zombie_release(struct conn *c) {
  if (--c->npending > 0)
    return;
  struct worker *w = c->w;
  for (struct conn **pp = &w->zombies; *pp; pp = &(*pp)->next)
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  free(c);
}

static void reply_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  struct worker *w = arg;
  pthread_mutex_lock(&reply_mu);
  struct reply_item *it = w->rq_head;
  w->rq_head = w->rq_tail = NULL;
  pthread_mutex_unlock(&reply_mu);
  while (it) {
    struct reply_item *next = it->next;
    struct conn *c = it->t.conn;
    if (c->dead) {
      gw_resp_cleanup(&it->resp);
      zombie_release(c);
    } else {
      c->npending--;
      struct gw_req *req = NULL;
      if (c->h2)
        req = gw_h2_pending(c->h2, it->t.stream_id);
      else if (c->h1)
        req = gw_h1_pending(c->h1, it->t.stream_id);
      else if (c->state == C_MLLP && c->mwait && c->mreq.stream_id == it->t.stream_id)
        req = &c->mreq;
      if (req) {
        conn_respond(c, req, &it->resp);
        if (c->h1)
          h1_feed_backlog(c);
        else if (c->state == C_MLLP)
          mllp_pump(c);
      } else {
        gw_resp_cleanup(&it->resp);
      }
      if (!c->dead && c->state != C_LINGER)
        conn_flush(c);
    }
    free(it);
    it = next;
  }
}

static int out_append(struct conn *c, const void *data, size_t len) {
  GW_METRIC_ADD(c->w->m, bytes_out, len);
  return gw_buf_append(&c->out, data, len);
}

static int h1_write(void *ud, const void *data, size_t len) { return out_append(ud, data, len); }

static const struct gw_h2_hooks h2_hooks = {.on_request = on_h2_request, .on_abandon = NULL};
static const struct gw_h1_hooks h1_hooks = {.on_request = on_h1_request, .write = h1_write};

/* ---- connection lifecycle ---- */

static void conn_cut(struct conn *c, enum gw_cut_reason why, const char *what) {
  GW_METRIC_INC(c->w->m, conn_cut[why]);
  gw_log(GW_LOG_WARN, "connection_cut", "conn=%lu peer=%s reason=%s cn=\"%s\"", (unsigned long)c->id, c->peer, what,
         c->ident.cn);
}

/* Our last byte is written: send close_notify, half-close, and read-and-discard
 * for a moment so that a peer still sending does not get a reset that would
 * destroy the answer we just sent. */
static void conn_linger(struct conn *c) {
  c->state = C_LINGER;
  c->linger_until_ns = gw_now_ns() + (uint64_t)LINGER_MS * 1000000u;
  gw_tls_close_notify(c->tls);
  shutdown(c->fd, SHUT_WR);
  event_del(c->wev);
  gw_buf_cleanup(&c->out);
}

static void conn_free(struct conn *c) {
  struct worker *w = c->w;
  if (c->prev)
    c->prev->next = c->next;
  else
    w->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  w->nconns--;
  atomic_fetch_sub(&w->srv->nconns, 1);
  GW_METRIC_ADD(w->m, conn_open, -1);
  gw_h2_free(c->h2);
  gw_h1_free(c->h1);
  if (c->rev)
    event_free(c->rev);
  if (c->wev)
    event_free(c->wev);
  gw_tls_conn_free(c->tls);
  close(c->fd);
  gw_buf_cleanup(&c->out);
  gw_buf_cleanup(&c->backlog);
  gw_req_cleanup(&c->mreq);
  if (c->npending > 0) { /* answers are on their way: keep the struct until they arrive */
    c->dead = true;
    c->h1 = NULL;
    c->h2 = NULL;
    c->tls = NULL;
    c->rev = c->wev = NULL;
    c->next = w->zombies;
    w->zombies = c;
  } else {
    free(c);
  }
  if (w->stopping && w->nconns == 0)
    event_base_loopexit(w->base, NULL);
}

static bool conn_done(struct conn *c) {
  if (c->closing)
    return true;
  if (c->state == C_H2)
    return gw_h2_finished(c->h2) || (c->w->stopping && gw_h2_open_streams(c->h2) == 0);
  if (c->state == C_H1)
    return gw_h1_should_close(c->h1);
  if (c->state == C_MLLP)
    return c->w->stopping && !c->mwait;
  return false;
}

/* Writes queued plaintext, one record-sized SSL_write at a time. Returns
 * false when the connection was freed. */
static bool out_write(struct conn *c) {
  while (c->out_off < c->out.len) {
    size_t n = c->out.len - c->out_off;
    if (n > OUT_CHUNK)
      n = OUT_CHUNK;
    long w = gw_tls_write(c->tls, c->out.data + c->out_off, n);
    if (w == GW_TLS_WANT_WRITE || w == GW_TLS_WANT_READ) {
      c->want_write_on_read = w == GW_TLS_WANT_READ;
      if (w == GW_TLS_WANT_WRITE)
        event_add(c->wev, NULL);
      return true;
    }
    if (w < 0) {
      conn_free(c);
      return false;
    }
    c->out_off += (size_t)w;
    c->last_sent_ns = gw_now_ns();
  }
  c->want_write_on_read = false;
  if (c->out.cap > 4 * OUT_HIGH_WATER)
    gw_buf_cleanup(&c->out); /* give a large buffer back */
  c->out.len = 0;
  c->out_off = 0;
  event_del(c->wev);
  return true;
}

/* Moves protocol output to the socket, then closes when done. Returns false
 * when the connection was freed. */
static bool conn_flush(struct conn *c) {
  for (;;) {
    if (c->state == C_H2) {
      while (c->out.len < OUT_HIGH_WATER) {
        const uint8_t *p;
        long n = gw_h2_send(c->h2, &p);
        if (n == 0)
          break;
        if (n < 0 || out_append(c, p, (size_t)n)) {
          c->closing = true;
          break;
        }
      }
    }
    size_t before = c->out.len - c->out_off;
    if (!out_write(c))
      return false;
    if (c->out.len != 0 || before == 0)
      break; /* blocked, or nothing more to send */
  }
  if (c->out.len)
    return true;
  if (!c->out.len && c->out.cap) {
    gw_buf_cleanup(&c->out); /* idle connections hold no output buffer */
  }
  if (c->state != C_LINGER && conn_done(c))
    conn_linger(c);
  return true;
}

static void proto_error(struct conn *c, int rv) {
  if (rv == GW_ERR_CALM) {
    int why = gw_h2_calm_reason(c->h2);
    conn_cut(c, why == 1 ? GW_CUT_RAPID_RESET : GW_CUT_CONTROL_FLOOD, why == 1 ? "rapid_reset" : "control_frame_flood");
  } else {
    conn_cut(c, GW_CUT_PROTOCOL_ERROR, rv == GW_ERR_PROTO ? "protocol_error" : gw_strerror(rv));
  }
  c->closing = true;
}

static void on_handshake(struct conn *c);

static void handshake_failed(struct conn *c) {
  char detail[256];
  enum gw_hs_reason r = gw_tls_failure(c->tls, detail, sizeof(detail));
  GW_METRIC_INC(c->w->m, handshakes[r]);
  gw_log(GW_LOG_WARN, "tls_refused", "conn=%lu peer=%s reason=%s detail=\"%s\"", (unsigned long)c->id, c->peer,
         gw_hs_reason_name(r), detail);
  conn_free(c);
}

/* Input kept while a request awaits its answer is bounded by one request. */
static size_t backlog_cap(const struct conn *c) {
  const struct gw_limits *lim = &c->w->srv->conf->limits;
  return lim->max_body_bytes + lim->max_header_bytes + 65536;
}

/* Feeds decrypted bytes to the protocol. */
static int proto_recv(struct conn *c, const uint8_t *d, size_t n) {
  if (c->state == C_H2)
    return gw_h2_recv(c->h2, d, n);
  if (c->state == C_MLLP) {
    size_t skip = c->mdiscard ? mllp_discard(c, d, n) : 0;
    if (gw_buf_append(&c->backlog, d + skip, n - skip)) {
      if (c->mwait) /* a client that keeps sending while its message is answered: cut */
        return GW_ERR_TOOBIG;
      mllp_too_large(c);
      return GW_OK;
    }
    mllp_pump(c);
    return GW_OK;
  }
  if (c->backlog.len) /* keep the order: older input first */
    return gw_buf_append(&c->backlog, d, n) ? GW_ERR_TOOBIG : GW_OK;
  size_t used = 0;
  int rv = GW_OK;
  while (used < n && rv == GW_OK && !gw_h1_should_close(c->h1)) {
    size_t consumed = 0;
    rv = gw_h1_recv(c->h1, d + used, n - used, &consumed);
    if (consumed == 0) {
      if (gw_h1_waiting(c->h1) && gw_buf_append(&c->backlog, d + used, n - used))
        rv = GW_ERR_TOOBIG; /* pipelining past one request's size while waiting */
      break;                /* otherwise a refused request's remaining bytes are dropped with the connection */
    }
    used += consumed;
  }
  return rv;
}

/* After a deferred HTTP/1.1 answer: parse what arrived meanwhile. */
static void h1_feed_backlog(struct conn *c) {
  if (!c->backlog.len || gw_h1_waiting(c->h1))
    return;
  size_t len;
  uint8_t *data = gw_buf_take(&c->backlog, &len);
  gw_buf_init(&c->backlog, backlog_cap(c));
  int rv = data ? proto_recv(c, data, len) : GW_ERR_NOMEM;
  free(data);
  if (rv)
    proto_error(c, rv);
}

/* Hands |len| bytes at |msg| to the application as the next MLLP message; |early| a refusal decided here. */
static void mllp_message(struct conn *c, const uint8_t *msg, size_t len, int early) {
  struct gw_req *r = &c->mreq;
  gw_req_init(r, c->w->srv->conf->limits.max_body_bytes);
  snprintf(r->method, sizeof(r->method), "POST");
  r->path = strdup("/hl7v2");
  r->proto = GW_PROTO_MLLP;
  r->stream_id = ++c->mcount;
  r->start_ns = gw_now_ns();
  r->peer = &c->ident;
  r->peer_addr = c->peer;
  r->conn_id = c->id;
  r->early_status = early;
  if (len > c->w->srv->conf->limits.max_body_bytes) { /* too large: its first segment, for the ACK's MSH */
    size_t seg = 0;
    while (seg < len && seg < 4096 && msg[seg] != '\r' && msg[seg] != '\n')
      seg++;
    len = seg;
    r->early_status = 413;
  }
  if (!r->path || gw_buf_append(&r->body, msg, len))
    r->early_status = 413;
  c->mwait = true;
  answer(c, r);
}

/* A frame grew past the limit before its end arrived: it is answered now with an ACK built from its
 * first segment (MSH: MSA-2 echoes its MSH-10), and the rest of it is dropped as it arrives. */
static void mllp_too_large(struct conn *c) {
  const uint8_t *b = c->backlog.data, *sb = c->backlog.len ? memchr(b, GW_MLLP_SB, c->backlog.len) : NULL;
  size_t off = sb ? (size_t)(sb - b) + 1 : 0;
  c->mdiscard = true;
  mllp_message(c, b + off, c->backlog.len - off, 413); /* past max_body_bytes: its first segment is kept */
  c->backlog.len = 0;
}

/* Drops the rest of a frame that was answered as too large: returns how many bytes of |d| that was. */
static size_t mllp_discard(struct conn *c, const uint8_t *d, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (d[i] == GW_MLLP_EB) {
      c->mdiscard = false;
      return i + 1 + (i + 1 < n && d[i + 1] == GW_MLLP_CR);
    }
  return n;
}

/* MLLP framing: <VT> message <FS><CR>, one message answered at a time. */
static void mllp_pump(struct conn *c) {
  if (c->in_pump)
    return;
  c->in_pump = true;
  while (!c->mwait && !c->closing && c->backlog.len) {
    uint8_t *b = c->backlog.data;
    size_t mstart, mlen, used;
    enum gw_mllp_result fr = gw_mllp_next(b, c->backlog.len, &mstart, &mlen, &used);
    if (fr == GW_MLLP_BAD) {
      conn_cut(c, GW_CUT_PROTOCOL_ERROR, "mllp_framing");
      c->closing = true;
      break;
    }
    if (fr == GW_MLLP_MORE) {
      memmove(b, b + used, c->backlog.len - used); /* drop line ends between frames */
      c->backlog.len -= used;
      break; /* incomplete: wait for more (bounded by the backlog's cap) */
    }
    mllp_message(c, b + mstart, mlen, 0); /* copied into the request before the handler runs */
    memmove(c->backlog.data, c->backlog.data + used, c->backlog.len - used);
    c->backlog.len -= used;
  }
  c->in_pump = false;
}

static void conn_readable(struct conn *c) {
  struct worker *w = c->w;
  if (c->state == C_HS) {
    int rv = gw_tls_handshake(c->tls);
    if (rv == GW_TLS_WANT_READ || rv == GW_TLS_WANT_WRITE) {
      if (rv == GW_TLS_WANT_WRITE)
        event_add(c->wev, NULL);
      return;
    }
    if (rv) {
      handshake_failed(c);
      return;
    }
    on_handshake(c);
    return;
  }
  if (c->want_write_on_read && !out_write(c))
    return;
  for (;;) {
    long n = gw_tls_read(c->tls, w->inbuf, sizeof(w->inbuf));
    if (n == GW_TLS_WANT_READ)
      break;
    if (n == GW_TLS_WANT_WRITE) {
      event_add(c->wev, NULL);
      break;
    }
    if (n <= 0) { /* end of stream or error */
      if (c->state != C_LINGER && n < 0)
        gw_log(GW_LOG_DEBUG, "connection_error", "conn=%lu peer=%s", (unsigned long)c->id, c->peer);
      conn_free(c);
      return;
    }
    if (c->state == C_LINGER || c->closing)
      continue; /* read and discard */
    GW_METRIC_ADD(w->m, bytes_in, (uint64_t)n);
    int rv = proto_recv(c, w->inbuf, (size_t)n);
    if (rv) {
      proto_error(c, rv);
      break;
    }
    if ((size_t)n < sizeof(w->inbuf))
      break; /* the socket is most likely drained; epoll tells us if not */
  }
  if (c->state != C_LINGER)
    conn_flush(c);
}

static void read_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  conn_readable(arg);
}

static void write_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  struct conn *c = arg;
  if (c->state == C_HS) {
    event_del(c->wev);
    conn_readable(c);
    return;
  }
  if (c->state == C_H2 || c->state == C_H1 || c->state == C_MLLP)
    conn_flush(c);
  else
    event_del(c->wev);
}

/* Roles that are not clinics are pinned by configuration: OU=p1 is P1 only with the configured subject and
 * issuer. A verified certificate that names nobody (see gw_identity.problem) is logged with why. */
static void pin_roles(struct conn *c, const struct gw_conf *conf) {
  struct gw_identity *id = &c->ident;
  bool p1_ok = conf->roles.p1_subject_cn && conf->roles.p1_issuer_cn && !strcmp(id->cn, conf->roles.p1_subject_cn) &&
               !strcmp(id->issuer_cn, conf->roles.p1_issuer_cn);
  if (id->role == GW_ROLE_P1 && !p1_ok) {
    snprintf(id->problem, sizeof(id->problem), "%s",
             "OU=p1 but not the P1 identity of the configuration (roles.p1_subject_cn, roles.p1_issuer_cn)");
    id->role = GW_ROLE_OTHER;
  }
  if (id->problem[0]) {
    char q1[160], q2[160];
    gw_log(GW_LOG_WARN, "identity_refused", "conn=%lu peer=%s cn=%s serial=%s reason=%s", (unsigned long)c->id, c->peer,
           gw_log_quote(q1, sizeof(q1), id->cn), id->serial, gw_log_quote(q2, sizeof(q2), id->problem));
  }
}

static void on_handshake(struct conn *c) {
  struct worker *w = c->w;
  GW_METRIC_INC(w->m, handshakes[GW_HS_OK]);
  if (gw_tls_peer_identity(c->tls, &c->ident) && !c->console) {
    /* cannot happen with SSL_VERIFY_FAIL_IF_NO_PEER_CERT; refuse rather than guess (the console's listener
     * lets a browser without a certificate in: nobody, until it gives the console's token) */
    GW_METRIC_INC(w->m, handshakes[GW_HS_BAD_CERT]);
    conn_free(c);
    return;
  }
  pin_roles(c, w->srv->conf);
  c->last_active_ns = gw_now_ns();
  const struct gw_limits *lim = &w->srv->conf->limits;
  gw_buf_init(&c->backlog, backlog_cap(c));
  if (c->mllp) {
    c->state = C_MLLP;
    build_logid(c);
    gw_log(GW_LOG_INFO, "tls_accepted", "conn=%lu %s mllp=1 serial=%s", (unsigned long)c->id, c->logid,
           c->ident.serial);
    conn_readable(c);
    return;
  }
  if (gw_tls_alpn(c->tls) == GW_ALPN_H2) {
    c->state = C_H2;
    c->h2 = gw_h2_new(lim, &h2_hooks, c, w->m);
    if (c->h2)
      gw_h2_set_peer(c->h2, &c->ident, c->peer, c->id);
    GW_METRIC_INC(w->m, conn_proto[1]);
  } else {
    c->state = C_H1;
    c->h1 = gw_h1_new(lim, &h1_hooks, c, w->m);
    if (c->h1)
      gw_h1_set_peer(c->h1, &c->ident, c->peer, c->id);
    GW_METRIC_INC(w->m, conn_proto[0]);
  }
  if (!c->h1 && !c->h2) {
    conn_free(c);
    return;
  }
  build_logid(c);
  gw_log(GW_LOG_INFO, "tls_accepted", "conn=%lu %s serial=%s issuer=\"%s\"", (unsigned long)c->id, c->logid,
         c->ident.serial, c->ident.issuer_cn);
  if (w->stopping) {
    if (c->h2)
      gw_h2_shutdown(c->h2);
    else
      gw_h1_shutdown(c->h1);
  }
  /* application data may have arrived with the handshake's last flight */
  conn_readable(c);
}

enum listener { L_MAIN, L_MLLP, L_CONSOLE };
static void accept_conn(struct worker *w, evutil_socket_t fd, struct sockaddr *sa, int salen, enum listener kind) {
  bool mllp = kind == L_MLLP;
  struct server *srv = w->srv;
  GW_METRIC_INC(w->m, conn_accepted);
  char host[INET6_ADDRSTRLEN + 2], port[8];
  if (getnameinfo(sa, (socklen_t)salen, host, sizeof(host), port, sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV))
    snprintf(host, sizeof(host), "?"), snprintf(port, sizeof(port), "0");
  if (atomic_fetch_add(&srv->nconns, 1) >= srv->conf->limits.max_connections) {
    atomic_fetch_sub(&srv->nconns, 1);
    GW_METRIC_INC(w->m, conn_cut[GW_CUT_MAX_CONNECTIONS]);
    uint64_t now = gw_now_ns();
    if (now - w->last_refusal_log_ns > 1000000000u) { /* at most one line a second per worker */
      w->last_refusal_log_ns = now;
      gw_log(GW_LOG_WARN, "connection_refused", "peer=%s:%s reason=max_connections limit=%u", host, port,
             srv->conf->limits.max_connections);
    }
    close(fd);
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  struct conn *c = calloc(1, sizeof(*c));
  if (c) {
    c->fd = fd;
    pthread_mutex_lock(&srv->tls_mu);
    c->tls = gw_tls_conn_new(kind == L_CONSOLE ? srv->ctls : srv->tls, fd); /* the connection holds its own
                                                                                 reference to the context */
    pthread_mutex_unlock(&srv->tls_mu);
    if (mllp)
      gw_tls_conn_no_alpn(c->tls); /* HL7 only on that port */
    c->rev = event_new(w->base, fd, EV_READ | EV_PERSIST, read_cb, c);
    c->wev = event_new(w->base, fd, EV_WRITE | EV_PERSIST, write_cb, c);
  }
  if (!c || !c->tls || !c->rev || !c->wev || event_add(c->rev, NULL)) {
    if (c) {
      if (c->rev)
        event_free(c->rev);
      if (c->wev)
        event_free(c->wev);
      gw_tls_conn_free(c->tls);
      free(c);
    }
    close(fd);
    atomic_fetch_sub(&srv->nconns, 1);
    return;
  }
  c->w = w;
  c->mllp = mllp;
  c->console = kind == L_CONSOLE;
  c->id = atomic_fetch_add(&srv->next_id, 1) + 1;
  c->accepted_ns = gw_now_ns();
  gw_buf_init(&c->out, (size_t)8 << 20);
  snprintf(c->peer, sizeof(c->peer), sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
  c->next = w->conns;
  if (w->conns)
    w->conns->prev = c;
  w->conns = c;
  w->nconns++;
  GW_METRIC_INC(w->m, conn_open);
}

static void accept_cb(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg) {
  (void)lis;
  accept_conn(arg, fd, sa, salen, L_MAIN);
}

static void accept_mllp_cb(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg) {
  (void)lis;
  accept_conn(arg, fd, sa, salen, L_MLLP);
}

static void accept_console_cb(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa, int salen,
                              void *arg) {
  (void)lis;
  accept_conn(arg, fd, sa, salen, L_CONSOLE);
}

/* ---- timers and shutdown ---- */

static void write_408(struct conn *c) {
  static const char msg[] = "{\"status\":408,\"error\":\"Request Timeout\",\"message\":\"request not received "
                            "within limits.read_timeout_ms\"}\n";
  char head[160];
  int n = snprintf(head, sizeof(head),
                   "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: %zu\r\n"
                   "connection: close\r\n\r\n",
                   sizeof(msg) - 1);
  out_append(c, head, (size_t)n);
  out_append(c, msg, sizeof(msg) - 1);
}

/* Output waits for a peer that does not take it (a full socket, an HTTP/2 window never granted) with no
 * progress for limits.send_timeout_ms: cut, so that such peers cannot hold connections and memory. */
static bool send_stalled(struct conn *c, uint64_t now, uint64_t send_to) {
  bool pending = c->out_off < c->out.len || (c->state == C_H2 && c->h2 && gw_h2_unsent_responses(c->h2) > 0);
  if (!pending) {
    c->send_wait_ns = 0;
    return false;
  }
  if (!c->send_wait_ns || c->last_sent_ns > c->send_wait_ns)
    c->send_wait_ns = c->last_sent_ns > c->send_wait_ns ? c->last_sent_ns : now;
  return now - c->send_wait_ns > send_to;
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  struct worker *w = arg;
  const struct gw_limits *lim = &w->srv->conf->limits;
  uint64_t now = gw_now_ns();
  uint64_t read_to = (uint64_t)lim->read_timeout_ms * 1000000u, idle_to = (uint64_t)lim->idle_timeout_ms * 1000000u;
  struct conn *next;
  for (struct conn *c = w->conns; c; c = next) {
    next = c->next;
    if (w->stopping && now > w->deadline_ns) {
      conn_cut(c, GW_CUT_SHUTDOWN_DEADLINE, "shutdown_deadline");
      conn_free(c);
      continue;
    }
    if (c->state != C_HS && c->state != C_LINGER && send_stalled(c, now, (uint64_t)lim->send_timeout_ms * 1000000u)) {
      conn_cut(c, GW_CUT_SEND_STALLED, "send_stalled");
      conn_free(c);
      continue;
    }
    switch (c->state) {
    case C_HS:
      if (now - c->accepted_ns > (uint64_t)lim->handshake_timeout_ms * 1000000u) {
        GW_METRIC_INC(w->m, handshakes[GW_HS_TIMEOUT]);
        GW_METRIC_INC(w->m, conn_cut[GW_CUT_HANDSHAKE_TIMEOUT]);
        gw_log(GW_LOG_WARN, "tls_refused", "conn=%lu peer=%s reason=timeout detail=\"no handshake within %u ms\"",
               (unsigned long)c->id, c->peer, lim->handshake_timeout_ms);
        conn_free(c);
      }
      break;
    case C_LINGER:
      if (now > c->linger_until_ns)
        conn_free(c);
      break;
    case C_H1: {
      uint64_t since = gw_h1_incomplete_since(c->h1);
      if (since && now - since > read_to) {
        conn_cut(c, GW_CUT_READ_TIMEOUT, "read_timeout");
        write_408(c);
        c->closing = true;
        conn_flush(c);
      } else if (!gw_h1_busy(c->h1) && now - c->last_active_ns > idle_to) {
        conn_cut(c, GW_CUT_IDLE, "idle_timeout");
        c->closing = true;
        conn_flush(c);
      }
      break;
    }
    case C_MLLP:
      if (!c->mwait && now - c->last_active_ns > (c->backlog.len ? read_to : idle_to)) {
        conn_cut(c, c->backlog.len ? GW_CUT_READ_TIMEOUT : GW_CUT_IDLE,
                 c->backlog.len ? "read_timeout" : "idle_timeout");
        c->closing = true;
        conn_flush(c);
      }
      break;
    case C_H2: {
      uint64_t since = gw_h2_oldest_incomplete(c->h2);
      if (since && now - since > read_to) {
        conn_cut(c, GW_CUT_READ_TIMEOUT, "read_timeout");
        gw_h2_terminate(c->h2, H2_CODE_NO_ERROR);
        conn_flush(c);
      } else if (gw_h2_open_streams(c->h2) == 0 && now - c->last_active_ns > idle_to) {
        conn_cut(c, GW_CUT_IDLE, "idle_timeout");
        gw_h2_terminate(c->h2, H2_CODE_NO_ERROR);
        conn_flush(c);
      }
      break;
    }
    }
  }
  gw_log_flush();
}

static void stop_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  struct worker *w = arg;
  if (w->stopping)
    return;
  w->stopping = true;
  w->deadline_ns = gw_now_ns() + (uint64_t)w->srv->conf->limits.shutdown_timeout_ms * 1000000u;
  if (w->lis) {
    evconnlistener_free(w->lis);
    w->lis = NULL;
  }
  if (w->mllp_lis) {
    evconnlistener_free(w->mllp_lis);
    w->mllp_lis = NULL;
  }
  if (w->console_lis) {
    evconnlistener_free(w->console_lis);
    w->console_lis = NULL;
  }
  struct conn *next;
  for (struct conn *c = w->conns; c; c = next) {
    next = c->next;
    if (c->state == C_HS) {
      conn_free(c);
      continue;
    }
    if (c->state == C_H2)
      gw_h2_shutdown(c->h2);
    else if (c->state == C_H1)
      gw_h1_shutdown(c->h1);
    if (c->state != C_LINGER)
      conn_flush(c);
  }
  if (w->nconns == 0)
    event_base_loopexit(w->base, NULL);
}

static void *worker_main(void *arg) {
  struct worker *w = arg;
  char name[16];
  snprintf(name, sizeof(name), "cergw-worker%d", w->idx + 1);
  pthread_setname_np(pthread_self(), name); /* per-thread CPU in top -H and bench/full.sh */
  gw_log_buffer_thread(1);
  event_base_dispatch(w->base);
  /* past the deadline or nothing left: free whatever remains */
  while (w->conns)
    conn_free(w->conns);
  gw_log_buffer_thread(0);
  return NULL;
}

static struct evconnlistener *make_listener(struct worker *w, const struct addrinfo *ai, evconnlistener_cb cb) {
  return evconnlistener_new_bind(w->base, cb, w, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT,
                                 1024, ai->ai_addr, (int)ai->ai_addrlen);
}

static int workers_count(const struct gw_conf *conf) {
  if (conf->workers)
    return (int)conf->workers;
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : (n > 64 ? 64 : (int)n);
}

/* SIGHUP: the certificate, key, CA bundle and CRLs read again into a new context for new
 * connections (a fresh CRL applies without a restart); a file that does not load keeps the
 * old context. Connections already open keep theirs. */
static void reload_tls(struct server *srv) {
  struct gw_buf errs;
  gw_buf_init(&errs, 16384);
  struct gw_tls *t = gw_tls_server_new(&srv->conf->tls, &errs);
  if (!t) {
    gw_log(GW_LOG_ERROR, "tls_reload_failed", "detail=\"%.*s\" keeping=previous",
           (int)strcspn(errs.data ? (char *)errs.data : "", "\n"), errs.data ? (char *)errs.data : "");
    gw_buf_cleanup(&errs);
    return;
  }
  gw_buf_cleanup(&errs);
  struct gw_tls *ct = srv->ctls ? gw_tls_console_new(&srv->conf->tls, &errs) : NULL;
  pthread_mutex_lock(&srv->tls_mu);
  struct gw_tls *old = srv->tls, *cold = ct ? srv->ctls : NULL;
  srv->tls = t;
  if (ct)
    srv->ctls = ct;
  pthread_mutex_unlock(&srv->tls_mu);
  gw_tls_free(old); /* open connections hold references of their own */
  gw_tls_free(cold);
  gw_log(GW_LOG_INFO, "tls_reloaded", "cert=%s client_ca=%s crl=%s", srv->conf->tls.cert, srv->conf->tls.ca,
         srv->conf->tls.crl ? srv->conf->tls.crl : "-");
}

static void signal_cb(evutil_socket_t sig, short what, void *arg) {
  (void)what;
  struct server *srv = arg;
  if (sig == SIGHUP) {
    reload_tls(srv);
    if (srv->app->reload)
      srv->app->reload();
    return;
  }
  if (srv->main_base)
    event_base_loopbreak(srv->main_base);
  gw_log(GW_LOG_INFO, "shutdown_begin", "signal=%d deadline_ms=%u", (int)sig, srv->conf->limits.shutdown_timeout_ms);
  for (int i = 0; i < srv->nworkers; i++)
    event_active(srv->w[i].stop_ev, EV_READ, 0);
}

int gw_server_run(const struct gw_conf *conf, const struct gw_app *app) {
  struct server srv = {.conf = conf, .app = app, .tls_mu = PTHREAD_MUTEX_INITIALIZER};
  int rv = GW_ERR_IO;
  struct gw_buf errs;
  gw_buf_init(&errs, 16384);
  evthread_use_pthreads();
  signal(SIGPIPE, SIG_IGN);
  http_parser_set_max_header_size((uint32_t)conf->limits.max_header_bytes + 1024);
  gw_router_init();

  srv.tls = gw_tls_server_new(&conf->tls, &errs);
  if (!srv.tls) {
    gw_log(GW_LOG_ERROR, "start_failed", "reason=tls detail=\"%.*s\"", (int)strcspn((char *)errs.data, "\n"),
           (char *)errs.data);
    gw_buf_cleanup(&errs);
    return GW_ERR_CONF;
  }
  if (conf->console_host && !(srv.ctls = gw_tls_console_new(&conf->tls, &errs))) {
    gw_log(GW_LOG_ERROR, "start_failed", "reason=tls detail=\"%.*s\"", (int)strcspn((char *)errs.data, "\n"),
           (char *)errs.data);
    gw_buf_cleanup(&errs);
    gw_tls_free(srv.tls);
    return GW_ERR_CONF;
  }
  gw_buf_cleanup(&errs);

  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai = NULL,
                  *mai = NULL, *cai = NULL;
  struct event_base *main_base = NULL;
  int gai = getaddrinfo(conf->listen_host, conf->listen_port, &hints, &ai);
  if (gai) {
    gw_log(GW_LOG_ERROR, "start_failed", "reason=resolve host=%s detail=\"%s\"", conf->listen_host, gai_strerror(gai));
    goto out_tls;
  }
  if (conf->mllp_host && (gai = getaddrinfo(conf->mllp_host, conf->mllp_port, &hints, &mai))) {
    gw_log(GW_LOG_ERROR, "start_failed", "reason=resolve host=%s detail=\"%s\"", conf->mllp_host, gai_strerror(gai));
    goto out_ai;
  }
  if (conf->console_host && (gai = getaddrinfo(conf->console_host, conf->console_port, &hints, &cai))) {
    gw_log(GW_LOG_ERROR, "start_failed", "reason=resolve host=%s detail=\"%s\"", conf->console_host, gai_strerror(gai));
    goto out_ai;
  }
  srv.nworkers = workers_count(conf);
  srv.w = calloc((size_t)srv.nworkers, sizeof(*srv.w));
  main_base = event_base_new();
  if (!srv.w || !main_base)
    goto out_ai;
  int started = 0;
  for (int i = 0; i < srv.nworkers; i++) {
    struct worker *w = &srv.w[i];
    w->srv = &srv;
    w->idx = i;
    w->m = gw_metrics_slot();
    w->base = event_base_new();
    if (!w->m || !w->base)
      goto out_workers;
    if (!(w->lis = make_listener(w, ai, accept_cb))) {
      gw_log(GW_LOG_ERROR, "start_failed", "reason=listen address=%s:%s detail=\"%s\"", conf->listen_host,
             conf->listen_port, strerror(errno));
      goto out_workers;
    }
    if (mai && !(w->mllp_lis = make_listener(w, mai, accept_mllp_cb))) {
      gw_log(GW_LOG_ERROR, "start_failed", "reason=listen address=%s:%s detail=\"%s\"", conf->mllp_host,
             conf->mllp_port, strerror(errno));
      goto out_workers;
    }
    if (cai && !(w->console_lis = make_listener(w, cai, accept_console_cb))) {
      gw_log(GW_LOG_ERROR, "start_failed", "reason=listen address=%s:%s detail=\"%s\"", conf->console_host,
             conf->console_port, strerror(errno));
      goto out_workers;
    }
    w->reply_ev = event_new(w->base, -1, 0, reply_cb, w);
    struct timeval tv = {0, SWEEP_MS * 1000};
    w->sweep_ev = event_new(w->base, -1, EV_PERSIST, sweep_cb, w);
    w->stop_ev = event_new(w->base, -1, 0, stop_cb, w);
    if (!w->sweep_ev || !w->stop_ev || !w->reply_ev || event_add(w->sweep_ev, &tv))
      goto out_workers;
  }
  pthread_mutex_lock(&reply_mu);
  replies_open = true;
  pthread_mutex_unlock(&reply_mu);
  struct event *sigterm = evsignal_new(main_base, SIGTERM, signal_cb, &srv);
  struct event *sigint = evsignal_new(main_base, SIGINT, signal_cb, &srv);
  struct event *sighup = evsignal_new(main_base, SIGHUP, signal_cb, &srv);
  if (!sigterm || !sigint || !sighup || event_add(sigterm, NULL) || event_add(sigint, NULL) ||
      event_add(sighup, NULL)) {
    if (sigterm)
      event_free(sigterm);
    if (sigint)
      event_free(sigint);
    if (sighup)
      event_free(sighup);
    goto out_workers;
  }
  for (; started < srv.nworkers; started++)
    if (pthread_create(&srv.w[started].th, NULL, worker_main, &srv.w[started]))
      break;
  if (started < srv.nworkers) {
    signal_cb(SIGTERM, 0, &srv);
  } else {
    gw_log(GW_LOG_INFO, "listening", "address=%s:%s mllp=%s:%s console=%s:%s workers=%d cert=%s client_ca=%s crl=%s",
           conf->listen_host, conf->listen_port, conf->mllp_host ? conf->mllp_host : "-",
           conf->mllp_port ? conf->mllp_port : "-", conf->console_host ? conf->console_host : "-",
           conf->console_port ? conf->console_port : "-", srv.nworkers, conf->tls.cert, conf->tls.ca,
           conf->tls.crl ? conf->tls.crl : "-");
    /* the first SIGTERM/SIGINT breaks this loop; workers then drain on their own */
    srv.main_base = main_base;
    event_base_dispatch(main_base);
  }
  for (int i = 0; i < started; i++)
    pthread_join(srv.w[i].th, NULL);
  event_free(sigterm);
  event_free(sigint);
  event_free(sighup);
  gw_log(GW_LOG_INFO, "stopped", "workers=%d", started);
  rv = started == srv.nworkers ? GW_OK : GW_ERR_IO;

out_workers:
  pthread_mutex_lock(&reply_mu);
  replies_open = false;
  pthread_mutex_unlock(&reply_mu);
  for (int i = 0; i < srv.nworkers; i++) {
    struct worker *w = &srv.w[i];
    while (w->rq_head) {
      struct reply_item *it = w->rq_head;
      w->rq_head = it->next;
      gw_resp_cleanup(&it->resp);
      free(it);
    }
    while (w->zombies) {
      struct conn *z = w->zombies;
      w->zombies = z->next;
      free(z);
    }
    if (w->reply_ev)
      event_free(w->reply_ev);
    if (w->mllp_lis)
      evconnlistener_free(w->mllp_lis);
    if (w->console_lis)
      evconnlistener_free(w->console_lis);
    if (w->lis)
      evconnlistener_free(w->lis);
    if (w->sweep_ev)
      event_free(w->sweep_ev);
    if (w->stop_ev)
      event_free(w->stop_ev);
    if (w->base)
      event_base_free(w->base);
  }
out_ai:
  if (main_base)
    event_base_free(main_base);
  free(srv.w);
  freeaddrinfo(ai);
  if (mai)
    freeaddrinfo(mai);
  if (cai)
    freeaddrinfo(cai);
out_tls:
  gw_tls_free(srv.tls);
  gw_tls_free(srv.ctls);
  return rv;
}
