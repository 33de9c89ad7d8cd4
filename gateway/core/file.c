#include "core/file.h"

#include <stdio.h>
#include <stdlib.h>

char *gw_file_read(const char *path, size_t max, size_t *len, const char **err) {
  const char *e = NULL;
  char *buf = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) {
    e = "cannot open";
    goto out;
  }
  size_t cap = 4096, n = 0;
  buf = malloc(cap + 1);
  while (buf) {
    n += fread(buf + n, 1, cap - n, f);
    if (ferror(f)) {
      e = "read error";
      break;
    }
    if (n < cap)
      break; /* end of file */
    if (cap > max) {
      e = "larger than the limit";
      break;
    }
    cap = cap * 2 > max + 1 ? max + 1 : cap * 2;
    char *nb = realloc(buf, cap + 1);
    if (!nb)
      free(buf);
    buf = nb;
  }
  fclose(f);
  if (!buf && !e)
    e = "out of memory";
  if (!e && n > max)
    e = "larger than the limit";
  if (e) {
    free(buf);
    buf = NULL;
  } else {
    buf[n] = 0;
    *len = n;
  }
out:
  if (err)
    *err = e;
  return buf;
}

char *gw_file_read_conf(const char *path, size_t max, size_t *len, struct gw_buf *errs) {
  const char *why = NULL;
  char *text = gw_file_read(path, max, len, &why);
  if (!text)
    gw_buf_printf(errs, "%s: %s\n", path, why);
  return text;
}
