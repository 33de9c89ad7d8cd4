/* cergw command line: serve, check-config, identity, version. */
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "conf/conf.h"
#include "console/console.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/file.h"
#include "core/log.h"
#include "core/version.h"
#include "deliver/deliver.h"
#include "http/router.h"
#include "http/write.h"
#include "msg/engine.h"
#include "net/server.h"
#include "sim/sim.h"
#include "store/pg.h"
#include "store/store.h"
#include "tls/seal.h"
#include "tls/tls.h"
#include "validate/rules.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: cergw serve [--config FILE] [--listen HOST:PORT]\n"
          "       cergw check-config FILE\n"
          "       cergw validate [--format text|json|ndjson] [--now INSTANT] [--charset windows-1250] FILE...\n"
          "                                        exit 0 valid, 1 invalid, 2 unreadable\n"
          "       cergw translate --to fhir|fhir-xml|hl7v2|soap|soap-notification FILE [--now INSTANT] [--charset CS]\n"
          "       cergw identity CERT.pem   show the identity the gateway reads from a certificate\n"
          "       cergw outbox [--data DIR] [--key FILE] list|show|retry|dead|purge ...   the delivery queue\n"
          "       cergw store [--data DIR] [--key FILE] status | keygen FILE [ID]   the store: size, states, keys\n"
          "       cergw sim --role p1|simp|apkolce|clinic --listen HOST:PORT [--data DIR]   backend simulator\n"
          "       cergw version\n");
}

/* Loads |path| over the defaults, printing every problem. */
static int load_conf(struct gw_conf *c, const char *path) {
  if (gw_conf_defaults(c))
    return GW_ERR_NOMEM;
  if (!path)
    return GW_OK;
  struct gw_buf errs;
  gw_buf_init(&errs, 1 << 20);
  int rv = gw_conf_load(c, path, &errs);
  if (errs.len)
    fputs((char *)errs.data, stderr);
  gw_buf_cleanup(&errs);
  return rv;
}

static struct gw_engine *load_engine(void);

static const char *reload_path;

/* SIGHUP: a new routes/backends snapshot; in-flight work keeps the one it started with. */
static void reload_delivery(void) {
  struct gw_buf errs;
  gw_buf_init(&errs, 1 << 20);
  struct gw_dconf *dc = NULL;
  if (gw_dconf_load(reload_path, &dc, &errs)) {
    gw_log(GW_LOG_ERROR, "reload_failed", "delivery=%s detail=\"%.*s\" keeping=previous",
           reload_path ? reload_path : "-", (int)strcspn(errs.len ? (char *)errs.data : "", "\n"),
           errs.len ? (char *)errs.data : "");
  } else {
    int on = 0;
    for (int i = 0; i < dc->nr; i++)
      on += dc->r[i].enabled;
    gw_dconf_install(dc);
    gw_log(GW_LOG_INFO, "reloaded", "delivery=%s routes=%d enabled=%d", reload_path ? reload_path : "embedded-defaults",
           dc->nr, on);
  }
  gw_buf_cleanup(&errs);
}

/* The store store.backend names: SQLite in data_dir, or PostgreSQL shared by several instances. */
static int open_store(const struct gw_conf *c, struct gw_store **st, struct gw_buf *errs) {
  if (strcmp(c->store.backend, "postgresql") == 0) {
    if (!c->store.pg[0]) {
      gw_buf_printf(errs, "store.backend is \"postgresql\": set store.postgresql to a connection string\n");
      return GW_ERR_CONF;
    }
    struct gw_pg_opts o = {.conninfo = c->store.pg,
                           .instance = c->store.instance,
                           .lease_ms = c->store.lease_ms,
                           .writers = (int)c->store.writers};
    return gw_store_open_pg(&o, NULL, NULL, st, errs);
  }
  if (strcmp(c->store.backend, "sqlite") != 0) {
    gw_buf_printf(errs, "store.backend: \"sqlite\" or \"postgresql\", not \"%s\"\n", c->store.backend);
    return GW_ERR_CONF;
  }
  return gw_store_open(c->data_dir, NULL, NULL, st, errs);
}

