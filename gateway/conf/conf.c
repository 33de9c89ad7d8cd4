#include "conf/conf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "core/buf.h"
#include "core/err.h"
#include "core/file.h"

#define MAX_CONF_BYTES (1024 * 1024)
#define MAX_DEPTH      8
#define MAX_ERRORS     32

enum kind { K_STR, K_PATH, K_U32, K_SIZE, K_LOGLEVEL, K_TLSVER, K_LISTEN, K_MLLP, K_CONSOLE, K_OBJ };

struct field {
  const char *path; /* dotted */
  enum kind kind;
  size_t off;
  uint64_t min, max;
  const char *help;
};

#define OFF(m) offsetof(struct gw_conf, m)
static const struct field fields[] = {
    {"listen", K_LISTEN, 0, 0, 0, "HOST:PORT"},
    {"mllp_listen", K_MLLP, 0, 0, 0, "HOST:PORT of the MLLP/TLS listener, \"\" = off"},
    {"console_listen", K_CONSOLE, 0, 0, 0, "HOST:PORT of the operators' console (TLS), \"\" = off (the default)"},
    {"console", K_OBJ, 0, 0, 0, NULL},
    {"console.token_file", K_PATH, OFF(console.token_file), 0, 0,
     "a file holding the console's bearer token (mode 0600), for browsers without an operator certificate"},
    {"console.root", K_PATH, OFF(console.root), 0, 0, "the console's static files"},
    {"data_dir", K_PATH, OFF(data_dir), 0, 0, "durable store directory"},
    {"delivery", K_PATH, OFF(delivery), 0, 0, "routes, backends and clinics (JSON)"},
    {"public_url", K_STR, OFF(public_url), 0, 0, "https://HOST[:PORT] clients use (the WSDL's address)"},
    {"workers", K_U32, OFF(workers), 0, 64, "event loops, 0 = one per core"},
    {"log_level", K_LOGLEVEL, OFF(log_level), 0, 0, "debug|info|warn|error"},
    {"store", K_OBJ, 0, 0, 0, NULL},
    {"store.key_file", K_PATH, OFF(store.key_file), 0, 0, "keys that seal personal data at rest (mode 0600)"},
    {"store.seal", K_STR, OFF(store.seal), 0, 0, "\"on\" (default) or \"off\" (content stored in clear)"},
    {"store.max_bytes", K_SIZE, OFF(store.max_bytes), 0, (uint64_t)1 << 50,
     "database and log past this: new messages refused with 503 (0 = no limit)"},
    {"store.min_free_bytes", K_SIZE, OFF(store.min_free_bytes), 0, (uint64_t)1 << 50,
     "free space kept on the store's disk: below it new messages are refused with 503"},
    {"store.backend", K_STR, OFF(store.backend), 0, 0,
     "\"sqlite\" (default: data_dir/cergw.db) or \"postgresql\" (several instances share store.postgresql)"},
    {"store.postgresql", K_STR, OFF(store.pg), 0, 0,
     "libpq connection string or URI, e.g. \"host=db.example dbname=cergw user=cergw sslmode=verify-full\""},
    {"store.instance", K_STR, OFF(store.instance), 0, 0, "this instance's name in a cluster (\"\" = host-pid-random)"},
    {"store.writers", K_U32, OFF(store.writers), 2, 16,
     "PostgreSQL: connections writing at once (one for delivery states, the others new messages)"},
    {"store.lease_ms", K_U32, OFF(store.lease_ms), 500, 3600000,
     "an instance silent this long is declared dead and its deliveries are taken over"},
    {"store.retention", K_OBJ, 0, 0, 0, NULL},
    {"store.retention.content_days", K_U32, OFF(store.content_days), 0, 36500,
     "content of a delivered message kept this many days (0 = forever)"},
    {"store.retention.metadata_days", K_U32, OFF(store.metadata_days), 0, 36500,
     "its ids, states and times kept this many days (0 = forever)"},
    {"store.retention.rejected_days", K_U32, OFF(store.rejected_days), 0, 36500,
     "content of a message with rejected deliveries (and no queued or dead one) kept this many days (0 = until an "
     "operator acts)"},
    {"store.retention.check_ms", K_U32, OFF(store.check_ms), 100, 86400000, "how often the store prunes a step"},
    {"tls", K_OBJ, 0, 0, 0, NULL},
    {"tls.cert", K_PATH, OFF(tls.cert), 0, 0, NULL},
    {"tls.key", K_PATH, OFF(tls.key), 0, 0, NULL},
    {"tls.client_ca", K_PATH, OFF(tls.ca), 0, 0, NULL},
    {"tls.crl", K_PATH, OFF(tls.crl), 0, 0, NULL},
    {"tls.min_version", K_TLSVER, OFF(tls.min_version), 0, 0, "\"1.2\" or \"1.3\""},
    {"roles", K_OBJ, 0, 0, 0, NULL},
    {"roles.p1_subject_cn", K_STR, OFF(roles.p1_subject_cn), 0, 0, "P1's notification certificate: subject CN"},
    {"roles.p1_issuer_cn", K_STR, OFF(roles.p1_issuer_cn), 0, 0, "P1's notification certificate: issuer CN"},
    {"limits", K_OBJ, 0, 0, 0, NULL},
    {"limits.max_body_bytes", K_SIZE, OFF(limits.max_body_bytes), 1, 1u << 30, NULL},
    {"limits.max_header_bytes", K_SIZE, OFF(limits.max_header_bytes), 256, 1u << 20, NULL},
    {"limits.max_url_bytes", K_SIZE, OFF(limits.max_url_bytes), 16, 1u << 16, NULL},
    {"limits.max_concurrent_streams", K_U32, OFF(limits.max_streams), 1, 10000, NULL},
    {"limits.max_connections", K_U32, OFF(limits.max_connections), 1, 1000000, NULL},
    {"limits.idle_timeout_ms", K_U32, OFF(limits.idle_timeout_ms), 100, 86400000, NULL},
    {"limits.read_timeout_ms", K_U32, OFF(limits.read_timeout_ms), 100, 3600000, NULL},
    {"limits.send_timeout_ms", K_U32, OFF(limits.send_timeout_ms), 100, 3600000, NULL},
    {"limits.max_connection_buffer_bytes", K_SIZE, OFF(limits.max_conn_buffer), 1024, (uint64_t)1 << 34, NULL},
    {"limits.max_buffered_bytes", K_SIZE, OFF(limits.max_buffered), 1024, (uint64_t)1 << 40, NULL},
    {"limits.handshake_timeout_ms", K_U32, OFF(limits.handshake_timeout_ms), 100, 600000, NULL},
    {"limits.shutdown_timeout_ms", K_U32, OFF(limits.shutdown_timeout_ms), 0, 3600000, NULL},
    {"limits.max_resets_per_second", K_U32, OFF(limits.max_resets_per_s), 1, 1000000, NULL},
    {"limits.max_control_frames_per_second", K_U32, OFF(limits.max_control_per_s), 1, 1000000, NULL},
};
#undef OFF

