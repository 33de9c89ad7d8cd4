/* A bounded text appender for hot paths (the access log, response heads),
 * where printf's parsing shows up in profiles. Never overflows: text past
 * the end is dropped and |trunc| is set. */
#ifndef GW_CORE_FMT_H
#define GW_CORE_FMT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct gw_fmt {
  char *p, *end; /* end points at the last byte, kept for the NUL */
  int trunc;
};

static inline void gw_fmt_init(struct gw_fmt *f, char *buf, size_t size) {
  f->p = buf;
  f->end = buf + size - 1;
  f->trunc = 0;
  *f->p = 0;
}

static inline void gw_fmt_mem(struct gw_fmt *f, const char *s, size_t n) {
  size_t room = (size_t)(f->end - f->p);
  if (n > room) {
    n = room;
    f->trunc = 1;
  }
  memcpy(f->p, s, n);
  f->p += n;
  *f->p = 0;
}

static inline void gw_fmt_str(struct gw_fmt *f, const char *s) { gw_fmt_mem(f, s, strlen(s)); }

static inline void gw_fmt_u64(struct gw_fmt *f, uint64_t v) {
  char tmp[24];
  char *q = tmp + sizeof(tmp);
  do {
    *--q = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  gw_fmt_mem(f, q, (size_t)(tmp + sizeof(tmp) - q));
}

/* Appends |s| in double quotes; '"', '\\' and control bytes are escaped. */
static inline void gw_fmt_quoted(struct gw_fmt *f, const char *s) {
  static const char hex[] = "0123456789abcdef";
  gw_fmt_mem(f, "\"", 1);
  for (const unsigned char *q = (const unsigned char *)(s ? s : ""); *q; q++) {
    if (*q == '"' || *q == '\\') {
      char e[2] = {'\\', (char)*q};
      gw_fmt_mem(f, e, 2);
    } else if (*q < 0x20 || *q == 0x7f) {
      char e[4] = {'\\', 'x', hex[*q >> 4], hex[*q & 15]};
      gw_fmt_mem(f, e, 4);
    } else {
      gw_fmt_mem(f, (const char *)q, 1);
    }
  }
  gw_fmt_mem(f, "\"", 1);
}

static inline size_t gw_fmt_len(const struct gw_fmt *f, const char *buf) { return (size_t)(f->p - buf); }

#endif
