#include "mllp/mllp.h"

#include <string.h>

enum gw_mllp_result gw_mllp_next(const uint8_t *buf, size_t len, size_t *start, size_t *mlen, size_t *consumed) {
  size_t skip = 0;
  while (skip < len && (buf[skip] == '\r' || buf[skip] == '\n'))
    skip++;
  *consumed = skip;
  *start = *mlen = 0;
  if (skip == len)
    return GW_MLLP_MORE;
  if (buf[skip] != GW_MLLP_SB)
    return GW_MLLP_BAD;
  /* the end marker: FS immediately followed by CR */
  const uint8_t *p = buf + skip + 1, *end = buf + len;
  while (p < end) {
    const uint8_t *fs = memchr(p, GW_MLLP_EB, (size_t)(end - p));
    if (!fs || fs + 1 >= end)
      return GW_MLLP_MORE;
    if (fs[1] == GW_MLLP_CR) {
      *start = skip + 1;
      *mlen = (size_t)(fs - (buf + skip + 1));
      *consumed = (size_t)(fs + 2 - buf);
      return GW_MLLP_FRAME;
    }
    p = fs + 1;
  }
  return GW_MLLP_MORE;
}
