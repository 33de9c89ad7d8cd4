/* Drives gw_h2 with a real nghttp2 client session, all in memory. */
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../suites.h"
#include "core/err.h"
#include "core/metrics.h"
#include "h2/h2.h"

struct pair {
  nghttp2_session *cli;
  struct gw_h2 *srv;
  int nreq, last_early, nresp;
  int status[64];
  size_t body_bytes;
  int goaway;
  uint32_t goaway_code;
  int srv_rv;
  int answer; /* 0: answer at once; 1: keep requests pending */
  struct gw_req *pending;
};

static struct gw_limits lim = {.max_body_bytes = 1000,
                               .max_header_bytes = 1024,
                               .max_url_bytes = 256,
                               .max_streams = 10,
                               .max_resets_per_s = 50,
                               .max_control_per_s = 50,
                               .max_conn_buffer = 3000,
                               .max_buffered = 1u << 30};
static struct gw_metrics *m;

static void srv_request(void *ud, struct gw_req *req) {
  struct pair *p = ud;
  p->nreq++;
  p->last_early = req->early_status;
  if (p->answer == 1 && !req->early_status) {
    p->pending = req;
    return;
  }
  struct gw_resp resp = {0};
  gw_resp_set(&resp, req->early_status ? req->early_status : 200, "text/plain", "hello");
  CU_ASSERT_EQUAL(gw_h2_respond(p->srv, req, &resp), GW_OK);
}

static const struct gw_h2_hooks hooks = {.on_request = srv_request};

static int cli_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *n, size_t nl, const uint8_t *v,
                      size_t vl, uint8_t fl, void *ud) {
  (void)s, (void)f, (void)fl;
  struct pair *p = ud;
  if (nl == 7 && memcmp(n, ":status", 7) == 0 && vl == 3 && p->nresp < 64)
    p->status[p->nresp++] = atoi((const char *)v);
  return 0;
}
static int cli_data(nghttp2_session *s, uint8_t fl, int32_t id, const uint8_t *d, size_t n, void *ud) {
  (void)s, (void)fl, (void)id, (void)d;
  ((struct pair *)ud)->body_bytes += n;
  return 0;
}
static int cli_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud) {
  (void)s;
  struct pair *p = ud;
  if (f->hd.type == NGHTTP2_GOAWAY) {
    p->goaway++;
    p->goaway_code = f->goaway.error_code;
  }
  return 0;
}

static void pair_init(struct pair *p, int answer) {
  memset(p, 0, sizeof(*p));
  p->answer = answer;
  if (!m)
    m = gw_metrics_slot();
  p->srv = gw_h2_new(&lim, &hooks, p, m);
  CU_ASSERT_PTR_NOT_NULL_FATAL(p->srv);
  nghttp2_session_callbacks *cb;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_on_header_callback(cb, cli_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, cli_data);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, cli_frame);
  nghttp2_session_client_new(&p->cli, cb, p);
  nghttp2_session_callbacks_del(cb);
  nghttp2_submit_settings(p->cli, NGHTTP2_FLAG_NONE, NULL, 0);
}

static void pair_free(struct pair *p) {
  nghttp2_session_del(p->cli);
  gw_h2_free(p->srv);
}

/* Moves bytes both ways until neither side has anything to say. */
static int pump(struct pair *p) {
  for (int round = 0; round < 1000; round++) {
    size_t moved = 0;
    const uint8_t *d;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(p->cli, &d)) > 0) {
      moved += (size_t)n;
      int rv = gw_h2_recv(p->srv, d, (size_t)n);
      if (rv && !p->srv_rv)
        p->srv_rv = rv;
    }
    long k;
    while ((k = gw_h2_send(p->srv, &d)) > 0) {
      moved += (size_t)k;
      nghttp2_session_mem_recv(p->cli, d, (size_t)k);
    }
    if (!moved)
      break;
  }
  return p->srv_rv;
}

static int32_t get(struct pair *p, const char *path, const char *extra_name, const char *extra_value) {
  nghttp2_nv nv[5] = {{(uint8_t *)":method", (uint8_t *)"GET", 7, 3, 0},
                      {(uint8_t *)":scheme", (uint8_t *)"https", 7, 5, 0},
                      {(uint8_t *)":authority", (uint8_t *)"localhost", 10, 9, 0},
                      {(uint8_t *)":path", (uint8_t *)path, 5, strlen(path), 0}};
  size_t n = 4;
  if (extra_name)
    nv[n++] = (nghttp2_nv){(uint8_t *)extra_name, (uint8_t *)extra_value, strlen(extra_name), strlen(extra_value), 0};
  return nghttp2_submit_request(p->cli, NULL, nv, n, NULL, NULL);
}

