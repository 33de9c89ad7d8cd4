/* TLS contexts and peer identity. The only folder that includes OpenSSL;
 * it also creates the libevent OpenSSL bufferevents so that the rest of the
 * gateway sees only struct bufferevent. */
#ifndef GW_TLS_TLS_H
#define GW_TLS_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "conf/conf.h"
#include "core/identity.h"
#include "core/metrics.h"

struct gw_tls;
struct bufferevent;
struct event_base;
struct gw_buf;

enum gw_alpn { GW_ALPN_HTTP11 = 0, GW_ALPN_H2 = 1 };

/* Builds the server context: TLS 1.2/1.3 (min from |c|), AEAD suites only,
 * client certificate required and verified against |c->ca| and |c->crl|,
 * ALPN h2 and http/1.1. Problems are appended to |errs|. Returns NULL on
 * failure. The private key material is wiped from memory after loading. */
struct gw_tls *gw_tls_server_new(const struct gw_conf_tls *c, struct gw_buf *errs);
void gw_tls_free(struct gw_tls *t);

/* Wraps accepted socket |fd| into a server-side TLS bufferevent that starts
 * the handshake. Takes ownership of |fd| (closed when the bufferevent is
 * freed). Returns NULL on allocation failure (|fd| is then closed). */
struct bufferevent *gw_tls_accept(struct gw_tls *t, struct event_base *base, int fd);

/* After a successful handshake: the negotiated protocol (http/1.1 when the
 * client offered no ALPN) and the peer's identity. */
enum gw_alpn gw_tls_alpn(struct bufferevent *bev);
int gw_tls_peer_identity(struct bufferevent *bev, struct gw_identity *out);

/* After a failed handshake: classifies why and writes a short human reason
 * (and the refused certificate's subject, when there was one) into |detail|. */
enum gw_hs_reason gw_tls_failure(struct bufferevent *bev, char *detail, size_t detail_len);

/* Sends a TLS close_notify alert now (best effort, never blocks). */
void gw_tls_close_notify(struct bufferevent *bev);

/* Reads identity fields out of a PEM certificate file (used by tests and by
 * check-config to show what a certificate would be seen as). */
int gw_tls_identity_from_file(const char *pem_path, struct gw_identity *out);

#endif
