#include "h2/h2.h"

#include <nghttp2/nghttp2.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/err.h"
#include "core/fmt.h"
#include "core/log.h"

struct stream {
  struct gw_req req; /* first: container_of by cast */
  struct gw_resp resp;
  size_t resp_off;
  bool req_complete; /* END_STREAM received */
  bool dispatched;   /* handed to on_request */
  bool responded;
  size_t counted; /* body bytes counted against the budgets */
  struct stream *prev, *next;
};

/* Request bodies buffered by every connection of the process (limits.max_buffered_bytes). */
static _Atomic size_t total_buffered;

struct gw_h2 {
  nghttp2_session *s;
  const struct gw_limits *lim;
  const struct gw_h2_hooks *hooks;
  void *ud;
  struct gw_metrics *m;
  struct stream *streams;
  int nstreams;
  size_t buffered; /* request bodies buffered by this connection (limits.max_connection_buffer_bytes) */
  /* flood accounting over one-second windows */
  uint64_t win_start_ms;
  uint32_t resets, control;
  int calm;
  const struct gw_identity *peer;
  const char *peer_addr;
  uint64_t conn_id;
};

static struct stream *stream_of(struct gw_req *r) { return (struct stream *)r; }

static void stream_unlink_free(struct gw_h2 *h, struct stream *st) {
  if (st->prev)
    st->prev->next = st->next;
  else
    h->streams = st->next;
  if (st->next)
    st->next->prev = st->prev;
  h->nstreams--;
  GW_METRIC_ADD(h->m, streams_open, -1);
  h->buffered -= st->counted;
  atomic_fetch_sub(&total_buffered, st->counted);
  gw_req_cleanup(&st->req);
  gw_resp_cleanup(&st->resp);
  free(st);
}

/* Counts one control frame or reset; past the limit, ends the session. */
static void flood_tick(struct gw_h2 *h, bool reset) {
  uint64_t now = gw_now_ms();
  if (now - h->win_start_ms >= 1000) {
    h->win_start_ms = now;
    h->resets = h->control = 0;
  }
  if (reset ? ++h->resets > h->lim->max_resets_per_s : ++h->control > h->lim->max_control_per_s) {
    if (!h->calm) {
      h->calm = reset ? 1 : 2;
      nghttp2_session_terminate_session(h->s, NGHTTP2_ENHANCE_YOUR_CALM);
    }
  }
}

static void dispatch(struct gw_h2 *h, struct stream *st) {
  if (st->dispatched)
    return;
  st->dispatched = true;
  h->hooks->on_request(h->ud, &st->req);
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud) {
  struct gw_h2 *h = ud;
  if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  struct stream *st = calloc(1, sizeof(*st));
  if (!st)
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  gw_req_init(&st->req, h->lim->max_body_bytes);
  st->req.stream_id = f->hd.stream_id;
  st->req.proto = 2;
  st->req.start_ns = gw_now_ns();
  st->req.peer = h->peer;
  st->req.peer_addr = h->peer_addr;
  st->req.conn_id = h->conn_id;
  st->next = h->streams;
  if (h->streams)
    h->streams->prev = st;
  h->streams = st;
  h->nstreams++;
  GW_METRIC_INC(h->m, streams_total);
  GW_METRIC_INC(h->m, streams_open);
  nghttp2_session_set_stream_user_data(s, f->hd.stream_id, st);
  return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *ud) {
  (void)flags;
  struct gw_h2 *h = ud;
  if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0; /* trailers are ignored */
  struct stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
  if (!st)
    return 0;
  struct gw_req *r = &st->req;
  r->header_bytes += namelen + valuelen + 32;
  if (r->header_bytes > h->lim->max_header_bytes) {
    r->early_status = 431;
    return 0;
  }
  if (r->early_status)
    return 0;
#define IS(lit) (namelen == sizeof(lit) - 1 && memcmp(name, lit, namelen) == 0)
  if (IS(":method")) {
    if (valuelen >= sizeof(r->method)) {
      r->early_status = 400;
      return 0;
    }
    memcpy(r->method, value, valuelen);
    r->method[valuelen] = 0;
  } else if (IS(":path")) {
    if (valuelen > h->lim->max_url_bytes) {
      r->early_status = 414;
      return 0;
    }
    free(r->path);
    r->path = strndup((const char *)value, valuelen);
  } else if (name[0] != ':' && !IS("host") && gw_req_header_field(r, (const char *)name, namelen)) {
    char **dst = gw_req_header_field(r, (const char *)name, namelen); /* HTTP/2 names the host in :authority */
    free(*dst);
    *dst = strndup((const char *)value, valuelen);
  } else if (IS("content-length")) {
    /* nghttp2 has validated the syntax already (HTTP messaging is on) */
    char tmp[24];
    size_t n = valuelen < sizeof(tmp) - 1 ? valuelen : sizeof(tmp) - 1;
    memcpy(tmp, value, n);
    tmp[n] = 0;
    r->content_length = strtoll(tmp, NULL, 10);
    if (r->content_length < 0 || (uint64_t)r->content_length > h->lim->max_body_bytes)
      r->early_status = 413;
  }
#undef IS
  return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud) {
  struct gw_h2 *h = ud;
  switch (f->hd.type) {
  case NGHTTP2_RST_STREAM:
    flood_tick(h, true);
    return 0;
  case NGHTTP2_SETTINGS:
  case NGHTTP2_PING:
    if (!(f->hd.flags & NGHTTP2_FLAG_ACK))
      flood_tick(h, false);
    return 0;
  case NGHTTP2_PRIORITY:
    flood_tick(h, false);
    return 0;
  case NGHTTP2_HEADERS:
  case NGHTTP2_DATA:
    break;
  default:
    return 0;
  }
  struct stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
  if (!st)
    return 0;
  if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
    st->req_complete = true;
    if (st->req.content_length >= 0 && (size_t)st->req.content_length != st->req.body.len && !st->req.early_status)
      st->req.early_status = 400;
    dispatch(h, st);
  } else if (f->hd.type == NGHTTP2_HEADERS && st->req.early_status) {
    dispatch(h, st); /* refuse now; do not wait for a body we will not read */
  }
  return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t stream_id, const uint8_t *data, size_t len,
                         void *ud) {
  (void)flags;
  struct gw_h2 *h = ud;
  struct stream *st = nghttp2_session_get_stream_user_data(s, stream_id);
  if (!st || st->dispatched || st->req.early_status)
    return 0;
  const struct gw_limits *lim = h->lim;
  bool fits = st->req.body.len + len <= st->req.body.max; /* else: 413 below, nothing more buffered */
  if (fits && ((lim->max_conn_buffer && h->buffered + len > lim->max_conn_buffer) ||
               (lim->max_buffered && atomic_load(&total_buffered) + len > lim->max_buffered))) {
    /* past the memory budget: this stream is refused (the client may retry it), nothing more is buffered */
    h->buffered -= st->counted;
    atomic_fetch_sub(&total_buffered, st->counted);
    st->counted = 0;
    gw_buf_cleanup(&st->req.body);
    st->req.early_status = 503;
    st->dispatched = true; /* never handed over */
    GW_METRIC_INC(h->m, streams_refused);
    return nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_REFUSED_STREAM)
               ? NGHTTP2_ERR_CALLBACK_FAILURE
               : 0;
  }
  int rv = gw_buf_append(&st->req.body, data, len);
  if (rv == GW_OK) {
    st->counted += len;
    h->buffered += len;
    atomic_fetch_add(&total_buffered, len);
  }
  if (rv == GW_ERR_TOOBIG) {
    st->req.early_status = 413;
    dispatch(h, st);
  } else if (rv) {
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  return 0;
}

