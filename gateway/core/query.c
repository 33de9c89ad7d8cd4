#include "core/query.h"

#include <string.h>

static int hexval(char c) {
  return c >= '0' && c <= '9'   ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                : -1;
}

void gw_url_unescape(const char *s, size_t n, char *out, size_t on) {
  size_t o = 0;
  for (size_t i = 0; i < n && o + 1 < on; i++) {
    if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
      out[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
      i += 2;
    } else {
      out[o++] = s[i] == '+' ? ' ' : s[i];
    }
  }
  if (on)
    out[o] = 0;
}

const char *gw_query_param(const char *target, const char *name, char *out, size_t n) {
  if (n)
    out[0] = 0;
  size_t nl = strlen(name);
  for (const char *p = strchr(target, '?'); p && *p; p = strchr(p + 1, '&')) {
    if (strncmp(p + 1, name, nl) || p[1 + nl] != '=')
      continue;
    const char *v = p + 2 + nl;
    gw_url_unescape(v, strcspn(v, "&#"), out, n);
    break;
  }
  return out;
}
