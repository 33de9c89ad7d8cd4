/* Gateway configuration: a JSON file parsed once (yajl) into an immutable
 * snapshot. Unknown keys, wrong types and out-of-range values are errors
 * reported as "file:line:col: message". */
#ifndef GW_CONF_CONF_H
#define GW_CONF_CONF_H

#include <stddef.h>
#include <stdint.h>

#include "core/log.h"

struct gw_limits {
  size_t max_body_bytes;    /* request body; over it: 413 */
  size_t max_header_bytes;  /* sum of name+value+32 per field; over it: 431 */
  size_t max_url_bytes;     /* request target; over it: 414 */
  uint32_t max_streams;     /* HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS */
  uint32_t max_connections; /* whole process */
  uint32_t idle_timeout_ms; /* no open request for this long: close */
  uint32_t read_timeout_ms; /* a started request must arrive completely within this */
  uint32_t send_timeout_ms; /* output pending without progress this long (a peer that does not read): close */
  size_t max_conn_buffer;   /* request bodies buffered by one connection's streams; past it: REFUSED_STREAM (0: none) */
  size_t max_buffered;      /* the same for the whole process (0: none) */
  uint32_t handshake_timeout_ms;
  uint32_t shutdown_timeout_ms; /* graceful stop deadline */
  uint32_t max_resets_per_s;    /* HTTP/2 RST_STREAM received per second (rapid reset) */
  uint32_t max_control_per_s;   /* SETTINGS + PING + PRIORITY frames received per second */
};

struct gw_conf_tls {
  char *cert;      /* server certificate chain, PEM */
  char *key;       /* its private key, PEM */
  char *ca;        /* CA bundle that client certificates must chain to */
  char *crl;       /* CRL file (PEM, may hold several CRLs); NULL: no revocation check */
  int min_version; /* 12 or 13 */
};

/* Roles that are not clinics are pinned: a certificate from a trusted CA with OU=p1 is P1's only when its
 * subject CN and issuer CN are these. */
struct gw_conf_roles {
  char *p1_subject_cn;
  char *p1_issuer_cn;
};

struct gw_conf {
  char *path; /* file it came from, or NULL for the embedded defaults */
  char *listen_host;
  char *listen_port;
  char *mllp_host, *mllp_port;       /* MLLP over TLS listener; NULL when off */
  char *console_host, *console_port; /* the console's listener; NULL when off (the default) */
  struct {
    char *token_file; /* a bearer token for browsers without an operator certificate; NULL: certificates only */
    char *root;       /* the console's static files */
  } console;
  char *data_dir; /* durable store (SQLite) directory */
  struct {
    char *key_file;                                                /* the keys that seal content at rest (tls/seal.h) */
    char *seal;                                                    /* "on" or "off" */
    uint32_t content_days, metadata_days, check_ms, rejected_days; /* retention (gw_store_set_retention) */
    uint64_t max_bytes, min_free_bytes;                            /* gw_store_set_limits */
    char *backend;                                                 /* "sqlite" (default) or "postgresql" */
    char *pg;                                                      /* PostgreSQL connection string (store.postgresql) */
    char *instance;    /* this instance's name in a cluster ("" = host-pid-random) */
    uint32_t lease_ms; /* a silent instance is declared dead after this */
    uint32_t writers;  /* PostgreSQL connections writing in parallel */
  } store;
  char *delivery;   /* routes/backends/clinics file; NULL = embedded defaults */
  char *public_url; /* how clients reach the gateway (the WSDL's address); NULL: the request's Host */
  uint32_t workers; /* event loops; 0 = one per online core */
  enum gw_log_level log_level;
  struct gw_conf_tls tls;
  struct gw_limits limits;
  struct gw_conf_roles roles;
};

/* Fills |c| with the embedded development defaults (127.0.0.1:8443,
 * certs/dev relative to the working directory). Returns 0 or GW_ERR_NOMEM. */
int gw_conf_defaults(struct gw_conf *c);

/* Parses the JSON text |text| (|len| bytes, named |name| in messages) over the
 * defaults already in |c|. Relative paths are taken relative to the directory
 * of |name|. Each problem is appended to |errs| as one line
 * "name:line:col: message\n". Returns 0, GW_ERR_CONF (see |errs|) or
 * GW_ERR_NOMEM. */
struct gw_buf;
int gw_conf_parse(struct gw_conf *c, const char *name, const char *text, size_t len, struct gw_buf *errs);

/* Reads |path| (at most 1 MiB) and parses it as gw_conf_parse() does. */
int gw_conf_load(struct gw_conf *c, const char *path, struct gw_buf *errs);

/* Sets listen_host/listen_port from "HOST:PORT" or "[V6]:PORT". */
int gw_conf_set_listen(struct gw_conf *c, const char *hostport);

/* Splits "HOST:PORT" or "[V6]:PORT" into fresh strings (replacing *host and
 * *port); with NULL outputs only checks the syntax. */
int gw_hostport_split(const char *hp, char **host, char **port);

/* Frees everything |c| owns; |c| may be zeroed memory. */
void gw_conf_cleanup(struct gw_conf *c);

#endif
