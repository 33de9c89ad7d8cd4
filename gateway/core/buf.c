#include "core/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

void gw_buf_init(struct gw_buf *b, size_t max) {
  b->data = NULL;
  b->len = b->cap = 0;
  b->max = max;
}

void gw_buf_cleanup(struct gw_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

static int reserve(struct gw_buf *b, size_t extra) {
  if (extra > b->max - b->len || b->len > b->max)
    return GW_ERR_TOOBIG;
  size_t need = b->len + extra + 1; /* room for the terminating NUL */
  if (need <= b->cap)
    return GW_OK;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need)
    cap *= 2;
  if (cap > b->max + 1)
    cap = b->max + 1;
  uint8_t *p = realloc(b->data, cap);
  if (!p)
    return GW_ERR_NOMEM;
  b->data = p;
  b->cap = cap;
  return GW_OK;
}

int gw_buf_append(struct gw_buf *b, const void *p, size_t n) {
  int rv = reserve(b, n);
  if (rv)
    return rv;
  if (n)
    memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = 0;
  return GW_OK;
}

int gw_buf_printf(struct gw_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0)
    return GW_ERR_INVAL;
  int rv = reserve(b, (size_t)n);
  if (rv)
    return rv;
  va_start(ap, fmt);
  vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return GW_OK;
}

uint8_t *gw_buf_take(struct gw_buf *b, size_t *len) {
  uint8_t *p = b->data;
  if (len)
    *len = b->len;
  b->data = NULL;
  b->len = b->cap = 0;
  return p;
}
