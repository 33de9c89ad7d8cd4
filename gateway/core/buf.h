/* A growable byte buffer with a hard ceiling (curl's dynbuf "toobig" idea). */
#ifndef GW_CORE_BUF_H
#define GW_CORE_BUF_H

#include <stddef.h>
#include <stdint.h>

struct gw_buf {
  uint8_t *data; /* owned; NUL-terminated when len > 0 for convenience */
  size_t len;
  size_t cap;
  size_t max; /* appending past |max| bytes fails with GW_ERR_TOOBIG */
};

/* Initialises an empty buffer that may grow to |max| bytes. Allocates nothing. */
void gw_buf_init(struct gw_buf *b, size_t max);
/* Releases the storage; the buffer is empty and reusable afterwards. */
void gw_buf_cleanup(struct gw_buf *b);
/* Appends |n| bytes. Returns 0, GW_ERR_TOOBIG or GW_ERR_NOMEM; on error the
 * buffer is unchanged. */
int gw_buf_append(struct gw_buf *b, const void *p, size_t n);
/* Appends printf-formatted text under the same rules. */
int gw_buf_printf(struct gw_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the storage to the caller (free() it); the buffer becomes empty. */
uint8_t *gw_buf_take(struct gw_buf *b, size_t *len);

#endif
