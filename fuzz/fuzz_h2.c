/* libFuzzer target: the HTTP/2 server session (gw_h2 over nghttp2) fed with
 * arbitrary frames after a valid client preface, answering every request. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/metrics.h"
#include "h2/h2.h"

static struct gw_h2 *cur;

static void rq(void *ud, struct gw_req *req) {
  (void)ud;
  struct gw_resp resp = {0};
  gw_resp_set(&resp, req->early_status ? req->early_status : 200, "text/plain", "hello");
  gw_h2_respond(cur, req, &resp);
}
static const struct gw_h2_hooks hooks = {.on_request = rq};
static const struct gw_limits lim = {.max_body_bytes = 4096,
                                     .max_header_bytes = 2048,
                                     .max_url_bytes = 512,
                                     .max_streams = 16,
                                     .max_resets_per_s = 100,
                                     .max_control_per_s = 100};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static struct gw_metrics *m;
  if (!m)
    m = gw_metrics_slot();
  cur = gw_h2_new(&lim, &hooks, NULL, m);
  static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  int rv = gw_h2_recv(cur, (const uint8_t *)preface, sizeof(preface) - 1);
  size_t off = 0;
  while (!rv && off < size) {
    size_t n = size - off < 512 ? size - off : 512;
    rv = gw_h2_recv(cur, data + off, n);
    off += n;
    const uint8_t *out;
    long k;
    size_t total = 0;
    while ((k = gw_h2_send(cur, &out)) > 0 && total < (1u << 20))
      total += (size_t)k;
  }
  gw_h2_free(cur);
  return 0;
}