struct pctx {
  struct gw_conf *c;
  const char *name;
  const char *text;
  size_t len;
  char dir[4096];
  yajl_handle h;
  struct gw_buf *errs;
  int nerr;
  int depth;       /* map nesting, 0 outside the top-level map */
  int array_depth; /* arrays are never valid here; we skip their contents */
  char path[MAX_DEPTH][64];
  bool seen[sizeof(fields) / sizeof(fields[0])];
  size_t key_off; /* where the key of the value being parsed starts */
  int oom;
};

static void line_col(const struct pctx *p, size_t off, int *line, int *col) {
  *line = 1;
  *col = 1;
  if (off > p->len)
    off = p->len;
  for (size_t i = 0; i < off; i++) {
    if (p->text[i] == '\n') {
      (*line)++;
      *col = 1;
    } else {
      (*col)++;
    }
  }
}

/* Start of the token that ends just before the current parse offset. */
static size_t token_start(const struct pctx *p) {
  size_t end = yajl_get_bytes_consumed(p->h);
  if (end > p->len)
    end = p->len;
  if (end == 0)
    return 0;
  size_t i = end - 1;
  if (p->text[i] == '"') {
    while (i > 0) {
      i--;
      if (p->text[i] == '"') {
        size_t bs = 0;
        while (i >= bs + 1 && p->text[i - bs - 1] == '\\')
          bs++;
        if (bs % 2 == 0)
          return i;
      }
    }
    return 0;
  }
  while (i > 0 && !strchr(" \t\r\n:,[{", p->text[i - 1]))
    i--;
  return i;
}

