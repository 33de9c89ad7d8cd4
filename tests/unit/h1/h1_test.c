#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../suites.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/metrics.h"
#include "h1/h1.h"

/* A fake connection: records requests, answers each at once, collects output. */
struct fake {
  struct gw_h1 *h;
  struct gw_buf out;
  int nreq;
  char last_method[16], last_path[256];
  int last_early;
  size_t last_body;
  char *last_ctype;
};

static int fake_write(void *ud, const void *d, size_t n) {
  struct fake *f = ud;
  return gw_buf_append(&f->out, d, n);
}

static void fake_request(void *ud, struct gw_req *req) {
  struct fake *f = ud;
  f->nreq++;
  snprintf(f->last_method, sizeof(f->last_method), "%s", req->method);
  snprintf(f->last_path, sizeof(f->last_path), "%s", req->path ? req->path : "");
  f->last_early = req->early_status;
  f->last_body = req->body.len;
  free(f->last_ctype);
  f->last_ctype = req->content_type ? strdup(req->content_type) : NULL;
  struct gw_resp resp = {0};
  gw_resp_set(&resp, req->early_status ? req->early_status : 200, "text/plain", "ok");
  gw_h1_respond(f->h, req, &resp);
}

static const struct gw_h1_hooks hooks = {.on_request = fake_request, .write = fake_write};
static struct gw_limits lim = {.max_body_bytes = 100, .max_header_bytes = 512, .max_url_bytes = 64};
static struct gw_metrics *m;

static void fake_init(struct fake *f) {
  memset(f, 0, sizeof(*f));
  if (!m)
    m = gw_metrics_slot();
  f->h = gw_h1_new(&lim, &hooks, f, m);
  gw_buf_init(&f->out, 1 << 20);
}
static void fake_cleanup(struct fake *f) {
  gw_h1_free(f->h);
  gw_buf_cleanup(&f->out);
  free(f->last_ctype);
}
static int feed(struct fake *f, const char *s) {
  size_t consumed;
  return gw_h1_recv(f->h, (const uint8_t *)s, strlen(s), &consumed);
}
static const char *out(struct fake *f) { return f->out.data ? (const char *)f->out.data : ""; }