/* The keys that seal the store's content (store.key_file), unless store.seal is "off". */
static int open_keyring(const struct gw_conf *c, struct gw_keyring **kr, struct gw_buf *errs) {
  *kr = NULL;
  if (strcmp(c->store.seal, "off") == 0) {
    gw_log(GW_LOG_WARN, "store_unsealed", "detail=\"store.seal is off: personal data is stored in clear\"");
    return GW_OK;
  }
  if (strcmp(c->store.seal, "on") != 0) {
    gw_buf_printf(errs, "store.seal: \"on\" or \"off\", not \"%s\"\n", c->store.seal);
    return GW_ERR_CONF;
  }
  int rv = gw_keyring_load(c->store.key_file, kr, errs);
  if (rv == GW_OK) {
    gw_store_use_keyring(*kr);
    gw_log(GW_LOG_INFO, "store_sealed", "key_file=%s current_key=%s", c->store.key_file, gw_keyring_current(*kr));
  }
  return rv;
}

static int cmd_serve(int argc, char **argv) {
  const char *conf_path = NULL, *listen = NULL;
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
      conf_path = argv[++i];
    else if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc)
      listen = argv[++i];
    else {
      usage(stderr);
      return 2;
    }
  }
  /* what the gateway writes is for its own user only, and a crash does not leave the patients of the
   * messages in memory in a core file (CERGW_CORE_DUMPS=1 keeps them for debugging) */
  umask(077);
  const char *dumps = getenv("CERGW_CORE_DUMPS");
  if (!dumps || strcmp(dumps, "1") != 0)
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  struct gw_conf c;
  if (load_conf(&c, conf_path)) {
    gw_conf_cleanup(&c);
    return 2;
  }
  if (listen && gw_conf_set_listen(&c, listen)) {
    fprintf(stderr, "--listen: expected HOST:PORT, got \"%s\"\n", listen);
    gw_conf_cleanup(&c);
    return 2;
  }
  gw_log_set_level(c.log_level);
  gw_log(GW_LOG_INFO, "starting", "version=%s config=%s", GW_VERSION, c.path ? c.path : "embedded-defaults");
  struct gw_engine *engine = load_engine();
  if (!engine) {
    gw_conf_cleanup(&c);
    return 1;
  }
  gw_router_set_engine(engine);
  gw_router_set_public_url(c.public_url);
  struct gw_buf errs;
  gw_buf_init(&errs, 1 << 20);
  struct gw_dconf *dc = NULL;
  struct gw_store *st = NULL;
  struct gw_dispatch *disp = NULL;
  struct gw_keyring *kr = NULL;
  int rv = gw_dconf_load(c.delivery, &dc, &errs);
  if (rv == GW_OK)
    rv = open_keyring(&c, &kr, &errs);
  if (rv == GW_OK)
    rv = open_store(&c, &st, &errs);
  if (rv == GW_OK) { /* the configuration in force first: the queues recovered at start take its policies */
    gw_dconf_install(dc);
    dc = NULL;
    gw_store_set_memory(st, gw_rules_memory, (void *)gw_engine_rules(engine));
    gw_store_set_retention(st, c.store.content_days, c.store.metadata_days, c.store.check_ms, c.store.rejected_days);
    gw_store_set_limits(st, c.store.max_bytes, c.store.min_free_bytes);
    rv = gw_dispatch_start(st, &disp);
  }
  if (rv != GW_OK) {
    fprintf(stderr, "%s", errs.len ? (char *)errs.data : "cannot start delivery\n");
    gw_buf_cleanup(&errs);
    gw_dconf_free(dc);
    gw_dconf_install(NULL);
    gw_store_close(st);
    gw_store_use_keyring(NULL);
    gw_keyring_free(kr);
    gw_engine_free(engine);
    gw_conf_cleanup(&c);
    return 1;
  }
  gw_buf_cleanup(&errs);
  gw_store_set_accepted(st, gw_dispatch_accepted, disp);
  gw_write_init(engine, st);
  gw_router_set_store_name(st->ops->name);
  if (c.console_host) {
    struct gw_buf cerrs;
    gw_buf_init(&cerrs, 4096);
    if (gw_console_init(&c, engine, st, &cerrs) != GW_OK) {
      fprintf(stderr, "%s", cerrs.data ? (const char *)cerrs.data : "console: cannot start\n");
      gw_buf_cleanup(&cerrs);
      gw_dispatch_stop(disp);
      gw_store_close(st);
      gw_store_use_keyring(NULL);
      gw_keyring_free(kr);
      gw_write_cleanup();
      gw_engine_free(engine);
      gw_conf_cleanup(&c);
      return 1;
    }
    gw_buf_cleanup(&cerrs);
    gw_router_set_console(gw_console_handle);
  }
  reload_path = c.delivery;
  gw_log(GW_LOG_INFO, "delivery_ready", "data_dir=%s delivery=%s", c.data_dir,
         c.delivery ? c.delivery : "embedded-defaults");
  static const struct gw_app app = {.handle = gw_router_handle, .reload = reload_delivery};
  rv = gw_server_run(&c, &app);
  gw_console_stop();
  gw_dispatch_stop(disp);
  gw_store_close(st);
  gw_store_use_keyring(NULL);
  gw_keyring_free(kr);
  gw_write_cleanup();
  gw_dconf_install(NULL);
  gw_router_set_engine(NULL);
  gw_router_set_public_url(NULL);
  gw_engine_free(engine);
  gw_conf_cleanup(&c);
  return rv ? 1 : 0;
}