__attribute__((format(printf, 3, 4))) static void perr_at(struct pctx *p, size_t off, const char *fmt, ...) {
  if (p->nerr++ >= MAX_ERRORS)
    return;
  int line, col;
  line_col(p, off, &line, &col);
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (gw_buf_printf(p->errs, "%s:%d:%d: %s\n", p->name, line, col, msg))
    p->oom = 1;
}

#define perr(p, ...) perr_at((p), token_start(p), __VA_ARGS__)

static void cur_path(const struct pctx *p, char *out, size_t n) {
  out[0] = 0;
  size_t o = 0;
  for (int i = 0; i < p->depth && i < MAX_DEPTH; i++)
    o += (size_t)snprintf(out + o, o < n ? n - o : 0, "%s%s", i ? "." : "", p->path[i]);
}

static int find_field(const char *path) {
  for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
    if (strcmp(fields[i].path, path) == 0)
      return (int)i;
  return -1;
}

/* Finds the field for the value now being parsed, or reports why not. */
static const struct field *value_field(struct pctx *p, const char *what) {
  if (p->array_depth)
    return NULL;
  if (p->depth == 0) {
    perr(p, "the configuration must be a JSON object, found %s", what);
    return NULL;
  }
  char path[512];
  cur_path(p, path, sizeof(path));
  int i = find_field(path);
  if (i < 0) {
    perr_at(p, p->key_off, "unknown key '%s'", path);
    return NULL;
  }
  if (p->seen[i])
    perr_at(p, p->key_off, "duplicate key '%s'", path);
  p->seen[i] = true;
  return &fields[i];
}

static int set_string(struct pctx *p, const struct field *f, const char *s, size_t n) {
  char *v = strndup(s, n);
  if (!v) {
    p->oom = 1;
    return 0;
  }
  if (f->kind == K_MLLP || f->kind == K_CONSOLE) { /* an optional listener: "" turns it off */
    char **host = f->kind == K_MLLP ? &p->c->mllp_host : &p->c->console_host;
    char **port = f->kind == K_MLLP ? &p->c->mllp_port : &p->c->console_port;
    int rv = n == 0 ? GW_OK : gw_hostport_split(v, host, port);
    if (n == 0) {
      free(*host);
      free(*port);
      *host = *port = NULL;
    } else if (rv) {
      perr(p, "'%s': expected HOST:PORT or \"\", got \"%s\"", f->path, v);
    }
    free(v);
    return 1;
  }
  if (f->kind == K_LISTEN) {
    int rv = gw_conf_set_listen(p->c, v);
    if (rv)
      perr(p, "'%s': expected HOST:PORT, got \"%s\"", f->path, v);
    free(v);
    return 1;
  }
  if (f->kind == K_LOGLEVEL) {
    if (gw_log_level_parse(v, (enum gw_log_level *)((char *)p->c + f->off)))
      perr(p, "'%s': expected one of debug, info, warn, error, got \"%s\"", f->path, v);
    free(v);
    return 1;
  }
  if (f->kind == K_TLSVER) {
    int *dst = (int *)((char *)p->c + f->off);
    if (strcmp(v, "1.2") == 0)
      *dst = 12;
    else if (strcmp(v, "1.3") == 0)
      *dst = 13;
    else
      perr(p, "'%s': expected \"1.2\" or \"1.3\", got \"%s\"", f->path, v);
    free(v);
    return 1;
  }
  if (f->kind != K_STR && f->kind != K_PATH) {
    perr(p, "'%s': expected a number, got a string", f->path);
    free(v);
    return 1;
  }
  if (n == 0 || memchr(s, 0, n)) {
    perr(p, "'%s': must be a non-empty string without NUL bytes", f->path);
    free(v);
    return 1;
  }
  if (f->kind == K_PATH && v[0] != '/' && p->dir[0]) {
    char *abs = NULL;
    if (asprintf(&abs, "%s/%s", p->dir, v) < 0) {
      p->oom = 1;
      free(v);
      return 0;
    }
    free(v);
    v = abs;
  }
  char **dst = (char **)((char *)p->c + f->off);
  free(*dst);
  *dst = v;
  return 1;
}

