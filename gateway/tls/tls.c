#include "tls/tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/err.h"

struct gw_tls {
  SSL_CTX *ctx;
};

/* TLS 1.2 suites: ECDHE key exchange with AEAD ciphers only. TLS 1.3 suites
 * are all AEAD; we keep OpenSSL's default order for them. */
static const char cipher_list_12[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                     "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                     "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
static const char cipher_suites_13[] = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

/* Per-connection slot for the subject CN of a certificate that failed
 * verification, so that the refusal log names it. */
static int refused_cn_idx = -1;
static pthread_once_t refused_cn_once = PTHREAD_ONCE_INIT;

static void refused_cn_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp) {
  (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
  free(ptr);
}

static void refused_cn_init(void) { refused_cn_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, refused_cn_free); }

static void name_entry(X509_NAME *nm, int nid, char *out, size_t outlen);

static int verify_cb(int ok, X509_STORE_CTX *sctx) {
  if (ok)
    return ok;
  SSL *ssl = X509_STORE_CTX_get_ex_data(sctx, SSL_get_ex_data_X509_STORE_CTX_idx());
  X509 *x = X509_STORE_CTX_get_current_cert(sctx);
  if (ssl && x && refused_cn_idx >= 0 && !SSL_get_ex_data(ssl, refused_cn_idx)) {
    char cn[128];
    name_entry(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
    char *copy = strdup(cn);
    if (copy && !SSL_set_ex_data(ssl, refused_cn_idx, copy))
      free(copy);
  }
  return ok;
}

static const unsigned char alpn_protos[] = "\x02h2\x08http/1.1";

static void ssl_errors(struct gw_buf *errs, const char *what, const char *path) {
  unsigned long e;
  char msg[256];
  int any = 0;
  while ((e = ERR_get_error()) != 0) {
    ERR_error_string_n(e, msg, sizeof(msg));
    gw_buf_printf(errs, "%s %s: %s\n", what, path ? path : "", msg);
    any = 1;
  }
  if (!any)
    gw_buf_printf(errs, "%s %s: failed\n", what, path ? path : "");
}

/* Connections that speak no HTTP (MLLP) are marked with this ex_data index: they negotiate no ALPN. */
static int no_alpn_index = -1;
static pthread_once_t no_alpn_once = PTHREAD_ONCE_INIT;
static void no_alpn_init(void) { no_alpn_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL); }

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg) {
  (void)arg;
  if (no_alpn_index >= 0 && SSL_get_ex_data(ssl, no_alpn_index))
    return SSL_TLSEXT_ERR_NOACK; /* the MLLP port: HL7 only, whatever the client offers */
  unsigned char *sel;
  if (SSL_select_next_proto(&sel, outlen, alpn_protos, sizeof(alpn_protos) - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL; /* the client offered only protocols we do not speak */
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

static int load_crls(X509_STORE *store, const char *path, struct gw_buf *errs) {
  FILE *f = fopen(path, "r");
  if (!f) {
    gw_buf_printf(errs, "tls.crl %s: cannot open\n", path);
    return GW_ERR_CONF;
  }
  int n = 0;
  X509_CRL *crl;
  while ((crl = PEM_read_X509_CRL(f, NULL, NULL, NULL)) != NULL) {
    if (!X509_STORE_add_crl(store, crl)) {
      X509_CRL_free(crl);
      fclose(f);
      ssl_errors(errs, "tls.crl", path);
      return GW_ERR_CONF;
    }
    X509_CRL_free(crl);
    n++;
  }
  ERR_clear_error(); /* end of file shows up as a PEM "no start line" error */
  fclose(f);
  if (n == 0) {
    gw_buf_printf(errs, "tls.crl %s: no CRL found in file\n", path);
    return GW_ERR_CONF;
  }
  X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
  return GW_OK;
}

static int load_key_wiped(SSL_CTX *ctx, const char *path, struct gw_buf *errs) {
  FILE *f = fopen(path, "r");
  if (!f) {
    gw_buf_printf(errs, "tls.key %s: cannot open\n", path);
    return GW_ERR_CONF;
  }
  EVP_PKEY *pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
  fclose(f);
  if (!pk) {
    ssl_errors(errs, "tls.key", path);
    return GW_ERR_CONF;
  }
  int ok = SSL_CTX_use_PrivateKey(ctx, pk);
  EVP_PKEY_free(pk); /* OpenSSL frees (and cleanses) the key's buffers; the context keeps its reference */
  if (!ok || !SSL_CTX_check_private_key(ctx)) {
    ssl_errors(errs, "tls.key", path);
    return GW_ERR_CONF;
  }
  return GW_OK;
}

/* What both sides load: AEAD suites only, our certificate chain and key, and the CA
 * bundle the peer is verified against. |where| names the settings in messages
 * ("tls" for the server, "client_tls" for calls out). */
static int load_identity(SSL_CTX *ctx, const char *where, const char *cert, const char *key, const char *ca,
                         struct gw_buf *errs) {
  char what[32];
  if (!SSL_CTX_set_cipher_list(ctx, cipher_list_12) || !SSL_CTX_set_ciphersuites(ctx, cipher_suites_13)) {
    ssl_errors(errs, where, "ciphers");
    return GW_ERR_CONF;
  }
  snprintf(what, sizeof(what), "%s.cert", where);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
    ssl_errors(errs, what, cert);
    return GW_ERR_CONF;
  }
  if (load_key_wiped(ctx, key, errs))
    return GW_ERR_CONF;
  snprintf(what, sizeof(what), "%s.%s", where, strcmp(where, "tls") ? "ca" : "client_ca");
  if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
    ssl_errors(errs, what, ca);
    return GW_ERR_CONF;
  }
  return GW_OK;
}

static struct gw_tls *server_new(const struct gw_conf_tls *c, bool cert_optional, struct gw_buf *errs);
struct gw_tls *gw_tls_server_new(const struct gw_conf_tls *c, struct gw_buf *errs) {
  return server_new(c, false, errs);
}
struct gw_tls *gw_tls_console_new(const struct gw_conf_tls *c, struct gw_buf *errs) {
  return server_new(c, true, errs);
}

static struct gw_tls *server_new(const struct gw_conf_tls *c, bool cert_optional, struct gw_buf *errs) {
  struct gw_tls *t = calloc(1, sizeof(*t));
  if (!t)
    return NULL;
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) {
    ssl_errors(errs, "tls", "context");
    goto fail_alloc;
  }
  t->ctx = ctx;
  SSL_CTX_set_min_proto_version(ctx, c->min_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  /* idle connections give their read/write buffers back (memory per idle connection) */
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (load_identity(ctx, "tls", c->cert, c->key, c->ca, errs))
    goto fail;
  STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(c->ca);
  if (!names) {
    ssl_errors(errs, "tls.client_ca", c->ca);
    goto fail;
  }
  SSL_CTX_set_client_CA_list(ctx, names);
  if (c->crl && load_crls(SSL_CTX_get_cert_store(ctx), c->crl, errs))
    goto fail;
  pthread_once(&refused_cn_once, refused_cn_init);
  SSL_CTX_set_verify(
      ctx, SSL_VERIFY_PEER | (cert_optional ? 0 : SSL_VERIFY_FAIL_IF_NO_PEER_CERT) | SSL_VERIFY_CLIENT_ONCE, verify_cb);
  SSL_CTX_set_verify_depth(ctx, 5);
  /* No session resumption: every connection is verified in full against the
   * CA bundle and the CRL, so a revoked certificate cannot ride on an old
   * session, and TLS 1.3 tickets (each one an encrypted copy of the client
   * certificate) cost nothing. Clients keep HTTP/2 connections open instead. */
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  static const unsigned char sid_ctx[] = "cergw";
  SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
  SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
  return t;

fail:
  SSL_CTX_free(ctx);
fail_alloc:
  free(t);
  return NULL;
}

struct gw_tls *gw_tls_client_new(const char *cert, const char *key, const char *ca, struct gw_buf *errs) {
  struct gw_tls *t = calloc(1, sizeof(*t));
  SSL_CTX *ctx = t ? SSL_CTX_new(TLS_client_method()) : NULL;
  if (!ctx) {
    ssl_errors(errs, "tls", "client context");
    free(t);
    return NULL;
  }
  t->ctx = ctx;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  if (load_identity(ctx, "client_tls", cert, key, ca, errs))
    goto fail;
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  SSL_CTX_set_verify_depth(ctx, 5);
  return t;
fail:
  gw_tls_free(t);
  return NULL;
}

void gw_tls_free(struct gw_tls *t) {
  if (!t)
    return;
  SSL_CTX_free(t->ctx);
  free(t);
}

struct gw_tls_conn {
  SSL *ssl;
  unsigned long err; /* first OpenSSL error of a failed handshake */
  int eof;           /* the peer closed the transport during the handshake */
};

/* A connection on |fd| with |t|'s settings; |host|: a client's peer name (NULL: server side). */
static struct gw_tls_conn *conn_new(struct gw_tls *t, int fd, const char *host) {
  struct gw_tls_conn *c = calloc(1, sizeof(*c));
  if (!c)
    return NULL;
  c->ssl = SSL_new(t->ctx);
  bool ok = c->ssl && SSL_set_fd(c->ssl, fd);
  if (ok && host) {
    /* the server's certificate must name |host|: an IP address in its IP SANs, a DNS name
     * in its DNS SANs (and sent as SNI, which never carries an address) */
    unsigned char addr[16];
    bool ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
    ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), host) == 1
            : SSL_set_tlsext_host_name(c->ssl, host) == 1 && SSL_set1_host(c->ssl, host) == 1;
  }
  if (!ok) {
    SSL_free(c->ssl);
    free(c);
    ERR_clear_error();
    return NULL;
  }
  if (host)
    SSL_set_connect_state(c->ssl);
  else
    SSL_set_accept_state(c->ssl);
  return c;
}