/* Validates a configuration completely: syntax, keys, types, ranges, that
 * the TLS material loads (certificate, key, CA bundle, CRL), and the delivery
 * file it names (routes, backends, clinics) with the gateway's outbound TLS
 * material: what SIGHUP would load, checked before sending it. */
static int cmd_check_config(int argc, char **argv) {
  if (argc != 1) {
    usage(stderr);
    return 2;
  }
  struct gw_conf c;
  int rv = load_conf(&c, argv[0]);
  if (rv == GW_OK) {
    struct gw_buf errs;
    gw_buf_init(&errs, 1 << 16);
    struct gw_tls *t = gw_tls_server_new(&c.tls, &errs);
    if (!t) {
      fprintf(stderr, "%s: TLS material does not load:\n%s", argv[0], errs.len ? (char *)errs.data : "");
      rv = GW_ERR_CONF;
    }
    gw_tls_free(t);
    t = NULL;
    errs.len = 0;
    struct gw_dconf *dc = NULL;
    if (gw_dconf_load(c.delivery, &dc, &errs)) {
      fprintf(stderr, "%s: the delivery configuration does not load:\n%s", argv[0], errs.len ? (char *)errs.data : "");
      rv = GW_ERR_CONF;
    } else if (!(t = gw_tls_client_new(dc->cert, dc->key, dc->ca, &errs))) {
      fprintf(stderr, "%s: the delivery's client_tls material does not load:\n%s", argv[0],
              errs.len ? (char *)errs.data : "");
      rv = GW_ERR_CONF;
    }
    gw_tls_free(t);
    gw_dconf_free(dc);
    gw_buf_cleanup(&errs);
  }
  if (rv == GW_OK)
    printf("%s: configuration OK\n", argv[0]);
  gw_conf_cleanup(&c);
  return rv ? 1 : 0;
}

static int cmd_identity(int argc, char **argv) {
  if (argc != 1) {
    usage(stderr);
    return 2;
  }
  struct gw_identity id;
  int rv = gw_tls_identity_from_file(argv[0], &id);
  if (rv) {
    fprintf(stderr, "%s: %s\n", argv[0], rv == GW_ERR_IO ? "cannot open" : "not a PEM certificate");
    return 1;
  }
  printf("role=%s\ncn=%s\norganization=%s\nrpwdl=%s\nregon=%s\nserial=%s\nissuer_cn=%s\nsha256=%s\n",
         gw_role_name(id.role), id.cn, id.org, id.rpwdl, id.regon, id.serial, id.issuer_cn, id.fp_sha256);
  return 0;
}

/* Where schemas/ and mappings/ are: $CERGW_HOME, else next to the binary
 * (build/cergw or build/asan/cergw in a checkout), else the working directory. */
static const char *engine_root(void) {
  static char root[4096];
  const char *env = getenv("CERGW_HOME");
  if (env)
    return env;
  char exe[4000];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n > 0) {
    exe[n] = 0;
    for (int up = 1; up <= 3; up++) {
      char *slash = strrchr(exe, '/');
      if (!slash)
        break;
      *slash = 0;
      struct stat st;
      snprintf(root, sizeof(root), "%s/schemas/fhir/r4-elements.json", exe);
      if (stat(root, &st) == 0) {
        snprintf(root, sizeof(root), "%s", exe);
        return root;
      }
    }
  }
  return ".";
}