struct body_src {
  size_t left;
};
static ssize_t body_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *fl,
                         nghttp2_data_source *src, void *ud) {
  (void)s, (void)id, (void)ud;
  struct body_src *b = src->ptr;
  size_t n = b->left < len ? b->left : len;
  memset(buf, 'x', n);
  b->left -= n;
  if (!b->left)
    *fl |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t)n;
}

static int32_t post(struct pair *p, struct body_src *b, const char *clen) {
  nghttp2_nv nv[5] = {{(uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0},
                      {(uint8_t *)":scheme", (uint8_t *)"https", 7, 5, 0},
                      {(uint8_t *)":authority", (uint8_t *)"localhost", 10, 9, 0},
                      {(uint8_t *)":path", (uint8_t *)"/up", 5, 3, 0}};
  size_t n = 4;
  if (clen)
    nv[n++] = (nghttp2_nv){(uint8_t *)"content-length", (uint8_t *)clen, 14, strlen(clen), 0};
  nghttp2_data_provider prd = {.source.ptr = b, .read_callback = body_read};
  return nghttp2_submit_request(p->cli, NULL, nv, n, &prd, NULL);
}

static void test_requests(void) {
  struct pair p;
  pair_init(&p, 0);
  for (int i = 0; i < 3; i++)
    CU_ASSERT(get(&p, "/healthz", NULL, NULL) > 0);
  CU_ASSERT_EQUAL(pump(&p), GW_OK);
  CU_ASSERT_EQUAL(p.nreq, 3);
  CU_ASSERT_EQUAL(p.nresp, 3);
  CU_ASSERT_EQUAL(p.status[2], 200);
  CU_ASSERT_EQUAL(p.body_bytes, 15);
  CU_ASSERT_EQUAL(gw_h2_open_streams(p.srv), 0);
  pair_free(&p);
}

static void test_limits(void) {
  struct pair p;
  pair_init(&p, 0);
  char big[1100];
  memset(big, 'h', sizeof(big) - 1);
  big[sizeof(big) - 1] = 0;
  get(&p, "/healthz", "x-big", big);
  pump(&p);
  CU_ASSERT_EQUAL(p.last_early, 431);
  CU_ASSERT_EQUAL(p.status[0], 431);

  struct body_src b1 = {.left = 5000};
  post(&p, &b1, "5000");
  pump(&p);
  CU_ASSERT_EQUAL(p.last_early, 413);
  CU_ASSERT_EQUAL(p.status[1], 413);

  struct body_src b2 = {.left = 5000};
  post(&p, &b2, NULL); /* no content-length: refused once the body passes the limit */
  pump(&p);
  CU_ASSERT_EQUAL(p.last_early, 413);
  CU_ASSERT_EQUAL(p.status[2], 413);

  struct body_src b3 = {.left = 10};
  post(&p, &b3, "10");
  pump(&p);
  CU_ASSERT_EQUAL(p.last_early, 0);
  CU_ASSERT_EQUAL(p.status[3], 200);
  CU_ASSERT_EQUAL(p.srv_rv, GW_OK); /* none of this is fatal for the connection */
  pair_free(&p);
}

/* A body that never ends: |left| bytes, then the stream stays open (no END_STREAM). */
static ssize_t endless_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *fl,
                            nghttp2_data_source *src, void *ud) {
  (void)s, (void)id, (void)ud, (void)fl;
  struct body_src *b = src->ptr;
  if (!b->left)
    return NGHTTP2_ERR_DEFERRED;
  size_t n = b->left < len ? b->left : len;
  memset(buf, 'x', n);
  b->left -= n;
  return (ssize_t)n;
}

static int refused_streams;
static int cli_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud) {
  (void)s, (void)id, (void)ud;
  refused_streams += code == NGHTTP2_REFUSED_STREAM;
  return 0;
}

/* Streams that send bodies without ever ending them: past the connection's budget (3,000 bytes here) the
 * next is refused with REFUSED_STREAM instead of buffered, and the connection lives on. */