static int cb_null(void *ctx) {
  struct pctx *p = ctx;
  const struct field *f = value_field(p, "null");
  if (f)
    perr(p, "'%s': null is not allowed; leave the key out to keep the default", f->path);
  return 1;
}

static int cb_bool(void *ctx, int b) {
  struct pctx *p = ctx;
  const struct field *f = value_field(p, "a boolean");
  if (f)
    perr(p, "'%s': expected %s, got %s", f->path, f->kind == K_OBJ ? "an object" : "a value of another type",
         b ? "true" : "false");
  return 1;
}

static int cb_number(void *ctx, const char *s, size_t n) {
  struct pctx *p = ctx;
  const struct field *f = value_field(p, "a number");
  if (!f)
    return 1;
  char tmp[64];
  if (n >= sizeof(tmp))
    n = sizeof(tmp) - 1;
  memcpy(tmp, s, n);
  tmp[n] = 0;
  if (f->kind != K_U32 && f->kind != K_SIZE) {
    perr(p, "'%s': expected %s, got the number %s", f->path, f->kind == K_OBJ ? "an object" : "a string", tmp);
    return 1;
  }
  char *end;
  errno = 0;
  unsigned long long v = strtoull(tmp, &end, 10);
  if (*end || errno || tmp[0] == '-') {
    perr(p, "'%s': expected a non-negative integer, got %s", f->path, tmp);
    return 1;
  }
  if (v < f->min || v > f->max) {
    perr(p, "'%s': %llu is out of range [%lu, %lu]", f->path, v, (unsigned long)f->min, (unsigned long)f->max);
    return 1;
  }
  if (f->kind == K_U32)
    *(uint32_t *)((char *)p->c + f->off) = (uint32_t)v;
  else
    *(size_t *)((char *)p->c + f->off) = (size_t)v;
  return 1;
}

static int cb_string(void *ctx, const unsigned char *s, size_t n) {
  struct pctx *p = ctx;
  const struct field *f = value_field(p, "a string");
  if (!f)
    return 1;
  if (f->kind == K_OBJ) {
    perr(p, "'%s': expected an object, got a string", f->path);
    return 1;
  }
  return set_string(p, f, (const char *)s, n);
}

static int cb_start_map(void *ctx) {
  struct pctx *p = ctx;
  if (p->array_depth)
    return 1;
  if (p->depth > 0) {
    const struct field *f = value_field(p, "an object");
    if (f && f->kind != K_OBJ)
      perr(p, "'%s': expected a scalar value, got an object", f->path);
  }
  if (p->depth >= MAX_DEPTH) {
    perr(p, "objects nested deeper than %d levels", MAX_DEPTH);
    return 0;
  }
  p->path[p->depth][0] = 0;
  p->depth++;
  return 1;
}

static int cb_map_key(void *ctx, const unsigned char *s, size_t n) {
  struct pctx *p = ctx;
  if (p->array_depth)
    return 1;
  p->key_off = token_start(p);
  size_t m = n < sizeof(p->path[0]) - 1 ? n : sizeof(p->path[0]) - 1;
  memcpy(p->path[p->depth - 1], s, m);
  p->path[p->depth - 1][m] = 0;
  if (m != n || memchr(s, 0, n) || memchr(s, '.', n))
    perr(p, "invalid key \"%.*s\"", (int)m, s);
  return 1;
}

static int cb_end_map(void *ctx) {
  struct pctx *p = ctx;
  if (p->array_depth)
    return 1;
  p->depth--;
  return 1;
}

