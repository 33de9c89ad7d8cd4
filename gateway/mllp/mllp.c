#include "mllp/mllp.h"

#include <stdio.h>
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

int gw_mllp_url(const char *url, char *host, size_t hn, char *port, size_t pn) {
  if (strncmp(url, "mllp://", 7) != 0)
    return -1;
  const char *h = url + 7, *end;
  size_t n;
  if (*h == '[') { /* [IPv6]:port */
    end = strchr(h, ']');
    if (!end || end[1] != ':')
      return -1;
    n = (size_t)(end - h - 1);
    h++;
    end++;
  } else {
    end = strrchr(h, ':');
    if (!end)
      return -1;
    n = (size_t)(end - h);
  }
  const char *p = end + 1;
  if (n == 0 || n >= hn || !*p || strlen(p) >= pn || strspn(p, "0123456789") != strlen(p))
    return -1;
  memcpy(host, h, n);
  host[n] = 0;
  snprintf(port, pn, "%s", p);
  return 0;
}
