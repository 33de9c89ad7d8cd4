/* TLS contexts and peer identity. The only folder that includes OpenSSL;
 * the rest of the gateway sees opaque connections and plain byte counts. */
#ifndef GW_TLS_TLS_H
#define GW_TLS_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "conf/conf.h"
#include "core/identity.h"
#include "core/metrics.h"

struct gw_tls;      /* a server context: certificates, CA, CRL, ALPN */
struct gw_tls_conn; /* one TLS connection over a non-blocking socket */
struct gw_buf;

enum gw_alpn { GW_ALPN_HTTP11 = 0, GW_ALPN_H2 = 1 };

/* Results of the non-blocking calls below besides byte counts and GW_ERR_*. */
#define GW_TLS_WANT_READ  (-100)
#define GW_TLS_WANT_WRITE (-101)

/* Builds the server context: TLS 1.2/1.3 (min from |c|), AEAD suites only,
 * client certificate required and verified against |c->ca| and |c->crl|,
 * ALPN h2 and http/1.1. Problems are appended to |errs|. Returns NULL on
 * failure. The private key material is wiped from memory after loading. */
struct gw_tls *gw_tls_server_new(const struct gw_conf_tls *c, struct gw_buf *errs);
/* The same, for the console's listener: a client certificate is asked for and verified when given, but
 * a browser without one may connect (it then needs the console's bearer token). */
struct gw_tls *gw_tls_console_new(const struct gw_conf_tls *c, struct gw_buf *errs);
void gw_tls_free(struct gw_tls *t);

/* Builds a client context (the gateway calling a peer): TLS 1.2/1.3, AEAD
 * suites only, the certificate chain |cert| with its |key|, the peer verified
 * against |ca|. Problems are appended to |errs|; NULL on failure. */
struct gw_tls *gw_tls_client_new(const char *cert, const char *key, const char *ca, struct gw_buf *errs);
/* Starts a client-side TLS connection to |host| (SNI; the peer's certificate
 * must name it) on the connecting non-blocking socket |fd| (borrowed). */
struct gw_tls_conn *gw_tls_client_conn_new(struct gw_tls *t, int fd, const char *host);
/* After a failed client handshake: why, in words (certificate verification
 * first). The text lives until the thread's next call. */
const char *gw_tls_verify_error(struct gw_tls_conn *c);

/* Starts a server-side TLS connection on the connected non-blocking socket
 * |fd| (borrowed: the caller closes it after gw_tls_conn_free). NULL when
 * out of memory. */
struct gw_tls_conn *gw_tls_conn_new(struct gw_tls *t, int fd);
/* Marks a server connection that speaks no HTTP (the MLLP port): it negotiates no ALPN protocol. Call
 * before the handshake. */
void gw_tls_conn_no_alpn(struct gw_tls_conn *c);
void gw_tls_conn_free(struct gw_tls_conn *c);

/* Advances the handshake: GW_OK when complete, GW_TLS_WANT_READ/WRITE to
 * wait for the socket, GW_ERR_TLS when refused (see gw_tls_failure). */
int gw_tls_handshake(struct gw_tls_conn *c);
/* Reads decrypted bytes: the count, 0 at the peer's end of stream,
 * GW_TLS_WANT_READ/WRITE, or GW_ERR_TLS. */
long gw_tls_read(struct gw_tls_conn *c, void *buf, size_t len);
/* Writes |len| bytes (all or nothing; retry with the same bytes after a
 * WANT): |len|, GW_TLS_WANT_READ/WRITE, or GW_ERR_TLS. */
long gw_tls_write(struct gw_tls_conn *c, const void *buf, size_t len);
/* Sends close_notify, best effort, never blocks. */
void gw_tls_close_notify(struct gw_tls_conn *c);

/* After a successful handshake: the negotiated protocol (http/1.1 when the
 * client offered no ALPN) and the peer's identity. */
enum gw_alpn gw_tls_alpn(struct gw_tls_conn *c);
int gw_tls_peer_identity(struct gw_tls_conn *c, struct gw_identity *out);

/* After a failed handshake: classifies why and writes a short human reason
 * (and the refused certificate's subject, when there was one) into |detail|. */
enum gw_hs_reason gw_tls_failure(struct gw_tls_conn *c, char *detail, size_t detail_len);

/* Reads identity fields out of a PEM certificate file (used by tests and by
 * check-config to show what a certificate would be seen as). */
int gw_tls_identity_from_file(const char *pem_path, struct gw_identity *out);

#endif