static int cb_start_array(void *ctx) {
  struct pctx *p = ctx;
  if (p->array_depth == 0) {
    const struct field *f = value_field(p, "an array");
    if (f)
      perr(p, "'%s': arrays are not allowed here", f->path);
  }
  if (++p->array_depth > 64) {
    perr(p, "arrays nested too deeply");
    return 0;
  }
  return 1;
}

static int cb_end_array(void *ctx) {
  struct pctx *p = ctx;
  p->array_depth--;
  return 1;
}

static const yajl_callbacks callbacks = {cb_null,      cb_bool,    NULL,       NULL,           cb_number,   cb_string,
                                         cb_start_map, cb_map_key, cb_end_map, cb_start_array, cb_end_array};

int gw_conf_parse(struct gw_conf *c, const char *name, const char *text, size_t len, struct gw_buf *errs) {
  struct pctx *p = calloc(1, sizeof(*p));
  if (!p)
    return GW_ERR_NOMEM;
  p->c = c;
  p->name = name;
  p->text = text;
  p->len = len;
  p->errs = errs;
  const char *slash = strrchr(name, '/');
  if (slash)
    snprintf(p->dir, sizeof(p->dir), "%.*s", (int)(slash - name), name);
  else
    snprintf(p->dir, sizeof(p->dir), ".");
  if (slash && slash == name)
    snprintf(p->dir, sizeof(p->dir), "/");

  p->h = yajl_alloc(&callbacks, NULL, p);
  if (!p->h) {
    free(p);
    return GW_ERR_NOMEM;
  }
  yajl_config(p->h, yajl_allow_comments, 1);
  yajl_status st = yajl_parse(p->h, (const unsigned char *)text, len);
  bool at_eof = false;
  if (st == yajl_status_ok) {
    st = yajl_complete_parse(p->h);
    at_eof = true; /* an error now means the text ended too early */
  }
  if (st == yajl_status_error && p->nerr == 0) {
    size_t off = at_eof ? len : yajl_get_bytes_consumed(p->h);
    unsigned char *ye = yajl_get_error(p->h, 0, (const unsigned char *)text, len);
    int line, col;
    line_col(p, off, &line, &col);
    char *msg = (char *)ye;
    while (msg && *msg == ' ')
      msg++;
    size_t ml = msg ? strcspn(msg, "\n") : 0;
    gw_buf_printf(errs, "%s:%d:%d: JSON syntax error: %.*s\n", name, line, col, (int)ml, msg ? msg : "");
    yajl_free_error(p->h, ye);
    p->nerr++;
  } else if (st == yajl_status_ok && p->depth == 0 && p->nerr == 0 && len > 0) {
    /* parsed fine but the top level was not an object (caught in value_field) */
  }
  if (p->nerr > MAX_ERRORS)
    gw_buf_printf(errs, "%s: %d more errors not shown\n", name, p->nerr - MAX_ERRORS);
  int rv = p->oom ? GW_ERR_NOMEM : (p->nerr ? GW_ERR_CONF : GW_OK);
  yajl_free(p->h);
  free(p);
  return rv;
}

int gw_conf_load(struct gw_conf *c, const char *path, struct gw_buf *errs) {
  size_t n;
  char *text = gw_file_read_conf(path, MAX_CONF_BYTES, &n, errs);
  if (!text)
    return GW_ERR_CONF;
  free(c->path);
  c->path = strdup(path);
  int rv = c->path ? gw_conf_parse(c, path, text, n, errs) : GW_ERR_NOMEM;
  free(text);
  return rv;
}

int gw_conf_set_listen(struct gw_conf *c, const char *hp) {
  return gw_hostport_split(hp, &c->listen_host, &c->listen_port);
}

