/* Personal data at rest: the store's content columns sealed with AES-256-GCM
 * (OpenSSL EVP), identifiers it must look up kept as keyed hashes
 * (HMAC-SHA-256), under keys read from one file.
 *
 * The key file: text, one key per line, "ID HEX" (ID 1-32 of [A-Za-z0-9._-],
 * HEX 64 hex digits = 32 bytes); '#' starts a comment. The LAST key seals new
 * rows; every key in the file opens the rows sealed under it (rotation: append
 * a key, keep the old ones until `cergw store rekey` has re-sealed their
 * rows). The index key of the keyed hashes is derived from the FIRST key
 * (HMAC-SHA-256 of it over "cergw index key"), so lookups keep working across
 * rotations as long as the first line stays. The file must be a regular file
 * of mode 0600 (or stricter) owned by the user the gateway runs as.
 *
 * A sealed value: "CGS1", one byte n, the key id (n bytes), a 12-byte random
 * nonce, the ciphertext, the 16-byte GCM tag. The associated data is the
 * row's message id (8 bytes, big-endian), so a sealed value moved to another
 * row does not open. An empty value stays empty (nothing to hide, and the
 * store's "no copy kept" marker). */
#ifndef GW_TLS_SEAL_H
#define GW_TLS_SEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define GW_SEAL_MAGIC    "CGS1"
#define GW_SEAL_MAX_KEYS 32
#define GW_SEAL_OVERHEAD (4 + 1 + 32 + 12 + 16) /* at most, beyond the plaintext */

struct gw_keyring;

/* Reads the key file at |path|: checks its owner and mode, then its lines.
 * Problems (with the fix) go to |errs|. GW_OK, GW_ERR_CONF or GW_ERR_NOMEM. */
int gw_keyring_load(const char *path, struct gw_keyring **out, struct gw_buf *errs);
void gw_keyring_free(struct gw_keyring *kr);
/* The id of the key that seals new rows. */
const char *gw_keyring_current(const struct gw_keyring *kr);
/* Does the ring hold key |id|? */
bool gw_keyring_has(const struct gw_keyring *kr, const char *id);

/* Is |v| a sealed value? */
bool gw_sealed(const uint8_t *v, size_t len);
/* The key id a sealed value names, into |id| (n bytes); "" when |v| is not sealed. */
void gw_sealed_key_id(const uint8_t *v, size_t len, char *id, size_t n);

/* Seals |len| bytes under the current key with |aad| as associated data,
 * appending to |out|. An empty value is appended as is. GW_OK or an error. */
int gw_seal(const struct gw_keyring *kr, int64_t aad, const uint8_t *in, size_t len, struct gw_buf *out);
/* Opens a value sealed by gw_seal, appending the plaintext to |out|; a value
 * that is not sealed (written before sealing was on) is appended as is.
 * GW_ERR_NOTFOUND: its key id is not in the ring; GW_ERR_INVAL: it does not
 * authenticate (another row's, altered, or another key of that id). */
int gw_unseal(const struct gw_keyring *kr, int64_t aad, const uint8_t *in, size_t len, struct gw_buf *out);

/* HMAC-SHA-256 of |len| bytes under the index key, as 64 hex digits. */
void gw_keyed_hash(const struct gw_keyring *kr, const void *in, size_t len, char out[65]);

/* Writes a new key file at |path| (mode 0600, refused when it exists) with one
 * key named |id| from the system's random generator. GW_OK or an error. */
int gw_keyring_create(const char *path, const char *id, struct gw_buf *errs);

#endif
