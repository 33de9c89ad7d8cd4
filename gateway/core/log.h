/* Structured log lines: one line per event, "ts=... level=... event=... key=value".
 * Thread-safe: each line is formatted into a stack buffer and written with one
 * write(2) call, so lines from different workers never interleave. */
#ifndef GW_CORE_LOG_H
#define GW_CORE_LOG_H

#include <stddef.h>

enum gw_log_level { GW_LOG_DEBUG = 0, GW_LOG_INFO, GW_LOG_WARN, GW_LOG_ERROR };

/* Sets the minimum level written; lines below it cost one comparison. */
void gw_log_set_level(enum gw_log_level level);
enum gw_log_level gw_log_get_level(void);
/* Parses "debug"/"info"/"warn"/"error"; returns 0 or GW_ERR_INVAL. */
int gw_log_level_parse(const char *s, enum gw_log_level *out);
/* Redirects log output to |fd| (default 2). */
void gw_log_set_fd(int fd);

/* Writes one line. |event| is a short token; |fmt| continues with key=value
 * pairs separated by spaces. Values that may hold spaces or quotes must go
 * through gw_log_quote(). */
void gw_log(enum gw_log_level level, const char *event, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Writes one line whose key=value text |fields| (|len| bytes) the caller
 * formatted already; the fast path for the access log. */
void gw_log_fields(enum gw_log_level level, const char *event, const char *fields, size_t len);

/* Quotes |in| for a log value into |out| (size |outlen|, always
 * NUL-terminated): wraps in double quotes, escapes '"', '\\' and control
 * bytes. Returns |out|. */
const char *gw_log_quote(char *out, size_t outlen, const char *in);
/* Masks in place what could be personal data in a text that came from outside (a backend's answer):
 * every run of 9 or more digits (PESEL, phone numbers) and the part of an e-mail address before '@'
 * become '*'. */
void gw_log_mask(char *s);

/* Per-thread buffering for high-rate lines (the access log): while on, lines
 * from the calling thread collect in a thread-local buffer and are written,
 * whole lines only, when it passes 16 KiB or at gw_log_flush(). */
void gw_log_buffer_thread(int on);
void gw_log_flush(void);

#define GW_LOG_ON(level) ((level) >= gw_log_get_level())

#endif