int gw_hostport_split(const char *hp, char **out_host, char **out_port) {
  const char *host, *port;
  size_t hl;
  if (hp[0] == '[') {
    const char *e = strchr(hp, ']');
    if (!e || e[1] != ':')
      return GW_ERR_INVAL;
    host = hp + 1;
    hl = (size_t)(e - host);
    port = e + 2;
  } else {
    const char *colon = strrchr(hp, ':');
    if (!colon || strchr(hp, ':') != colon)
      return GW_ERR_INVAL;
    host = hp;
    hl = (size_t)(colon - hp);
    port = colon + 1;
  }
  char *end;
  long pn = strtol(port, &end, 10);
  if (hl == 0 || *port == 0 || *end || pn < 0 || pn > 65535)
    return GW_ERR_INVAL;
  char *h = strndup(host, hl), *pt = strdup(port);
  if (!h || !pt) {
    free(h);
    free(pt);
    return GW_ERR_NOMEM;
  }
  if (!out_host) {
    free(h);
    free(pt);
    return GW_OK;
  }
  free(*out_host);
  free(*out_port);
  *out_host = h;
  *out_port = pt;
  return GW_OK;
}

int gw_conf_defaults(struct gw_conf *c) {
  memset(c, 0, sizeof(*c));
  c->workers = 0;
  c->log_level = GW_LOG_INFO;
  c->tls.min_version = 12;
  c->limits = (struct gw_limits){
      .max_body_bytes = 4u << 20,
      .max_header_bytes = 16384,
      .max_url_bytes = 8192,
      .max_streams = 128,
      .max_connections = 10000,
      .idle_timeout_ms = 60000,
      .read_timeout_ms = 15000,
      .send_timeout_ms = 15000,
      .max_conn_buffer = 16u << 20,
      .max_buffered = 256u << 20,
      .handshake_timeout_ms = 10000,
      .shutdown_timeout_ms = 10000,
      .max_resets_per_s = 200,
      .max_control_per_s = 200,
  };
  c->tls.cert = strdup("certs/dev/server.pem");
  c->tls.key = strdup("certs/dev/server.key");
  c->tls.ca = strdup("certs/dev/ca.pem");
  c->tls.crl = strdup("certs/dev/crl.pem");
  c->data_dir = strdup("data");
  c->store.key_file = strdup("certs/dev/store.key");
  c->store.seal = strdup("on");
  c->store.backend = strdup("sqlite");
  c->store.pg = strdup("");
  c->store.instance = strdup("");
  c->store.lease_ms = 10000;
  c->store.writers = 4;
  c->store.min_free_bytes = 64u << 20;
  c->store.content_days = 7;
  c->store.metadata_days = 90;
  c->store.check_ms = 60000;
  c->console.root = strdup("console");
  c->roles.p1_subject_cn = strdup("P1 CeR notifications (dev)"); /* the development PKI's (certs/) */
  c->roles.p1_issuer_cn = strdup("cergw development CA");
  if (!c->data_dir || !c->store.key_file || !c->store.seal || !c->store.backend || !c->store.pg || !c->store.instance ||
      !c->roles.p1_subject_cn || !c->roles.p1_issuer_cn || !c->console.root ||
      gw_hostport_split("127.0.0.1:2575", &c->mllp_host, &c->mllp_port))
    c->tls.cert = NULL;
  if (!c->tls.cert || !c->tls.key || !c->tls.ca || !c->tls.crl || gw_conf_set_listen(c, "127.0.0.1:8443")) {
    gw_conf_cleanup(c);
    return GW_ERR_NOMEM;
  }
  return GW_OK;
}

void gw_conf_cleanup(struct gw_conf *c) {
  free(c->path);
  free(c->listen_host);
  free(c->listen_port);
  free(c->tls.cert);
  free(c->tls.key);
  free(c->tls.ca);
  free(c->tls.crl);
  free(c->mllp_host);
  free(c->mllp_port);
  free(c->console_host);
  free(c->console_port);
  free(c->console.token_file);
  free(c->console.root);
  free(c->data_dir);
  free(c->store.key_file);
  free(c->store.seal);
  free(c->store.backend);
  free(c->store.pg);
  free(c->store.instance);
  free(c->delivery);
  free(c->public_url);
  free(c->roles.p1_subject_cn);
  free(c->roles.p1_issuer_cn);
  memset(c, 0, sizeof(*c));
}