static int on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *ud) {
  (void)ud;
  /* A response completed before its request: tell the client to stop sending. */
  if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
    struct stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (st && !st->req_complete)
      nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR);
  }
  return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t stream_id, uint32_t code, void *ud) {
  (void)code;
  struct gw_h2 *h = ud;
  struct stream *st = nghttp2_session_get_stream_user_data(s, stream_id);
  if (!st)
    return 0;
  if (st->dispatched && !st->responded && h->hooks->on_abandon)
    h->hooks->on_abandon(h->ud, &st->req);
  stream_unlink_free(h, st);
  return 0;
}

static ssize_t body_read(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t length, uint32_t *flags,
                         nghttp2_data_source *src, void *ud) {
  (void)s;
  (void)stream_id;
  (void)ud;
  struct stream *st = src->ptr;
  size_t left = st->resp.body_len - st->resp_off;
  size_t n = left < length ? left : length;
  memcpy(buf, st->resp.body + st->resp_off, n);
  st->resp_off += n;
  if (st->resp_off == st->resp.body_len)
    *flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t)n;
}

struct gw_h2 *gw_h2_new(const struct gw_limits *lim, const struct gw_h2_hooks *hooks, void *ud, struct gw_metrics *m) {
  struct gw_h2 *h = calloc(1, sizeof(*h));
  if (!h)
    return NULL;
  h->lim = lim;
  h->hooks = hooks;
  h->ud = ud;
  h->m = m;
  h->win_start_ms = gw_now_ms();

  nghttp2_session_callbacks *cb;
  nghttp2_option *opt;
  if (nghttp2_session_callbacks_new(&cb))
    goto fail_h;
  if (nghttp2_option_new(&opt))
    goto fail_cb;
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
  nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
  /* nghttp2's own guards stay on as a second line behind ours */
  nghttp2_option_set_max_outbound_ack(opt, 1000);
  nghttp2_option_set_max_settings(opt, 32);
  nghttp2_option_set_stream_reset_rate_limit(opt, 2ull * lim->max_resets_per_s, 2ull * lim->max_resets_per_s);
  nghttp2_option_set_max_continuations(opt, 8);
  int rv = nghttp2_session_server_new2(&h->s, cb, h, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cb);
  if (rv)
    goto fail_h;

  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, lim->max_streams},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)lim->max_header_bytes},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 256 * 1024},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
  };
  if (nghttp2_submit_settings(h->s, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) ||
      nghttp2_session_set_local_window_size(h->s, NGHTTP2_FLAG_NONE, 0, 1 << 20)) {
    nghttp2_session_del(h->s);
    goto fail_h;
  }
  return h;

