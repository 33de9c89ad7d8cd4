/* libFuzzer target: the configuration parser (yajl callbacks, line/column
 * reporting, path resolution). */
#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"
#include "core/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct gw_conf c;
  if (gw_conf_defaults(&c))
    return 0;
  struct gw_buf errs;
  gw_buf_init(&errs, 1 << 16);
  gw_conf_parse(&c, "/etc/cergw/fuzz.json", (const char *)data, size, &errs);
  gw_buf_cleanup(&errs);
  gw_conf_cleanup(&c);
  return 0;
}