static struct gw_engine *load_engine(void) {
  struct gw_buf errs;
  gw_buf_init(&errs, 1 << 16);
  struct gw_engine *e = NULL;
  if (gw_engine_new(engine_root(), &e, &errs))
    fprintf(stderr, "cergw: cannot load schemas/ and mappings/ from %s:\n%s", engine_root(),
            errs.data ? (char *)errs.data : "");
  gw_buf_cleanup(&errs);
  return e;
}

/* CLI inputs: no message the gateway accepts is larger than this. */
static char *read_file(const char *path, size_t *len) { return gw_file_read(path, 16u << 20, len, NULL); }

/* A file name as a JSON string (quotes, backslashes and control characters escaped) into |out|. */
static void json_name(const char *in, char *out, size_t n) {
  size_t o = 0;
  out[o++] = '"';
  for (const unsigned char *p = (const unsigned char *)in; *p && o + 8 < n; p++)
    if (*p == '"' || *p == '\\')
      o += (size_t)snprintf(out + o, n - o, "\\%c", *p);
    else if (*p < 0x20)
      o += (size_t)snprintf(out + o, n - o, "\\u%04x", *p);
    else
      out[o++] = (char)*p;
  out[o++] = '"';
  out[o] = 0;
}

enum vformat { V_TEXT, V_JSON, V_NDJSON };

/* One issue as compilers write them: FILE:LINE:COLUMN: severity rule: text [location]; the line and
 * column when the input format gives them. */
static void print_issue(FILE *f, const char *file, const struct gw_issue *is) {
  if (is->line && is->col > 0)
    fprintf(f, "%s:%d:%d: ", file, is->line, is->col);
  else if (is->line)
    fprintf(f, "%s:%d: ", file, is->line);
  else
    fprintf(f, "%s: ", file);
  fprintf(f, "%s %s: %s", gw_severity_name(is->severity), is->rule, is->msg_en);
  fprintf(f, is->location[0] ? " [%s]\n" : "%s\n", is->location);
}

/* cergw validate [--format text|json|ndjson] [--now INSTANT] FILE...: options anywhere. json: the
 * OperationOutcome for one file, an array of {"file", "outcome"} for several (one JSON document);
 * ndjson: one such object per line. */
static int validate_args(int argc, char **argv, enum vformat *fmt, time_t *now, const char **charset, char **files,
                         int *nfiles) {
  *nfiles = 0;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--charset") && i + 1 < argc) {
      *charset = argv[++i];
    } else if (!strcmp(argv[i], "--format") && i + 1 < argc) {
      const char *f = argv[++i];
      *fmt = !strcmp(f, "json") ? V_JSON : !strcmp(f, "ndjson") ? V_NDJSON : V_TEXT;
      if (*fmt == V_TEXT && strcmp(f, "text"))
        return 2;
    } else if (!strcmp(argv[i], "--now") && i + 1 < argc) {
      if (gw_instant_parse(argv[++i], now)) {
        fprintf(stderr, "--now: expected a FHIR instant such as 2026-12-01T08:00:00+01:00\n");
        return 2;
      }
    } else if (argv[i][0] == '-' && argv[i][1]) {
      return 2;
    } else {
      files[(*nfiles)++] = argv[i];
    }
  }
  return *nfiles ? 0 : 2;
}