fail_cb:
  nghttp2_session_callbacks_del(cb);
fail_h:
  free(h);
  return NULL;
}

void gw_h2_free(struct gw_h2 *h) {
  if (!h)
    return;
  /* nghttp2_session_del() calls on_stream_close for open streams, freeing them */
  nghttp2_session_del(h->s);
  while (h->streams)
    stream_unlink_free(h, h->streams);
  free(h);
}

void gw_h2_set_peer(struct gw_h2 *h, const struct gw_identity *id, const char *addr, uint64_t conn_id) {
  h->peer = id;
  h->peer_addr = addr;
  h->conn_id = conn_id;
}

int gw_h2_recv(struct gw_h2 *h, const uint8_t *data, size_t len) {
  ssize_t rv = nghttp2_session_mem_recv(h->s, data, len);
  if (h->calm)
    return GW_ERR_CALM;
  if (rv < 0) {
    if (rv == NGHTTP2_ERR_NOMEM)
      return GW_ERR_NOMEM;
    gw_log(GW_LOG_DEBUG, "h2_error", "conn=%lu peer=%s error=\"%s\"", (unsigned long)h->conn_id,
           h->peer_addr ? h->peer_addr : "-", nghttp2_strerror((int)rv));
    return GW_ERR_PROTO;
  }
  return GW_OK;
}

long gw_h2_send(struct gw_h2 *h, const uint8_t **out) {
  ssize_t n = nghttp2_session_mem_send(h->s, out);
  if (n < 0)
    return n == NGHTTP2_ERR_NOMEM ? GW_ERR_NOMEM : GW_ERR_PROTO;
  return (long)n;
}

int gw_h2_respond(struct gw_h2 *h, struct gw_req *req, struct gw_resp *resp) {
  struct stream *st = stream_of(req);
  st->responded = true;
  st->resp = *resp;
  resp->body = NULL;
  resp->body_len = 0;
  char status[8], clen[24];
  struct gw_fmt f;
  gw_fmt_init(&f, status, sizeof(status));
  gw_fmt_u64(&f, (uint64_t)(st->resp.status % 1000));
  gw_fmt_init(&f, clen, sizeof(clen));
  gw_fmt_u64(&f, st->resp.body_len);
  nghttp2_nv nv[6 + GW_RESP_MAX_EXTRA];
  size_t n = 0;
#define NV(k, v)                                                                                                       \
  nv[n++] = (nghttp2_nv){(uint8_t *)(k), (uint8_t *)(v), strlen(k), strlen(v), NGHTTP2_NV_FLAG_NO_COPY_NAME}
  NV(":status", status);
  if (st->resp.content_type)
    NV("content-type", st->resp.content_type);
  NV("content-length", clen);
  for (int i = 0; i < st->resp.nextra; i++)
    NV(st->resp.extra[i].name, st->resp.extra[i].value);
  if (st->resp.location[0])
    NV("location", st->resp.location);
  if (st->resp.etag[0])
    NV("etag", st->resp.etag);
#undef NV
  bool head = strcmp(req->method, "HEAD") == 0;
  nghttp2_data_provider prd = {.source.ptr = st, .read_callback = body_read};
  int rv = nghttp2_submit_response(h->s, req->stream_id, nv, n, (st->resp.body_len && !head) ? &prd : NULL);
  return rv ? GW_ERR_PROTO : GW_OK;
}

void gw_h2_shutdown(struct gw_h2 *h) {
  nghttp2_submit_goaway(h->s, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h->s), NGHTTP2_NO_ERROR, NULL,
                        0);
}

void gw_h2_terminate(struct gw_h2 *h, uint32_t code) { nghttp2_session_terminate_session(h->s, code); }

bool gw_h2_finished(const struct gw_h2 *h) {
  return !nghttp2_session_want_read(h->s) && !nghttp2_session_want_write(h->s);
}

int gw_h2_open_streams(const struct gw_h2 *h) { return h->nstreams; }

int gw_h2_unsent_responses(const struct gw_h2 *h) {
  int n = 0;
  for (const struct stream *st = h->streams; st; st = st->next)
    n += st->responded;
  return n;
}

uint64_t gw_h2_oldest_incomplete(const struct gw_h2 *h) {
  uint64_t oldest = 0;
  for (const struct stream *st = h->streams; st; st = st->next)
    if (!st->req_complete && !st->dispatched && (!oldest || st->req.start_ns < oldest))
      oldest = st->req.start_ns;
  return oldest;
}

int gw_h2_calm_reason(const struct gw_h2 *h) { return h->calm; }

struct gw_req *gw_h2_pending(struct gw_h2 *h, int32_t stream_id) {
  struct stream *st = nghttp2_session_get_stream_user_data(h->s, stream_id);
  return (st && st->dispatched && !st->responded) ? &st->req : NULL;
}
