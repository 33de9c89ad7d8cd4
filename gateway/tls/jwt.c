#include "tls/jwt.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

struct gw_jwt_key {
  EVP_PKEY *k;
};

static struct gw_jwt_key *wrap(EVP_PKEY *k, const char *path, struct gw_buf *errs) {
  struct gw_jwt_key *w = k ? calloc(1, sizeof(*w)) : NULL;
  if (!w) {
    char e[160];
    ERR_error_string_n(ERR_get_error(), e, sizeof(e));
    gw_buf_printf(errs, "%s: %s\n", path, k ? "out of memory" : e);
    EVP_PKEY_free(k);
    return NULL;
  }
  w->k = k;
  return w;
}

struct gw_jwt_key *gw_jwt_key_private(const char *pem_path, struct gw_buf *errs) {
  FILE *f = fopen(pem_path, "r");
  EVP_PKEY *k = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
  if (f)
    fclose(f);
  else
    ERR_clear_error();
  if (!f) {
    gw_buf_printf(errs, "%s: cannot open the signing key\n", pem_path);
    return NULL;
  }
  return wrap(k, pem_path, errs);
}

struct gw_jwt_key *gw_jwt_key_public(const char *cert_path, struct gw_buf *errs) {
  FILE *f = fopen(cert_path, "r");
  X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
  if (f)
    fclose(f);
  if (!f) {
    gw_buf_printf(errs, "%s: cannot open the certificate\n", cert_path);
    return NULL;
  }
  EVP_PKEY *k = x ? X509_get_pubkey(x) : NULL;
  X509_free(x);
  return wrap(k, cert_path, errs);
}

void gw_jwt_key_free(struct gw_jwt_key *k) {
  if (k) {
    EVP_PKEY_free(k->k);
    free(k);
  }
}

/* base64url without padding of |n| bytes into |out| (|cap| bytes with the NUL); -1 when it does not fit. */
static long b64url(const unsigned char *in, size_t n, char *out, size_t cap) {
  size_t need = (n + 2) / 3 * 4 + 1;
  if (need > cap)
    return -1;
  int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
  while (len > 0 && out[len - 1] == '=')
    len--;
  for (int i = 0; i < len; i++)
    out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
  out[len] = 0;
  return len;
}

static int b64url_decode(const char *in, size_t n, unsigned char *out, size_t cap) {
  size_t padded = (n + 3) / 4 * 4;
  char *tmp = calloc(1, padded + 1);
  if (!tmp || padded / 4 * 3 > cap) {
    free(tmp);
    return -1;
  }
  size_t o = 0;
  for (size_t i = 0; i < n; i++)
    tmp[o++] = in[i] == '-' ? '+' : in[i] == '_' ? '/' : in[i];
  while (o % 4)
    tmp[o++] = '=';
  int len = EVP_DecodeBlock(out, (unsigned char *)tmp, (int)o);
  for (size_t i = o; len >= 0 && i > 0 && tmp[i - 1] == '='; i--)
    len--;
  free(tmp);
  return len;
}

int gw_jwt_sign(const struct gw_jwt_key *k, const char *claims_json, char *out, size_t cap) {
  static const char header[] = "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";
  long hl = b64url((const unsigned char *)header, sizeof(header) - 1, out, cap);
  if (hl < 0 || (size_t)hl + 2 > cap)
    return GW_ERR_TOOBIG;
  out[hl] = '.';
  long cl = b64url((const unsigned char *)claims_json, strlen(claims_json), out + hl + 1, cap - (size_t)hl - 1);
  if (cl < 0)
    return GW_ERR_TOOBIG;
  size_t input = (size_t)(hl + 1 + cl);
  unsigned char sig[1024];
  size_t sl = sizeof(sig);
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  int ok = md && EVP_PKEY_get_size(k->k) <= (int)sizeof(sig) &&
           EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k->k) == 1 &&
           EVP_DigestSign(md, sig, &sl, (const unsigned char *)out, input) == 1;
  EVP_MD_CTX_free(md);
  if (!ok) {
    ERR_clear_error();
    return GW_ERR_TLS;
  }
  if (input + 2 > cap)
    return GW_ERR_TOOBIG;
  out[input] = '.';
  return b64url(sig, sl, out + input + 1, cap - input - 1) < 0 ? GW_ERR_TOOBIG : GW_OK;
}

int gw_jwt_verify(const struct gw_jwt_key *k, const char *jwt, size_t n, char *claims, size_t cap) {
  const char *d1 = memchr(jwt, '.', n);
  const char *d2 = d1 ? memchr(d1 + 1, '.', n - (size_t)(d1 + 1 - jwt)) : NULL;
  if (!d2 || cap < 1)
    return GW_ERR_INVAL;
  unsigned char sig[1024];
  int cl = b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), (unsigned char *)claims, cap - 1);
  int sl = b64url_decode(d2 + 1, n - (size_t)(d2 + 1 - jwt), sig, sizeof(sig));
  if (cl < 0 || sl < 0)
    return GW_ERR_INVAL;
  claims[cl] = 0;
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  int ok = md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k->k) == 1 &&
           EVP_DigestVerify(md, sig, (size_t)sl, (const unsigned char *)jwt, (size_t)(d2 - jwt)) == 1;
  EVP_MD_CTX_free(md);
  ERR_clear_error();
  return ok ? GW_OK : GW_ERR_TLS;
}

int gw_random_bytes(void *buf, size_t n) { return RAND_bytes(buf, (int)n) == 1 ? GW_OK : GW_ERR_TLS; }

uint32_t gw_random_u32(void) {
  uint32_t r = 0;
  if (gw_random_bytes(&r, sizeof(r)))
    r = 0;
  return r;
}

void gw_random_uuid(char out[37]) {
  unsigned char r[16] = {0};
  gw_random_bytes(r, sizeof(r));
  r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
  r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
  snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3],
           r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]);
}

static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
/* fetched once: EVP_sha256() makes every digest look its implementation up again (OpenSSL 3) */
static void sha256_fetch(void) { sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL); }

void gw_sha256_hex(const void *data, size_t n, char out[65]) {
  static const char hex[] = "0123456789abcdef";
  unsigned char md[32];
  unsigned int len = 0;
  out[0] = 0;
  pthread_once(&sha256_once, sha256_fetch);
  if (EVP_Digest(data, n, md, &len, sha256_md ? sha256_md : EVP_sha256(), NULL) != 1 || len != 32)
    return;
  for (int i = 0; i < 32; i++) {
    out[2 * i] = hex[md[i] >> 4];
    out[2 * i + 1] = hex[md[i] & 15];
  }
  out[64] = 0;
}
