#include "tls/seal.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"

struct key {
  char id[33];
  uint8_t k[32];
};

struct gw_keyring {
  struct key keys[GW_SEAL_MAX_KEYS];
  int n;             /* the last one seals */
  uint8_t index[32]; /* the keyed hashes' key, from the first */
};

static EVP_CIPHER *aes;
static EVP_MD *sha256;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static void fetch(void) { /* once: OpenSSL 3 looks an algorithm up again on every implicit use */
  aes = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
  sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static bool id_ok(const char *s, size_t n) {
  if (n == 0 || n > 32)
    return false;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
      return false;
  return true;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c = tolower(c);
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int gw_keyring_load(const char *path, struct gw_keyring **out, struct gw_buf *errs) {
  *out = NULL;
  pthread_once(&once, fetch);
  if (!aes || !sha256) {
    gw_buf_printf(errs, "%s: OpenSSL offers no AES-256-GCM or SHA-256\n", path);
    return GW_ERR_CONF;
  }
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  struct stat sb;
  if (fd < 0 || fstat(fd, &sb) != 0) {
    gw_buf_printf(errs, "%s: cannot read the store key file (%s); create one with `cergw store keygen %s`\n", path,
                  strerror(errno), path);
    if (fd >= 0)
      close(fd);
    return GW_ERR_CONF;
  }
  if (!S_ISREG(sb.st_mode) || (sb.st_mode & 077) || sb.st_uid != geteuid()) {
    gw_buf_printf(errs,
                  "%s: the store key file must be a regular file of mode 0600 owned by the user the gateway runs "
                  "as (it is mode %04o, owner uid %u, we are uid %u): chown %u %s && chmod 600 %s\n",
                  path, (unsigned)(sb.st_mode & 07777), (unsigned)sb.st_uid, (unsigned)geteuid(), (unsigned)geteuid(),
                  path, path);
    close(fd);
    return GW_ERR_CONF;
  }
  char text[8192];
  ssize_t n = read(fd, text, sizeof(text) - 1);
  close(fd);
  if (n < 0 || n == (ssize_t)sizeof(text) - 1) {
    gw_buf_printf(errs, "%s: unreadable or larger than 8 KiB\n", path);
    return GW_ERR_CONF;
  }
  text[n] = 0;
  struct gw_keyring *kr = calloc(1, sizeof(*kr));
  if (!kr)
    return GW_ERR_NOMEM;
  int line = 0, rv = GW_OK;
  for (char *save = NULL, *l = strtok_r(text, "\n", &save); l && rv == GW_OK; l = strtok_r(NULL, "\n", &save)) {
    line++;
    while (*l == ' ' || *l == '\t')
      l++;
    if (!*l || *l == '#' || *l == '\r')
      continue;
    size_t idn = strcspn(l, " \t");
    char *hex = l + idn;
    while (*hex == ' ' || *hex == '\t')
      hex++;
    size_t hn = strcspn(hex, " \t\r#");
    bool ok = id_ok(l, idn) && hn == 64 && kr->n < GW_SEAL_MAX_KEYS;
    for (size_t i = 0; ok && i < 32; i++) {
      int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
      ok = hi >= 0 && lo >= 0;
      kr->keys[kr->n].k[i] = (uint8_t)(hi * 16 + lo);
    }
    for (int k = 0; ok && k < kr->n; k++)
      ok = strncmp(kr->keys[k].id, l, idn) != 0 || kr->keys[k].id[idn] != 0;
    if (!ok) {
      gw_buf_printf(errs,
                    "%s:%d: not \"ID HEX\" (ID of 1 to 32 letters, digits, '.', '_', '-', unique; HEX 64 hex "
                    "digits; at most 32 keys)\n",
                    path, line);
      rv = GW_ERR_CONF;
      break;
    }
    memcpy(kr->keys[kr->n].id, l, idn);
    kr->keys[kr->n].id[idn] = 0;
    kr->n++;
  }
  OPENSSL_cleanse(text, sizeof(text));
  if (rv == GW_OK && kr->n == 0) {
    gw_buf_printf(errs, "%s: no key in the file\n", path);
    rv = GW_ERR_CONF;
  }
  unsigned int hl = 0;
  if (rv == GW_OK && !HMAC(sha256, kr->keys[0].k, 32, (const unsigned char *)"cergw index key", 15, kr->index, &hl))
    rv = GW_ERR_NOMEM;
  if (rv != GW_OK) {
    gw_keyring_free(kr);
    return rv;
  }
  *out = kr;
  return GW_OK;
}

void gw_keyring_free(struct gw_keyring *kr) {
  if (!kr)
    return;
  OPENSSL_cleanse(kr, sizeof(*kr));
  free(kr);
}

const char *gw_keyring_current(const struct gw_keyring *kr) { return kr->keys[kr->n - 1].id; }

static const struct key *find(const struct gw_keyring *kr, const char *id, size_t n) {
  for (int i = 0; i < kr->n; i++)
    if (strlen(kr->keys[i].id) == n && memcmp(kr->keys[i].id, id, n) == 0)
      return &kr->keys[i];
  return NULL;
}

bool gw_keyring_has(const struct gw_keyring *kr, const char *id) { return find(kr, id, strlen(id)) != NULL; }

bool gw_sealed(const uint8_t *v, size_t len) {
  return len >= 5 && memcmp(v, GW_SEAL_MAGIC, 4) == 0 && v[4] >= 1 && v[4] <= 32 && len >= (size_t)5 + v[4] + 12 + 16;
}

void gw_sealed_key_id(const uint8_t *v, size_t len, char *id, size_t n) {
  if (!n)
    return;
  id[0] = 0;
  if (gw_sealed(v, len))
    snprintf(id, n, "%.*s", (int)v[4], (const char *)v + 5);
}

static void aad_bytes(int64_t aad, uint8_t b[8]) {
  for (int i = 7; i >= 0; i--, aad >>= 8)
    b[i] = (uint8_t)(aad & 0xff);
}

int gw_seal(const struct gw_keyring *kr, int64_t aad, const uint8_t *in, size_t len, struct gw_buf *out) {
  if (len == 0)
    return gw_buf_append(out, "", 0);
  if (len > (size_t)1 << 30)
    return GW_ERR_TOOBIG;
  const struct key *k = &kr->keys[kr->n - 1];
  size_t idn = strlen(k->id), at = out->len;
  int rv = gw_buf_append(out, GW_SEAL_MAGIC, 4);
  uint8_t hdr[1 + 32 + 12], a[8];
  hdr[0] = (uint8_t)idn;
  memcpy(hdr + 1, k->id, idn);
  if (rv == GW_OK && RAND_bytes(hdr + 1 + idn, 12) != 1)
    rv = GW_ERR_NOMEM;
  if (rv == GW_OK)
    rv = gw_buf_append(out, hdr, 1 + idn + 12);
  size_t ct_at = out->len;
  if (rv == GW_OK) /* room for the ciphertext and the tag */
    rv = gw_buf_append(out, in, len);
  if (rv == GW_OK)
    rv = gw_buf_append(out, hdr, 16);
  aad_bytes(aad, a);
  EVP_CIPHER_CTX *c = rv == GW_OK ? EVP_CIPHER_CTX_new() : NULL;
  int l1 = 0, l2 = 0;
  bool ok = c && EVP_EncryptInit_ex2(c, aes, k->k, hdr + 1 + idn, NULL) == 1 &&
            EVP_EncryptUpdate(c, NULL, &l1, a, 8) == 1 &&
            EVP_EncryptUpdate(c, out->data + ct_at, &l1, in, (int)len) == 1 &&
            EVP_EncryptFinal_ex(c, out->data + ct_at + l1, &l2) == 1 &&
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, out->data + ct_at + len) == 1;
  EVP_CIPHER_CTX_free(c);
  if (!ok) {
    if (at < out->len)
      OPENSSL_cleanse(out->data + at, out->len - at);
    out->len = at;
    return rv != GW_OK ? rv : GW_ERR_NOMEM;
  }
  return GW_OK;
}

int gw_unseal(const struct gw_keyring *kr, int64_t aad, const uint8_t *in, size_t len, struct gw_buf *out) {
  if (!gw_sealed(in, len))
    return gw_buf_append(out, in, len);
  size_t idn = in[4];
  const struct key *k = kr ? find(kr, (const char *)in + 5, idn) : NULL;
  if (!k)
    return GW_ERR_NOTFOUND;
  const uint8_t *iv = in + 5 + idn, *ct = iv + 12;
  size_t ctn = len - 5 - idn - 12 - 16, at = out->len;
  uint8_t a[8];
  aad_bytes(aad, a);
  int rv = gw_buf_append(out, ct, ctn); /* room, overwritten with the plaintext */
  if (rv != GW_OK)
    return rv;
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  int l1 = 0, l2 = 0;
  bool ok = c && EVP_DecryptInit_ex2(c, aes, k->k, iv, NULL) == 1 && EVP_DecryptUpdate(c, NULL, &l1, a, 8) == 1 &&
            EVP_DecryptUpdate(c, out->data + at, &l1, ct, (int)ctn) == 1 &&
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, (void *)(ct + ctn)) == 1 &&
            EVP_DecryptFinal_ex(c, out->data + at + l1, &l2) == 1;
  EVP_CIPHER_CTX_free(c);
  if (!ok) {
    OPENSSL_cleanse(out->data + at, out->len - at);
    out->len = at;
    if (out->data)
      out->data[at] = 0;
    return GW_ERR_INVAL;
  }
  return GW_OK;
}

