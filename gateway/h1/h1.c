#include "h1/h1.h"

#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"
#include "core/err.h"

enum hdr { H_NONE, H_FIELD, H_EXPECT, H_OTHER };

struct gw_h1 {
  http_parser p;
  const struct gw_limits *lim;
  const struct gw_h1_hooks *hooks;
  void *ud;
  struct gw_metrics *m;
  struct gw_req req;
  bool in_req;   /* message begun */
  bool waiting;  /* complete or refused, awaiting gw_h1_respond */
  bool closing;  /* close after the current response */
  bool stopping; /* graceful shutdown requested */
  int32_t count;
  enum hdr cur; /* header whose value is being received */
  char **dst;   /* H_FIELD: where its value goes (gw_req_header_field) */
  bool last_was_value;
  bool in_name;   /* inside a header name (it may arrive in pieces) */
  bool delivered; /* this message went to on_request already */
  char hname[32]; /* current header name (only short names matter) */
  size_t hname_len;
  struct gw_buf hval; /* value of a header we keep */
  const struct gw_identity *peer;
  const char *peer_addr;
  uint64_t conn_id;
};

static struct gw_h1 *of(http_parser *p) { return (struct gw_h1 *)p; }

static void refuse(struct gw_h1 *h, int status) {
  if (!h->req.early_status)
    h->req.early_status = status;
}

static int on_message_begin(http_parser *p) {
  struct gw_h1 *h = of(p);
  gw_req_cleanup(&h->req);
  gw_req_init(&h->req, h->lim->max_body_bytes);
  h->req.proto = 1;
  h->req.start_ns = gw_now_ns();
  h->req.stream_id = ++h->count;
  h->req.peer = h->peer;
  h->req.peer_addr = h->peer_addr;
  h->req.conn_id = h->conn_id;
  h->in_req = true;
  gw_buf_cleanup(&h->hval); /* what a trailer of the message before left */
  h->cur = H_NONE;
  h->last_was_value = false;
  h->in_name = false;
  h->delivered = false;
  h->hname_len = 0;
  GW_METRIC_INC(h->m, streams_total);
  GW_METRIC_INC(h->m, streams_open);
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t n) {
  struct gw_h1 *h = of(p);
  size_t have = h->req.path ? strlen(h->req.path) : 0;
  if (have + n > h->lim->max_url_bytes) {
    refuse(h, 414);
    return 0;
  }
  char *np = realloc(h->req.path, have + n + 1);
  if (!np)
    return -1;
  memcpy(np + have, at, n);
  np[have + n] = 0;
  h->req.path = np;
  h->req.header_bytes += n;
  return 0;
}

static void finish_header(struct gw_h1 *h) {
  if (!h->last_was_value)
    return;
  char **dst = h->cur == H_FIELD ? h->dst : NULL;
  if (h->cur == H_EXPECT)
    h->req.expect_continue = h->hval.len == 12 && strncasecmp((char *)h->hval.data, "100-continue", 12) == 0;
  if (dst && h->hval.len) {
    free(*dst);
    *dst = (char *)gw_buf_take(&h->hval, NULL);
  }
  gw_buf_cleanup(&h->hval);
  h->hname_len = 0;
  h->last_was_value = false;
  h->cur = H_NONE;
}