static int cmd_validate(int argc, char **argv) {
  enum vformat fmt = V_TEXT;
  time_t now = time(NULL);
  char **files = calloc((size_t)argc + 1, sizeof(*files));
  int nfiles = 0;
  const char *charset = NULL;
  if (!files || validate_args(argc, argv, &fmt, &now, &charset, files, &nfiles)) {
    free(files);
    usage(stderr);
    return 2;
  }
  int json = fmt != V_TEXT, first = 0, shown = 0;
  argc = nfiles;
  argv = files;
  struct gw_engine *e = load_engine();
  if (!e) {
    free(files);
    return 2;
  }
  int worst = 0;
  for (int i = first; i < argc; i++) {
    size_t len;
    char *text = read_file(argv[i], &len);
    if (!text) {
      fprintf(stderr, "%s: cannot read\n", argv[i]);
      worst = 2;
      continue;
    }
    struct gw_diag d;
    gw_diag_init(&d, 200);
    struct gw_check chk = {.caller_rpwdl = NULL, .now = now, .hl7_charset = charset};
    xmlDocPtr doc = NULL;
    int rv = gw_engine_check(e, text, len, GW_D_UNKNOWN, &chk, &doc, &d);
    bool fatal = false;
    for (size_t k = 0; k < d.n; k++)
      fatal |= d.items[k].severity == GW_SEV_FATAL;
    if (json) {
      struct gw_buf out;
      gw_buf_init(&out, 8u << 20);
      gw_engine_outcome_json(e, &d, fmt == V_JSON, &out);
      char name[2048];
      json_name(argv[i], name, sizeof(name));
      if (fmt == V_NDJSON)
        printf("{\"file\":%s,\"outcome\":%s}\n", name, out.data ? (char *)out.data : "{}");
      else if (argc == 1)
        printf("%s\n", out.data ? (char *)out.data : "");
      else
        printf("%s{\"file\": %s, \"outcome\": %s}", shown++ ? ",\n" : "[\n", name, out.data ? (char *)out.data : "{}");
      gw_buf_cleanup(&out);
    } else {
      for (size_t k = 0; k < d.n; k++)
        print_issue(stdout, argv[i], &d.items[k]);
      if (!d.n)
        printf("%s: valid (%s)\n", argv[i], gw_dialect_name(gw_dialect_detect(text, len)));
    }
    int code = rv == GW_OK ? 0 : ((fatal || !doc) && rv != GW_ERR_INVAL) || fatal ? 2 : 1;
    if (rv == GW_ERR_NOTFOUND)
      code = 2;
    if (code > worst)
      worst = code;
    xmlFreeDoc(doc);
    gw_diag_cleanup(&d);
    free(text);
  }
  if (fmt == V_JSON && argc > 1)
    printf("%s\n]\n", shown ? "" : "[");
  gw_engine_free(e);
  free(files);
  return worst;
}

static int cmd_translate(int argc, char **argv) {
  time_t now = time(NULL);
  const char *target = NULL, *file = NULL, *charset = NULL;
  for (int i = 0; i < argc; i++) { /* options in any order */
    if (!strcmp(argv[i], "--charset") && i + 1 < argc) {
      charset = argv[++i];
    } else if (!strcmp(argv[i], "--to") && i + 1 < argc) {
      target = argv[++i];
    } else if (!strcmp(argv[i], "--now") && i + 1 < argc) {
      if (gw_instant_parse(argv[++i], &now)) {
        fprintf(stderr, "--now: expected a FHIR instant such as 2026-12-01T08:00:00+01:00\n");
        return 2;
      }
    } else if (argv[i][0] == '-' || file) {
      usage(stderr);
      return 2;
    } else {
      file = argv[i];
    }
  }
  if (!target || !file) {
    usage(stderr);
    return 2;
  }
  const char *args[3] = {"--to", target, file};
  argv = (char **)args;
  enum gw_dialect to = !strcmp(argv[1], "fhir") || !strcmp(argv[1], "fhir-json") ? GW_D_FHIR_JSON
                       : !strcmp(argv[1], "fhir-xml")                            ? GW_D_FHIR_XML
                       : !strcmp(argv[1], "hl7v2")                               ? GW_D_HL7V2
                       : !strcmp(argv[1], "soap")                                ? GW_D_SOAP
                       : !strcmp(argv[1], "soap-notification")                   ? GW_D_SOAP_NOTIFY
                                                                                 : GW_D_UNKNOWN;
  if (to == GW_D_UNKNOWN) {
    usage(stderr);
    return 2;
  }
  size_t len;
  char *text = read_file(argv[2], &len);
  if (!text) {
    fprintf(stderr, "%s: cannot read\n", argv[2]);
    return 2;
  }
  struct gw_engine *e = load_engine();
  if (!e) {
    free(text);
    return 2;
  }
  struct gw_diag d;
  gw_diag_init(&d, 200);
  struct gw_buf out, json;
  gw_buf_init(&out, 16u << 20);
  gw_buf_init(&json, 16u << 20);
  struct gw_check chk = {.caller_rpwdl = NULL, .now = now, .hl7_charset = charset, .json = &json, .json_pretty = 1};
  xmlDocPtr doc = NULL;
  int rv = gw_engine_check(e, text, len, GW_D_UNKNOWN, &chk, &doc, &d);
  if (rv == GW_OK)
    rv = gw_engine_render_checked(e, doc, &chk, to, 1, now, &out, &d);
  gw_buf_cleanup(&json);
  if (rv == GW_OK) {
    fwrite(out.data, 1, out.len, stdout);
    fputc('\n', stdout);
  } else {
    for (size_t k = 0; k < d.n; k++)
      print_issue(stderr, argv[2], &d.items[k]);
  }
  gw_buf_cleanup(&out);
  gw_diag_cleanup(&d);
  xmlFreeDoc(doc);
  gw_engine_free(e);
  free(text);
  return rv == GW_OK ? 0 : rv == GW_ERR_NOTFOUND ? 2 : 1;
}