struct gw_tls_conn *gw_tls_conn_new(struct gw_tls *t, int fd) {
  return conn_new(t, fd, NULL);
}

void gw_tls_conn_no_alpn(struct gw_tls_conn *c) {
  pthread_once(&no_alpn_once, no_alpn_init);
  if (c && no_alpn_index >= 0)
    SSL_set_ex_data(c->ssl, no_alpn_index, c);
}

struct gw_tls_conn *gw_tls_client_conn_new(struct gw_tls *t, int fd, const char *host) {
  return conn_new(t, fd, host);
}

const char *gw_tls_verify_error(struct gw_tls_conn *c) {
  long v = SSL_get_verify_result(c->ssl);
  if (v != X509_V_OK)
    return X509_verify_cert_error_string(v);
  if (c->err) {
    static __thread char buf[160];
    ERR_error_string_n(c->err, buf, sizeof(buf));
    return buf;
  }
  return c->eof ? "the peer closed the connection" : "handshake failed";
}

void gw_tls_conn_free(struct gw_tls_conn *c) {
  if (!c)
    return;
  SSL_free(c->ssl);
  free(c);
}

/* Maps SSL_get_error() to our codes; remembers the first error for logging. */
static long ssl_result(struct gw_tls_conn *c, int rv) {
  switch (SSL_get_error(c->ssl, rv)) {
  case SSL_ERROR_WANT_READ:
    return GW_TLS_WANT_READ;
  case SSL_ERROR_WANT_WRITE:
    return GW_TLS_WANT_WRITE;
  case SSL_ERROR_ZERO_RETURN:
    return 0;
  case SSL_ERROR_SYSCALL:
    if (!c->err)
      c->err = ERR_peek_error();
    if (!c->err)
      c->eof = 1;
    ERR_clear_error();
    return GW_ERR_TLS;
  default:
    if (!c->err)
      c->err = ERR_peek_error();
    ERR_clear_error();
    return GW_ERR_TLS;
  }
}