static int count_header(struct gw_h1 *h, size_t n) {
  h->req.header_bytes += n;
  if (h->req.header_bytes > h->lim->max_header_bytes)
    refuse(h, 431);
  return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n) {
  struct gw_h1 *h = of(p);
  bool new_field = h->last_was_value || !h->in_name;
  finish_header(h);
  if (new_field) {
    h->hname_len = 0;
    h->in_name = true;
  }
  if (h->hname_len + n < sizeof(h->hname)) {
    memcpy(h->hname + h->hname_len, at, n);
    h->hname_len += n;
  } else {
    h->hname_len = sizeof(h->hname); /* too long to be one we keep */
  }
  return count_header(h, n + (new_field ? 32 : 0));
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
  struct gw_h1 *h = of(p);
  h->in_name = false;
  if (!h->last_was_value) {
    h->last_was_value = true;
    h->cur = H_OTHER;
    if (h->hname_len < sizeof(h->hname)) {
      h->hname[h->hname_len] = 0;
      if ((h->dst = gw_req_header_field(&h->req, h->hname, h->hname_len)))
        h->cur = H_FIELD;
      else if (strcasecmp(h->hname, "expect") == 0)
        h->cur = H_EXPECT;
    }
    gw_buf_cleanup(&h->hval); /* a trailer's value may still be held (chunked: trailers end a message) */
    gw_buf_init(&h->hval, h->lim->max_header_bytes);
  }
  if (h->cur != H_OTHER && gw_buf_append(&h->hval, at, n) == GW_ERR_NOMEM)
    return -1;
  return count_header(h, n);
}

static void deliver(struct gw_h1 *h) {
  if (h->delivered)
    return;
  h->delivered = true;
  h->waiting = true;
  http_parser_pause(&h->p, 1);
  h->hooks->on_request(h->ud, &h->req);
}

static int on_headers_complete(http_parser *p) {
  struct gw_h1 *h = of(p);
  finish_header(h);
  snprintf(h->req.method, sizeof(h->req.method), "%s", http_method_str((enum http_method)p->method));
  if (p->flags & F_CONTENTLENGTH) {
    h->req.content_length = (int64_t)p->content_length;
    if (p->content_length > h->lim->max_body_bytes)
      refuse(h, 413);
  }
  if (p->http_major != 1)
    refuse(h, 400);
  if (!http_should_keep_alive(p))
    h->closing = true;
  if (h->req.early_status) {
    h->closing = true; /* the body (if any) will not be read: the connection cannot be reused */
    deliver(h);
    return 0;
  }
  if (h->req.expect_continue && h->req.content_length != 0) {
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (h->hooks->write(h->ud, cont, sizeof(cont) - 1))
      return -1;
  }
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
  struct gw_h1 *h = of(p);
  if (h->req.early_status)
    return 0;
  int rv = gw_buf_append(&h->req.body, at, n);
  if (rv == GW_ERR_TOOBIG) {
    refuse(h, 413);
    h->closing = true;
    deliver(h);
    return 0;
  }
  return rv ? -1 : 0;
}