int main(int argc, char **argv) {
  xmlInitParser();
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  for (int i = 1; i < argc; i++) /* --help anywhere, in any command: the usage, and success */
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h") || (i == 1 && !strcmp(argv[i], "help"))) {
      usage(stdout);
      return 0;
    }
  if (strcmp(cmd, "serve") == 0)
    return cmd_serve(argc - 2, argv + 2);
  if (strcmp(cmd, "check-config") == 0)
    return cmd_check_config(argc - 2, argv + 2);
  if (strcmp(cmd, "validate") == 0)
    return cmd_validate(argc - 2, argv + 2);
  if (strcmp(cmd, "translate") == 0)
    return cmd_translate(argc - 2, argv + 2);
  if (strcmp(cmd, "identity") == 0)
    return cmd_identity(argc - 2, argv + 2);
  if (strcmp(cmd, "sim") == 0) {
    struct gw_engine *e = load_engine();
    int rv = e ? gw_sim_main(e, argc - 2, argv + 2) : 1;
    gw_engine_free(e);
    return rv;
  }
  if (strcmp(cmd, "outbox") == 0 || strcmp(cmd, "store") == 0) {
    const char *dir = "data", *key = getenv("CERGW_STORE_KEY"), *pg = getenv("CERGW_STORE_PG");
    int i = 2;
    for (; i + 1 < argc && (!strcmp(argv[i], "--data") || !strcmp(argv[i], "--key") || !strcmp(argv[i], "--pg"));
         i += 2)
      *(!strcmp(argv[i], "--data") ? &dir : !strcmp(argv[i], "--key") ? &key : &pg) = argv[i + 1];
    if (!strcmp(cmd, "store") && i + 1 < argc && !strcmp(argv[i], "keygen")) {
      struct gw_buf errs;
      gw_buf_init(&errs, 4096);
      int rv = gw_keyring_create(argv[i + 1], i + 2 < argc ? argv[i + 2] : "key-1", &errs);
      if (rv)
        fprintf(stderr, "%s", errs.data ? (const char *)errs.data : "keygen failed\n");
      else
        printf("%s: a new store key file (mode 0600); set store.key_file to it\n", argv[i + 1]);
      gw_buf_cleanup(&errs);
      return rv ? 1 : 0;
    }
    struct gw_keyring *kr = NULL;
    struct stat sb;
    if (!key && stat("certs/dev/store.key", &sb) == 0)
      key = "certs/dev/store.key"; /* the development key of make run */
    if (key) {
      struct gw_buf errs;
      gw_buf_init(&errs, 4096);
      if (gw_keyring_load(key, &kr, &errs)) {
        fprintf(stderr, "%s", errs.data ? (const char *)errs.data : "");
        gw_buf_cleanup(&errs);
        return 2;
      }
      gw_buf_cleanup(&errs);
      gw_store_use_keyring(kr);
    }
    int rv;
    if (pg && pg[0] && !strcmp(cmd, "store") && i < argc && !strcmp(argv[i], "copy"))
      rv = gw_pg_copy_from_sqlite(dir, pg);
    else if (pg && pg[0] && !(!strcmp(cmd, "store") && i < argc && !strcmp(argv[i], "hash")))
      rv = !strcmp(cmd, "store") ? gw_pg_store_cmd(pg, argc - i, argv + i) : gw_pg_outbox_cmd(pg, argc - i, argv + i);
    else
      rv = strcmp(cmd, "store") == 0 ? gw_store_cmd(dir, argc - i, argv + i) : gw_outbox_cmd(dir, argc - i, argv + i);
    gw_store_use_keyring(NULL);
    gw_keyring_free(kr);
    return rv;
  }
  if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
    printf("cergw %s\n", GW_VERSION);
    return 0;
  }
  usage(stderr);
  return 2;
}
