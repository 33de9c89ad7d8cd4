#include "http/router.h"

#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "core/err.h"
#include "core/fmt.h"
#include "core/metrics.h"
#include "core/version.h"

static uint64_t start_ns;

void gw_router_init(void) { start_ns = gw_now_ns(); }

static double uptime_s(void) { return (double)(gw_now_ns() - start_ns) / 1e9; }

static void method_not_allowed(struct gw_resp *resp, const char *allow) {
  gw_router_error(resp, 405, "method not allowed on this resource");
  resp->extra[resp->nextra].name = "allow";
  resp->extra[resp->nextra++].value = allow;
}

void gw_router_error(struct gw_resp *resp, int status, const char *message) {
  char body[512];
  /* |message| is one of our own static strings: no escaping needed */
  snprintf(body, sizeof(body), "{\"status\":%d,\"error\":\"%s\",\"message\":\"%s\"}\n", status, gw_http_reason(status),
           message);
  if (gw_resp_set(resp, status, "application/json", body)) {
    resp->status = status;
    resp->content_type = NULL;
  }
}

/* The liveness answer; the cheapest request path, so no printf here. */
static void healthz(struct gw_resp *resp) {
  char body[160];
  uint64_t ms = (gw_now_ns() - start_ns) / 1000000u;
  char frac[4] = {(char)('0' + ms % 1000 / 100), (char)('0' + ms % 100 / 10), (char)('0' + ms % 10), 0};
  struct gw_fmt f;
  gw_fmt_init(&f, body, sizeof(body));
  gw_fmt_str(&f, "{\"status\":\"ok\",\"version\":\"" GW_VERSION "\",\"uptime_seconds\":");
  gw_fmt_u64(&f, ms / 1000);
  gw_fmt_mem(&f, ".", 1);
  gw_fmt_str(&f, frac);
  gw_fmt_str(&f, "}\n");
  if (gw_resp_set(resp, 200, "application/json", body))
    resp->status = 500;
}

static void metrics(struct gw_resp *resp) {
  struct gw_buf b;
  gw_buf_init(&b, 4u << 20);
  if (gw_metrics_render(&b, uptime_s())) {
    gw_buf_cleanup(&b);
    gw_router_error(resp, 500, "metrics exposition failed");
    return;
  }
  resp->status = 200;
  resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
  resp->body = gw_buf_take(&b, &resp->body_len);
}

/* The path without its query string must equal |p|. */
static int path_is(const struct gw_req *req, const char *p) {
  size_t n = strlen(p);
  return strncmp(req->path, p, n) == 0 && (req->path[n] == 0 || req->path[n] == '?');
}

void gw_router_handle(struct gw_req *req, struct gw_resp *resp) {
  int get = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
  if (req->early_status) {
    const char *msg = "request refused";
    switch (req->early_status) {
    case 400:
      msg = "malformed request";
      break;
    case 408:
      msg = "request not received in time";
      break;
    case 413:
      msg = "request body exceeds limits.max_body_bytes";
      break;
    case 414:
      msg = "request target exceeds limits.max_url_bytes";
      break;
    case 431:
      msg = "request header fields exceed limits.max_header_bytes";
      break;
    }
    gw_router_error(resp, req->early_status, msg);
    return;
  }
  if (!req->path || req->path[0] != '/') {
    gw_router_error(resp, 400, "request target must be an absolute path");
    return;
  }
  if (path_is(req, "/healthz")) {
    if (get)
      healthz(resp);
    else
      method_not_allowed(resp, "GET, HEAD");
    return;
  }
  if (path_is(req, "/metrics")) {
    if (get)
      metrics(resp);
    else
      method_not_allowed(resp, "GET, HEAD");
    return;
  }
  gw_router_error(resp, 404, "no such resource");
}