static int on_message_complete(http_parser *p) {
  struct gw_h1 *h = of(p);
  deliver(h);
  return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

struct gw_h1 *gw_h1_new(const struct gw_limits *lim, const struct gw_h1_hooks *hooks, void *ud, struct gw_metrics *m) {
  struct gw_h1 *h = calloc(1, sizeof(*h));
  if (!h)
    return NULL;
  http_parser_init(&h->p, HTTP_REQUEST);
  h->lim = lim;
  h->hooks = hooks;
  h->ud = ud;
  h->m = m;
  gw_req_init(&h->req, lim->max_body_bytes);
  gw_buf_init(&h->hval, lim->max_header_bytes);
  return h;
}

void gw_h1_free(struct gw_h1 *h) {
  if (!h)
    return;
  if (h->in_req)
    GW_METRIC_ADD(h->m, streams_open, -1);
  gw_req_cleanup(&h->req);
  gw_buf_cleanup(&h->hval);
  free(h);
}

void gw_h1_set_peer(struct gw_h1 *h, const struct gw_identity *id, const char *addr, uint64_t conn_id) {
  h->peer = id;
  h->peer_addr = addr;
  h->conn_id = conn_id;
}

static int write_error(struct gw_h1 *h, int status, const char *msg) {
  char out[512];
  int n = snprintf(out, sizeof(out),
                   "HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %zu\r\n"
                   "connection: close\r\n\r\n%s",
                   status, gw_http_reason(status), strlen(msg), msg);
  return h->hooks->write(h->ud, out, (size_t)n);
}

int gw_h1_recv(struct gw_h1 *h, const uint8_t *data, size_t len, size_t *consumed) {
  *consumed = 0;
  if (h->waiting || h->closing)
    return GW_OK;
  size_t n = http_parser_execute(&h->p, &settings, (const char *)data, len);
  *consumed = n;
  enum http_errno e = HTTP_PARSER_ERRNO(&h->p);
  if (e == HPE_OK || e == HPE_PAUSED) {
    if (e == HPE_PAUSED && n < len && !h->waiting)
      http_parser_pause(&h->p, 0);
    return GW_OK;
  }
  /* the input is not HTTP/1.1: answer once and close */
  h->closing = true;
  int status = e == HPE_HEADER_OVERFLOW ? 431 : 400;
  char msg[200];
  snprintf(msg, sizeof(msg), "{\"status\":%d,\"error\":\"%s\",\"message\":\"%s\"}\n", status, gw_http_reason(status),
           http_errno_description(e));
  write_error(h, status, msg);
  return GW_ERR_PROTO;
}

int gw_h1_respond(struct gw_h1 *h, struct gw_req *req, struct gw_resp *resp) {
  (void)req;
  if (resp->close || h->stopping)
    h->closing = true;
  char head[1024];
  int n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\ncontent-length: %zu\r\n", resp->status,
                   gw_http_reason(resp->status), resp->body_len);
  if (resp->content_type)
    n += snprintf(head + n, sizeof(head) - (size_t)n, "content-type: %s\r\n", resp->content_type);
  for (int i = 0; i < resp->nextra && (size_t)n < sizeof(head); i++)
    n += snprintf(head + n, sizeof(head) - (size_t)n, "%s: %s\r\n", resp->extra[i].name, resp->extra[i].value);
  if (resp->location[0] && (size_t)n < sizeof(head))
    n += snprintf(head + n, sizeof(head) - (size_t)n, "location: %s\r\n", resp->location);
  if (resp->etag[0] && (size_t)n < sizeof(head))
    n += snprintf(head + n, sizeof(head) - (size_t)n, "etag: %s\r\n", resp->etag);
  if ((size_t)n < sizeof(head))
    n += snprintf(head + n, sizeof(head) - (size_t)n, "%s\r\n", h->closing ? "connection: close\r\n" : "");
  if ((size_t)n >= sizeof(head))
    return GW_ERR_TOOBIG;
  int rv = h->hooks->write(h->ud, head, (size_t)n);
  if (!rv && resp->body_len && strcmp(h->req.method, "HEAD") != 0)
    rv = h->hooks->write(h->ud, resp->body, resp->body_len);
  gw_resp_cleanup(resp);
  h->waiting = false;
  h->in_req = false;
  GW_METRIC_ADD(h->m, streams_open, -1);
  gw_req_cleanup(&h->req);
  gw_req_init(&h->req, h->lim->max_body_bytes);
  if (!h->closing)
    http_parser_pause(&h->p, 0); /* a refused request's body is never parsed as a next request */
  return rv;
}

bool gw_h1_should_close(const struct gw_h1 *h) { return h->closing && !h->waiting; }

bool gw_h1_busy(const struct gw_h1 *h) { return h->in_req; }

struct gw_req *gw_h1_pending(struct gw_h1 *h, int32_t ordinal) {
  return (h->waiting && h->req.stream_id == ordinal) ? &h->req : NULL;
}

bool gw_h1_waiting(const struct gw_h1 *h) { return h->waiting; }

uint64_t gw_h1_incomplete_since(const struct gw_h1 *h) { return (h->in_req && !h->waiting) ? h->req.start_ns : 0; }

void gw_h1_shutdown(struct gw_h1 *h) {
  h->stopping = true;
  if (!h->in_req)
    h->closing = true;
}