static void test_memory_budget(void) {
  struct pair p;
  pair_init(&p, 0);
  nghttp2_session_del(p.cli); /* a client that also counts the streams refused */
  nghttp2_session_callbacks *cb;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_on_header_callback(cb, cli_header);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, cli_close);
  nghttp2_session_client_new(&p.cli, cb, &p);
  nghttp2_session_callbacks_del(cb);
  nghttp2_submit_settings(p.cli, NGHTTP2_FLAG_NONE, NULL, 0);
  refused_streams = 0;
  struct body_src b[5];
  nghttp2_nv nv[4] = {{(uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0},
                      {(uint8_t *)":scheme", (uint8_t *)"https", 7, 5, 0},
                      {(uint8_t *)":authority", (uint8_t *)"localhost", 10, 9, 0},
                      {(uint8_t *)":path", (uint8_t *)"/up", 5, 3, 0}};
  for (int i = 0; i < 5; i++) {
    b[i].left = 900;
    nghttp2_data_provider prd = {.source.ptr = &b[i], .read_callback = endless_read};
    CU_ASSERT(nghttp2_submit_request(p.cli, NULL, nv, 4, &prd, NULL) > 0);
  }
  CU_ASSERT_EQUAL(pump(&p), GW_OK);
  CU_ASSERT_EQUAL(refused_streams, 2); /* 3 x 900 fit in 3,000; the 4th and 5th do not */
  CU_ASSERT_EQUAL(p.nreq, 0);          /* none complete, none refused stream handed over */
  CU_ASSERT_EQUAL(gw_h2_open_streams(p.srv), 3);
  CU_ASSERT_EQUAL(p.srv_rv, GW_OK);
  CU_ASSERT(get(&p, "/healthz", NULL, NULL) > 0); /* the connection still serves */
  pump(&p);
  CU_ASSERT_EQUAL(p.nresp, 1);
  pair_free(&p);
}

static void test_rapid_reset(void) {
  struct pair p;
  pair_init(&p, 1);
  pump(&p);
  for (int i = 0; i < 200 && !p.srv_rv; i++) {
    int32_t id = get(&p, "/healthz", NULL, NULL);
    pump(&p);
    nghttp2_submit_rst_stream(p.cli, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    pump(&p);
  }
  CU_ASSERT_EQUAL(p.srv_rv, GW_ERR_CALM);
  CU_ASSERT_EQUAL(gw_h2_calm_reason(p.srv), 1);
  CU_ASSERT_EQUAL(p.goaway_code, NGHTTP2_ENHANCE_YOUR_CALM);
  pair_free(&p);
}

static void test_ping_flood(void) {
  struct pair p;
  pair_init(&p, 0);
  uint8_t opaque[8] = {0};
  for (int i = 0; i < 100; i++)
    nghttp2_submit_ping(p.cli, NGHTTP2_FLAG_NONE, opaque);
  CU_ASSERT_EQUAL(pump(&p), GW_ERR_CALM);
  CU_ASSERT_EQUAL(gw_h2_calm_reason(p.srv), 2);
  CU_ASSERT_EQUAL(p.goaway, 1);
  pair_free(&p);
}

static void test_garbage_preface(void) {
  if (!m)
    m = gw_metrics_slot();
  struct pair dummy;
  struct gw_h2 *h = gw_h2_new(&lim, &hooks, &dummy, m);
  static const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  CU_ASSERT_EQUAL(gw_h2_recv(h, (const uint8_t *)junk, sizeof(junk) - 1), GW_ERR_PROTO);
  gw_h2_free(h);
}

static void test_graceful_shutdown(void) {
  struct pair p;
  pair_init(&p, 0);
  /* a POST whose body is still coming when the shutdown starts */
  nghttp2_nv nv[4] = {{(uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0},
                      {(uint8_t *)":scheme", (uint8_t *)"https", 7, 5, 0},
                      {(uint8_t *)":authority", (uint8_t *)"localhost", 10, 9, 0},
                      {(uint8_t *)":path", (uint8_t *)"/up", 5, 3, 0}};
  int32_t id = nghttp2_submit_headers(p.cli, NGHTTP2_FLAG_NONE, -1, NULL, nv, 4, NULL);
  pump(&p);
  CU_ASSERT(gw_h2_oldest_incomplete(p.srv) > 0);
  gw_h2_shutdown(p.srv);
  pump(&p);
  CU_ASSERT_EQUAL(p.goaway, 1);
  CU_ASSERT_EQUAL(p.goaway_code, NGHTTP2_NO_ERROR);
  struct body_src b = {.left = 3};
  nghttp2_data_provider prd = {.source.ptr = &b, .read_callback = body_read};
  nghttp2_submit_data(p.cli, NGHTTP2_FLAG_END_STREAM, id, &prd);
  pump(&p);
  CU_ASSERT_EQUAL(p.nresp, 1);
  CU_ASSERT_EQUAL(p.status[0], 200);
  CU_ASSERT_EQUAL(gw_h2_open_streams(p.srv), 0);
  CU_ASSERT_EQUAL(gw_h2_oldest_incomplete(p.srv), 0);
  pair_free(&p);
}

int gw_test_h2_suite(void) {
  CU_pSuite s = CU_add_suite("h2/h2", NULL, NULL);
  return !s || GW_ADD(s, test_requests) || GW_ADD(s, test_limits) || GW_ADD(s, test_memory_budget) ||
         GW_ADD(s, test_rapid_reset) || GW_ADD(s, test_ping_flood) || GW_ADD(s, test_garbage_preface) ||
         GW_ADD(s, test_graceful_shutdown);
}
