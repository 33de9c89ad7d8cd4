#include "core/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"
#include "core/fmt.h"

static _Atomic int log_level = GW_LOG_INFO;
static _Atomic int log_fd = 2;

#define TL_CAP      32768
#define TL_FLUSH_AT 16384
static __thread struct {
  int on;
  size_t len;
  char buf[TL_CAP];
} tl;

void gw_log_flush(void) {
  size_t off = 0;
  while (off < tl.len) {
    ssize_t w = write(atomic_load(&log_fd), tl.buf + off, tl.len - off);
    if (w <= 0)
      break; /* nothing sensible to do when the log itself fails */
    off += (size_t)w;
  }
  tl.len = 0;
}

void gw_log_buffer_thread(int on) {
  if (!on)
    gw_log_flush();
  tl.on = on;
}

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void gw_log_set_level(enum gw_log_level level) { atomic_store(&log_level, (int)level); }

enum gw_log_level gw_log_get_level(void) { return (enum gw_log_level)atomic_load(&log_level); }

void gw_log_set_fd(int fd) { atomic_store(&log_fd, fd); }

int gw_log_level_parse(const char *s, enum gw_log_level *out) {
  for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
    if (strcmp(s, level_names[i]) == 0) {
      *out = (enum gw_log_level)i;
      return GW_OK;
    }
  }
  return GW_ERR_INVAL;
}

/* Writes "ts=...Z level=L event=E " into |out| (at least 96 bytes) and
 * returns its length. The date part is formatted once per second per thread. */
static size_t line_head(char *out, enum gw_log_level level, const char *event) {
  static __thread time_t cached_sec = -1;
  static __thread char cached[32]; /* "ts=YYYY-MM-DDTHH:MM:SS." */
  static __thread size_t cached_len;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (ts.tv_sec != cached_sec) {
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    cached_len = (size_t)snprintf(cached, sizeof(cached), "ts=%04d-%02d-%02dT%02d:%02d:%02d.", tm.tm_year + 1900,
                                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    cached_sec = ts.tv_sec;
  }
  struct gw_fmt f;
  char *start = out;
  gw_fmt_init(&f, out, 96);
  gw_fmt_mem(&f, cached, cached_len);
  long ms = ts.tv_nsec / 1000000;
  char msb[4] = {(char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10), 'Z'};
  gw_fmt_mem(&f, msb, 4);
  gw_fmt_str(&f, " level=");
  gw_fmt_str(&f, level_names[level]);
  gw_fmt_str(&f, " event=");
  gw_fmt_str(&f, event);
  gw_fmt_mem(&f, " ", 1);
  return gw_fmt_len(&f, start);
}

static void emit(char *line, size_t len);

void gw_log_fields(enum gw_log_level level, const char *event, const char *fields, size_t len) {
  if (!GW_LOG_ON(level))
    return;
  char line[4096];
  size_t n = line_head(line, level, event);
  if (len > sizeof(line) - n - 1)
    len = sizeof(line) - n - 1;
  memcpy(line + n, fields, len);
  n += len;
  line[n++] = '\n';
  emit(line, n);
}

void gw_log(enum gw_log_level level, const char *event, const char *fmt, ...) {
  if (!GW_LOG_ON(level))
    return;
  char line[4096];
  size_t n = line_head(line, level, event);
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
  va_end(ap);
  size_t len = n + (m > 0 ? (size_t)m : 0);
  if (len > sizeof(line) - 2)
    len = sizeof(line) - 2; /* truncated line still ends with a newline */
  while (len > 0 && line[len - 1] == ' ')
    len--;
  line[len++] = '\n';
  emit(line, len);
}

static void emit(char *line, size_t len) {
  if (tl.on) {
    if (tl.len + len > TL_CAP)
      gw_log_flush();
    memcpy(tl.buf + tl.len, line, len);
    tl.len += len;
    if (tl.len >= TL_FLUSH_AT)
      gw_log_flush();
    return;
  }
  ssize_t w = write(atomic_load(&log_fd), line, len);
  (void)w; /* nothing sensible to do when the log itself fails */
}

const char *gw_log_quote(char *out, size_t outlen, const char *in) {
  size_t o = 0;
  if (outlen < 3) {
    if (outlen)
      out[0] = '\0';
    return out;
  }
  out[o++] = '"';
  for (const unsigned char *p = (const unsigned char *)(in ? in : ""); *p && o + 5 < outlen; p++) {
    if (*p == '"' || *p == '\\') {
      out[o++] = '\\';
      out[o++] = (char)*p;
    } else if (*p < 0x20 || *p == 0x7f) {
      o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", *p);
    } else {
      out[o++] = (char)*p;
    }
  }
  out[o++] = '"';
  out[o] = '\0';
  return out;
}

void gw_log_mask(char *s) {
  for (char *p = s; *p; p++) {
    size_t n = strspn(p, "0123456789");
    if (n >= 9)
      memset(p, '*', n);
    if (*p == '@') /* back over the local part of an e-mail address */
      for (char *q = p - 1; q >= s && *q != ' ' && *q != '"' && *q != '<' && *q != ':'; q--)
        *q = '*';
    p += n ? n - 1 : 0;
  }
}