static void test_get_keepalive(void) {
  struct fake f;
  fake_init(&f);
  CU_ASSERT_EQUAL(feed(&f, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"), GW_OK);
  CU_ASSERT_EQUAL(f.nreq, 1);
  CU_ASSERT_STRING_EQUAL(f.last_method, "GET");
  CU_ASSERT_STRING_EQUAL(f.last_path, "/healthz");
  CU_ASSERT_PTR_NOT_NULL(strstr(out(&f), "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"));
  CU_ASSERT_FALSE(gw_h1_should_close(f.h));
  CU_ASSERT_FALSE(gw_h1_busy(f.h));
  fake_cleanup(&f);
}

static void test_pipelined_and_split(void) {
  struct fake f;
  fake_init(&f);
  const char *two = "POST /a HTTP/1.1\r\nHost: a\r\nContent-Type: text/xml\r\nContent-Length: 5\r\n\r\nhello"
                    "GET /b HTTP/1.1\r\nHost: a\r\n\r\n";
  /* byte by byte: the parser must not care how input is split */
  for (const char *p = two; *p; p++) {
    size_t c;
    CU_ASSERT_EQUAL_FATAL(gw_h1_recv(f.h, (const uint8_t *)p, 1, &c), GW_OK);
  }
  CU_ASSERT_EQUAL(f.nreq, 2);
  CU_ASSERT_STRING_EQUAL(f.last_path, "/b");
  const char *first = strstr(out(&f), "HTTP/1.1 200");
  CU_ASSERT_PTR_NOT_NULL_FATAL(first);
  CU_ASSERT_PTR_NOT_NULL(strstr(first + 1, "HTTP/1.1 200"));
  fake_cleanup(&f);
}

static void test_chunked_body_and_ctype(void) {
  struct fake f;
  fake_init(&f);
  CU_ASSERT_EQUAL(feed(&f, "POST /x HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"),
                  GW_OK);
  CU_ASSERT_EQUAL(f.nreq, 1);
  CU_ASSERT_EQUAL(f.last_body, 5);
  CU_ASSERT_STRING_EQUAL(f.last_ctype, "application/json");
  fake_cleanup(&f);
}

static void test_body_limits(void) {
  struct fake f;
  fake_init(&f);
  CU_ASSERT_EQUAL(feed(&f, "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n"), GW_OK);
  CU_ASSERT_EQUAL(f.last_early, 413);
  CU_ASSERT_PTR_NOT_NULL(strstr(out(&f), "HTTP/1.1 413 Content Too Large\r\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(out(&f), "connection: close\r\n"));
  CU_ASSERT_TRUE(gw_h1_should_close(f.h));
  /* more bytes of the refused body are not parsed as a new request */
  CU_ASSERT_EQUAL(feed(&f, "GET /smuggled HTTP/1.1\r\n\r\n"), GW_OK);
  CU_ASSERT_EQUAL(f.nreq, 1);
  fake_cleanup(&f);

  fake_init(&f);
  char chunk[200];
  snprintf(chunk, sizeof(chunk), "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n70\r\n%0112d\r\n",
           0);
  CU_ASSERT_EQUAL(feed(&f, chunk), GW_OK);
  CU_ASSERT_EQUAL(f.last_early, 413);
  fake_cleanup(&f);
}

static void test_header_and_url_limits(void) {
  struct fake f;
  fake_init(&f);
  char req[1200];
  snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: a\r\nX-Big: %0600d\r\n\r\n", 0);
  CU_ASSERT_EQUAL(feed(&f, req), GW_OK);
  CU_ASSERT_EQUAL(f.last_early, 431);
  fake_cleanup(&f);
  fake_init(&f);
  snprintf(req, sizeof(req), "GET /%070d HTTP/1.1\r\nHost: a\r\n\r\n", 0);
  CU_ASSERT_EQUAL(feed(&f, req), GW_OK);
  CU_ASSERT_EQUAL(f.last_early, 414);
  fake_cleanup(&f);
}

static void test_garbage_and_close(void) {
  struct fake f;
  fake_init(&f);
  CU_ASSERT_EQUAL(feed(&f, "\x16\x03\x01garbage\r\n\r\n"), GW_ERR_PROTO);
  CU_ASSERT_EQUAL(f.nreq, 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(out(&f), "HTTP/1.1 400 Bad Request\r\n"));
  CU_ASSERT_TRUE(gw_h1_should_close(f.h));
  fake_cleanup(&f);
  fake_init(&f);
  CU_ASSERT_EQUAL(feed(&f, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"), GW_OK);
  CU_ASSERT_TRUE(gw_h1_should_close(f.h));
  CU_ASSERT_PTR_NOT_NULL(strstr(out(&f), "connection: close\r\n"));
  fake_cleanup(&f);
  fake_init(&f);
  CU_ASSERT_EQUAL(feed(&f, "GET / HTTP/1.0\r\n\r\n"), GW_OK);
  CU_ASSERT_TRUE(gw_h1_should_close(f.h)); /* HTTP/1.0 without keep-alive */
  fake_cleanup(&f);
}

static void test_expect_continue_and_shutdown(void) {
  struct fake f;
  fake_init(&f);
  CU_ASSERT_EQUAL(feed(&f, "POST /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"), GW_OK);
  CU_ASSERT_PTR_NOT_NULL(strstr(out(&f), "HTTP/1.1 100 Continue\r\n\r\n"));
  CU_ASSERT_TRUE(gw_h1_busy(f.h));
  CU_ASSERT(gw_h1_incomplete_since(f.h) > 0);
  gw_h1_shutdown(f.h); /* in flight: finishes, then closes */
  CU_ASSERT_FALSE(gw_h1_should_close(f.h));
  CU_ASSERT_EQUAL(feed(&f, "ok"), GW_OK);
  CU_ASSERT_EQUAL(f.nreq, 1);
  CU_ASSERT_TRUE(gw_h1_should_close(f.h));
  fake_cleanup(&f);
}

int gw_test_h1_suite(void) {
  CU_pSuite s = CU_add_suite("h1/h1", NULL, NULL);
  return !s || GW_ADD(s, test_get_keepalive) || GW_ADD(s, test_pipelined_and_split) ||
         GW_ADD(s, test_chunked_body_and_ctype) || GW_ADD(s, test_body_limits) ||
         GW_ADD(s, test_header_and_url_limits) || GW_ADD(s, test_garbage_and_close) ||
         GW_ADD(s, test_expect_continue_and_shutdown);
}
