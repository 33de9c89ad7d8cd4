/* cergw command line: serve, check-config, identity, version. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/log.h"
#include "core/version.h"
#include "net/server.h"
#include "tls/tls.h"

static void usage(FILE *f) {
  fprintf(f, "usage: cergw serve [--config FILE] [--listen HOST:PORT]\n"
             "       cergw check-config FILE\n"
             "       cergw identity CERT.pem   show the identity the gateway reads from a certificate\n"
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
  int rv = gw_server_run(&c);
  gw_conf_cleanup(&c);
  return rv ? 1 : 0;
}

/* Validates a configuration completely: syntax, keys, types, ranges, and
 * that the TLS material loads (certificate, key, CA bundle, CRL). */
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

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "serve") == 0)
    return cmd_serve(argc - 2, argv + 2);
  if (strcmp(cmd, "check-config") == 0)
    return cmd_check_config(argc - 2, argv + 2);
  if (strcmp(cmd, "identity") == 0)
    return cmd_identity(argc - 2, argv + 2);
  if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
    printf("cergw %s\n", GW_VERSION);
    return 0;
  }
  if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0) {
    usage(stdout);
    return 0;
  }
  usage(stderr);
  return 2;
}