int gw_tls_handshake(struct gw_tls_conn *c) {
  int rv = SSL_do_handshake(c->ssl);
  if (rv == 1)
    return GW_OK;
  long r = ssl_result(c, rv);
  return r == 0 ? GW_ERR_TLS : (int)r;
}

long gw_tls_read(struct gw_tls_conn *c, void *buf, size_t len) {
  int n = SSL_read(c->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
  if (n > 0)
    return n;
  long r = ssl_result(c, n);
  /* an unexpected EOF after the handshake is still the end of the stream */
  return (r == GW_ERR_TLS && (c->eof || ERR_GET_REASON(c->err) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) ? 0 : r;
}

long gw_tls_write(struct gw_tls_conn *c, const void *buf, size_t len) {
  int n = SSL_write(c->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
  return n > 0 ? n : ssl_result(c, n);
}

void gw_tls_close_notify(struct gw_tls_conn *c) {
  if (SSL_is_init_finished(c->ssl))
    SSL_shutdown(c->ssl);
  ERR_clear_error();
}

enum gw_alpn gw_tls_alpn(struct gw_tls_conn *c) {
  const unsigned char *p = NULL;
  unsigned int n = 0;
  SSL_get0_alpn_selected(c->ssl, &p, &n);
  return (n == 2 && memcmp(p, "h2", 2) == 0) ? GW_ALPN_H2 : GW_ALPN_HTTP11;
}

static void name_entry(X509_NAME *nm, int nid, char *out, size_t outlen) {
  out[0] = 0;
  int idx = X509_NAME_get_index_by_NID(nm, nid, -1);
  if (idx < 0)
    return;
  ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(nm, idx));
  unsigned char *utf8 = NULL;
  int n = ASN1_STRING_to_UTF8(&utf8, s);
  if (n < 0)
    return;
  size_t m = (size_t)n < outlen - 1 ? (size_t)n : outlen - 1;
  memcpy(out, utf8, m);
  out[m] = 0;
  OPENSSL_free(utf8);
}

/* Copies the digits after |prefix| in |in| into |out| when they are all
 * digits and their count is one of the allowed lengths. */
static void prefixed_digits(const char *in, const char *prefix, const int *lens, char *out, size_t outlen) {
  out[0] = 0;
  size_t pl = strlen(prefix);
  if (strncmp(in, prefix, pl) != 0)
    return;
  const char *d = in + pl;
  size_t n = strspn(d, "0123456789");
  if (d[n] != 0)
    return;
  for (; *lens; lens++)
    if ((size_t)*lens == n && n < outlen) {
      memcpy(out, d, n + 1);
      return;
    }
}

/* What makes a verified certificate unfit to name anybody: a CA certificate, no clientAuth in its extended
 * key usage, or an identity field given twice (which one would count?). */
static void identity_problem(X509 *x, X509_NAME *subj, struct gw_identity *id) {
  static const struct {
    int nid;
    const char *name;
  } single[] = {{NID_organizationIdentifier, "organizationIdentifier"},
                {NID_serialNumber, "serialNumber"},
                {NID_organizationalUnitName, "organizationalUnitName"},
                {NID_commonName, "commonName"}};
  if (X509_check_ca(x) > 0) {
    snprintf(id->problem, sizeof(id->problem), "a CA certificate is not a client");
    return;
  }
  if (!(X509_get_extension_flags(x) & EXFLAG_XKUSAGE) || !(X509_get_extended_key_usage(x) & XKU_SSL_CLIENT)) {
    snprintf(id->problem, sizeof(id->problem), "no clientAuth in the extended key usage");
    return;
  }
  for (size_t i = 0; i < sizeof(single) / sizeof(single[0]); i++) {
    int first = X509_NAME_get_index_by_NID(subj, single[i].nid, -1);
    if (first >= 0 && X509_NAME_get_index_by_NID(subj, single[i].nid, first) >= 0) {
      snprintf(id->problem, sizeof(id->problem), "the subject has more than one %s", single[i].name);
      id->rpwdl[0] = id->regon[0] = 0;
      return;
    }
  }
}

static void identity_from_x509(X509 *x, struct gw_identity *id) {
  memset(id, 0, sizeof(*id));
  X509_NAME *subj = X509_get_subject_name(x);
  char ou[64], org_id[64], serial_attr[64];
  name_entry(subj, NID_commonName, id->cn, sizeof(id->cn));
  name_entry(subj, NID_organizationName, id->org, sizeof(id->org));
  name_entry(subj, NID_organizationalUnitName, ou, sizeof(ou));
  name_entry(subj, NID_organizationIdentifier, org_id, sizeof(org_id));
  name_entry(subj, NID_serialNumber, serial_attr, sizeof(serial_attr));
  name_entry(X509_get_issuer_name(x), NID_commonName, id->issuer_cn, sizeof(id->issuer_cn));
  static const int rpwdl_lens[] = {12, 0}, regon_lens[] = {9, 14, 0};
  prefixed_digits(org_id, "RPWDL-", rpwdl_lens, id->rpwdl, sizeof(id->rpwdl));
  prefixed_digits(serial_attr, "REGON-", regon_lens, id->regon, sizeof(id->regon));
  identity_problem(x, subj, id);
  if (id->problem[0])
    id->role = GW_ROLE_OTHER; /* ambiguous or not a client: nobody */
  else if (strcmp(ou, "clinic") == 0 || (ou[0] == 0 && id->rpwdl[0]))
    id->role = id->rpwdl[0] ? GW_ROLE_CLINIC : GW_ROLE_OTHER; /* a clinic without RPWDL is nobody */
  else if (strcmp(ou, "p1") == 0)
    id->role = GW_ROLE_P1;
  else if (strcmp(ou, "gateway") == 0)
    id->role = GW_ROLE_GATEWAY;
  else if (strcmp(ou, "backend") == 0)
    id->role = GW_ROLE_BACKEND;
  else if (strcmp(ou, "operator") == 0)
    id->role = GW_ROLE_OPERATOR;
  BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
  if (bn) {
    char *hex = BN_bn2hex(bn);
    if (hex) {
      snprintf(id->serial, sizeof(id->serial), "%s", hex);
      OPENSSL_free(hex);
    }
    BN_free(bn);
  }
  unsigned char md[32];
  unsigned int mdlen = 0;
  if (X509_digest(x, EVP_sha256(), md, &mdlen) && mdlen == 32)
    for (unsigned i = 0; i < 32; i++)
      snprintf(id->fp_sha256 + 2 * i, 3, "%02x", md[i]);
}

int gw_tls_peer_identity(struct gw_tls_conn *c, struct gw_identity *out) {
  SSL *ssl = c->ssl;
  X509 *x = SSL_get0_peer_certificate(ssl);
  if (!x || SSL_get_verify_result(ssl) != X509_V_OK) {
    memset(out, 0, sizeof(*out));
    return GW_ERR_TLS;
  }
  identity_from_x509(x, out);
  return GW_OK;
}

int gw_tls_identity_from_file(const char *pem_path, struct gw_identity *out) {
  FILE *f = fopen(pem_path, "r");
  if (!f)
    return GW_ERR_IO;
  X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
  fclose(f);
  if (!x) {
    ERR_clear_error();
    return GW_ERR_INVAL;
  }
  identity_from_x509(x, out);
  X509_free(x);
  return GW_OK;
}

enum gw_hs_reason gw_tls_failure(struct gw_tls_conn *c, char *detail, size_t dl) {
  SSL *ssl = c->ssl;
  enum gw_hs_reason r = GW_HS_EOF;
  detail[0] = 0;
  long vr = SSL_get_verify_result(ssl);
  unsigned long last = c->err;
  if (last && ERR_GET_LIB(last) == ERR_LIB_SSL && ERR_GET_REASON(last) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
    r = GW_HS_NO_CERT;
  else if (last && ERR_GET_LIB(last) == ERR_LIB_SSL && ERR_GET_REASON(last) == SSL_R_NO_APPLICATION_PROTOCOL)
    r = GW_HS_NO_ALPN;
  if (r == GW_HS_EOF && vr != X509_V_OK) {
    switch (vr) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
      r = GW_HS_UNKNOWN_CA;
      break;
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
      r = GW_HS_EXPIRED;
      break;
    case X509_V_ERR_CERT_REVOKED:
      r = GW_HS_REVOKED;
      break;
    default:
      r = GW_HS_BAD_CERT;
    }
    snprintf(detail, dl, "%s", X509_verify_cert_error_string(vr));
  } else if (r == GW_HS_NO_CERT) {
    snprintf(detail, dl, "client sent no certificate");
  } else if (r == GW_HS_NO_ALPN) {
    snprintf(detail, dl, "client offered neither h2 nor http/1.1");
  } else if (last) {
    r = GW_HS_PROTOCOL;
    ERR_error_string_n(last, detail, dl);
  } else {
    snprintf(detail, dl, "peer closed the connection during the handshake");
  }
  /* name the refused certificate so an operator can find its owner */
  X509 *x = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
  const char *refused = (ssl && refused_cn_idx >= 0) ? SSL_get_ex_data(ssl, refused_cn_idx) : NULL;
  if (x || refused) {
    char cn[128];
    if (refused)
      snprintf(cn, sizeof(cn), "%s", refused);
    else
      name_entry(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
    size_t used = strlen(detail);
    if (cn[0] && used + 8 < dl)
      snprintf(detail + used, dl - used, "; subject CN=%s", cn);
  }
  return r;
}
