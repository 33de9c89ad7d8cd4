/* Signatures and random bytes, behind tls/ so that OpenSSL stays in this
 * folder: RS256 JSON Web Tokens for OAuth2 private_key_jwt (RFC 7523) —
 * signed by the gateway, verified by the P1 simulator — and random bytes
 * for ids and backoff jitter. */
#ifndef GW_TLS_JWT_H
#define GW_TLS_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

struct gw_jwt_key;

/* A signing key from a PEM private key file. NULL with the reason in |errs|. */
struct gw_jwt_key *gw_jwt_key_private(const char *pem_path, struct gw_buf *errs);
/* A verifying key: the public key of a PEM certificate. */
struct gw_jwt_key *gw_jwt_key_public(const char *cert_path, struct gw_buf *errs);
void gw_jwt_key_free(struct gw_jwt_key *k);

/* header.claims.signature (RS256, base64url) of |claims_json| into |out|.
 * Returns 0, GW_ERR_TOOBIG when |cap| is too small, GW_ERR_TLS on failure. */
int gw_jwt_sign(const struct gw_jwt_key *k, const char *claims_json, char *out, size_t cap);
/* Checks the signature of |jwt| (|n| bytes) and decodes its claims into
 * |claims| (NUL-terminated). Returns 0, GW_ERR_INVAL (not a JWT, not
 * base64url) or GW_ERR_TLS (the signature does not verify). */
int gw_jwt_verify(const struct gw_jwt_key *k, const char *jwt, size_t n, char *claims, size_t cap);

/* |n| cryptographically strong random bytes. Returns 0 or GW_ERR_TLS. */
int gw_random_bytes(void *buf, size_t n);
/* One random 32-bit number (0 when the generator fails). */
uint32_t gw_random_u32(void);
/* SHA-256 of |n| bytes as 64 lowercase hex digits and a NUL. */
void gw_sha256_hex(const void *data, size_t n, char out[65]);
/* A random (version 4) UUID, 36 characters and a NUL. */
void gw_random_uuid(char out[37]);

#endif