void gw_keyed_hash(const struct gw_keyring *kr, const void *in, size_t len, char out[65]) {
  static const char hex[] = "0123456789abcdef";
  uint8_t md[32];
  unsigned int n = 0;
  out[0] = 0;
  if (!HMAC(sha256, kr->index, 32, in, len, md, &n) || n != 32)
    return;
  for (int i = 0; i < 32; i++) {
    out[2 * i] = hex[md[i] >> 4];
    out[2 * i + 1] = hex[md[i] & 15];
  }
  out[64] = 0;
}

int gw_keyring_create(const char *path, const char *id, struct gw_buf *errs) {
  if (!id_ok(id, strlen(id))) {
    gw_buf_printf(errs, "key id \"%s\": 1 to 32 letters, digits, '.', '_', '-'\n", id);
    return GW_ERR_INVAL;
  }
  uint8_t k[32];
  if (RAND_bytes(k, sizeof(k)) != 1) {
    gw_buf_printf(errs, "no random bytes from OpenSSL\n");
    return GW_ERR_NOMEM;
  }
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    gw_buf_printf(errs, "%s: %s (an existing key file is never overwritten)\n", path, strerror(errno));
    OPENSSL_cleanse(k, sizeof(k));
    return GW_ERR_IO;
  }
  char line[256];
  int n =
      snprintf(line, sizeof(line),
               "# cergw store keys: \"ID HEX\" per line; the last seals new rows, all of them open old ones\n%s ", id);
  for (int i = 0; i < 32; i++)
    n += snprintf(line + n, sizeof(line) - (size_t)n, "%02x", k[i]);
  n += snprintf(line + n, sizeof(line) - (size_t)n, "\n");
  bool ok = write(fd, line, (size_t)n) == n && fsync(fd) == 0;
  close(fd);
  OPENSSL_cleanse(k, sizeof(k));
  OPENSSL_cleanse(line, sizeof(line));
  if (!ok) {
    gw_buf_printf(errs, "%s: write failed\n", path);
    unlink(path);
    return GW_ERR_IO;
  }
  return GW_OK;
}
