/* libFuzzer target: HTTP/1.1 request parsing (gw_h1 over http-parser) with
 * the limits the gateway uses, answering every request at once. */
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/metrics.h"
#include "h1/h1.h"

static struct gw_h1 *cur;
static size_t out_bytes;

static int w(void *ud, const void *d, size_t n) {
  (void)ud, (void)d;
  out_bytes += n;
  return 0;
}
static void rq(void *ud, struct gw_req *req) {
  (void)ud;
  struct gw_resp resp = {0};
  gw_resp_set(&resp, req->early_status ? req->early_status : 200, "text/plain", "ok");
  gw_h1_respond(cur, req, &resp);
}
static const struct gw_h1_hooks hooks = {rq, w};
static const struct gw_limits lim = {.max_body_bytes = 4096, .max_header_bytes = 2048, .max_url_bytes = 512};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static struct gw_metrics *m;
  if (!m)
    m = gw_metrics_slot();
  cur = gw_h1_new(&lim, &hooks, NULL, m);
  /* feed in pieces whose sizes come from the input itself */
  size_t off = 0;
  while (off < size) {
    size_t n = 1 + data[off] % 64;
    if (n > size - off)
      n = size - off;
    size_t consumed;
    if (gw_h1_recv(cur, data + off, n, &consumed) || gw_h1_should_close(cur))
      break;
    off += n;
  }
  gw_h1_free(cur);
  return 0;
}
