/* Sealing at rest (tls/seal.c): what it promises, tried the way a careless operator or an attacker
 * with the database file would break it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../suites.h"
#include "core/buf.h"
#include "core/err.h"
#include "tls/seal.h"

static char dir[] = "/tmp/cergw-seal-XXXXXX";

static void write_key_file(const char *name, const char *text, mode_t mode, char *path, size_t n) {
  snprintf(path, n, "%s/%s", dir, name);
  unlink(path);
  FILE *f = fopen(path, "w");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  fputs(text, f);
  fclose(f);
  chmod(path, mode);
}

#define K1 "k1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"
#define K2 "k2 ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100\n"

static struct gw_keyring *ring(const char *text) {
  char path[256];
  write_key_file("ring.key", text, 0600, path, sizeof(path));
  struct gw_buf errs;
  gw_buf_init(&errs, 4096);
  struct gw_keyring *kr = NULL;
  int rv = gw_keyring_load(path, &kr, &errs);
  if (rv)
    fprintf(stderr, "%s", errs.data ? (const char *)errs.data : "");
  gw_buf_cleanup(&errs);
  return kr;
}

static void test_round_trip(void) {
  struct gw_keyring *kr = ring("# a comment\n" K1);
  CU_ASSERT_PTR_NOT_NULL_FATAL(kr);
  static const char pesel[] = "<value value=\"85010112345\"/> Kowalski +48600100200";
  struct gw_buf s, p;
  gw_buf_init(&s, 1 << 20);
  gw_buf_init(&p, 1 << 20);
  CU_ASSERT_EQUAL(gw_seal(kr, 42, (const uint8_t *)pesel, strlen(pesel), &s), GW_OK);
  CU_ASSERT_TRUE(gw_sealed(s.data, s.len));
  CU_ASSERT_PTR_NULL(memmem(s.data, s.len, "85010112345", 11)); /* nothing of it in clear */
  CU_ASSERT_PTR_NULL(memmem(s.data, s.len, "Kowalski", 8));
  char id[40];
  gw_sealed_key_id(s.data, s.len, id, sizeof(id));
  CU_ASSERT_STRING_EQUAL(id, "k1");
  CU_ASSERT_EQUAL(gw_unseal(kr, 42, s.data, s.len, &p), GW_OK);
  CU_ASSERT_EQUAL(p.len, strlen(pesel));
  CU_ASSERT_TRUE(p.len == strlen(pesel) && memcmp(p.data, pesel, p.len) == 0);
  /* another row's id as associated data: refused */
  p.len = 0;
  CU_ASSERT_EQUAL(gw_unseal(kr, 43, s.data, s.len, &p), GW_ERR_INVAL);
  CU_ASSERT_EQUAL(p.len, 0);
  /* one bit flipped anywhere in the ciphertext or the tag: refused */
  for (size_t i = 4 + 1 + 2 + 12; i < s.len; i += 7) {
    s.data[i] ^= 1;
    p.len = 0;
    CU_ASSERT_EQUAL(gw_unseal(kr, 42, s.data, s.len, &p), GW_ERR_INVAL);
    s.data[i] ^= 1;
  }
  /* the same plaintext twice: two different sealed values (a fresh nonce each time) */
  struct gw_buf s2;
  gw_buf_init(&s2, 1 << 20);
  gw_seal(kr, 42, (const uint8_t *)pesel, strlen(pesel), &s2);
  CU_ASSERT_TRUE(s.len == s2.len && memcmp(s.data, s2.data, s.len) != 0);
  /* empty stays empty; plaintext written before sealing was on reads as it is */
  s2.len = 0;
  CU_ASSERT_EQUAL(gw_seal(kr, 1, (const uint8_t *)"", 0, &s2), GW_OK);
  CU_ASSERT_EQUAL(s2.len, 0);
  p.len = 0;
  CU_ASSERT_EQUAL(gw_unseal(kr, 1, (const uint8_t *)"<Bundle/>", 9, &p), GW_OK);
  CU_ASSERT_TRUE(p.len == 9 && memcmp(p.data, "<Bundle/>", 9) == 0);
  gw_buf_cleanup(&s);
  gw_buf_cleanup(&s2);
  gw_buf_cleanup(&p);
  gw_keyring_free(kr);
}

static void test_rotation(void) {
  struct gw_keyring *old = ring(K1), *both = ring(K1 K2), *other = ring(K2);
  CU_ASSERT_PTR_NOT_NULL_FATAL(old);
  CU_ASSERT_PTR_NOT_NULL_FATAL(both);
  CU_ASSERT_PTR_NOT_NULL_FATAL(other);
  CU_ASSERT_STRING_EQUAL(gw_keyring_current(both), "k2");
  struct gw_buf a, b, p;
  gw_buf_init(&a, 4096);
  gw_buf_init(&b, 4096);
  gw_buf_init(&p, 4096);
  gw_seal(old, 7, (const uint8_t *)"old row", 7, &a);
  gw_seal(both, 7, (const uint8_t *)"new row", 7, &b);
  char id[40];
  gw_sealed_key_id(b.data, b.len, id, sizeof(id));
  CU_ASSERT_STRING_EQUAL(id, "k2");                              /* new rows under the last key */
  CU_ASSERT_EQUAL(gw_unseal(both, 7, a.data, a.len, &p), GW_OK); /* old rows still open */
  p.len = 0;
  CU_ASSERT_EQUAL(gw_unseal(other, 7, a.data, a.len, &p), GW_ERR_NOTFOUND); /* k1 dropped too early: said so */
  /* the keyed hashes do not change when a key is added (their key comes from the first line) */
  char h1[65], h2[65], h3[65];
  gw_keyed_hash(old, "85010112345", 11, h1);
  gw_keyed_hash(both, "85010112345", 11, h2);
  gw_keyed_hash(other, "85010112345", 11, h3);
  CU_ASSERT_STRING_EQUAL(h1, h2);
  CU_ASSERT_STRING_NOT_EQUAL(h1, h3);
  CU_ASSERT_EQUAL(strlen(h1), 64);
  gw_buf_cleanup(&a);
  gw_buf_cleanup(&b);
  gw_buf_cleanup(&p);
  gw_keyring_free(old);
  gw_keyring_free(both);
  gw_keyring_free(other);
}

static void test_key_file_refused(void) {
  struct gw_buf errs;
  gw_buf_init(&errs, 4096);
  struct gw_keyring *kr = NULL;
  char path[256];
  write_key_file("open.key", K1, 0644, path, sizeof(path)); /* readable by others */
  CU_ASSERT_EQUAL(gw_keyring_load(path, &kr, &errs), GW_ERR_CONF);
  CU_ASSERT_PTR_NOT_NULL(errs.data && strstr((const char *)errs.data, "chmod 600"));
  static const char *const bad[] = {
      "k1 0011\n", "k1 zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
      "bad/id 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n", K1 K1, "# nothing\n"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    write_key_file("bad.key", bad[i], 0600, path, sizeof(path));
    errs.len = 0;
    CU_ASSERT_EQUAL(gw_keyring_load(path, &kr, &errs), GW_ERR_CONF);
    CU_ASSERT_PTR_NULL(kr);
  }
  snprintf(path, sizeof(path), "%s/missing.key", dir);
  errs.len = 0;
  CU_ASSERT_EQUAL(gw_keyring_load(path, &kr, &errs), GW_ERR_CONF);
  CU_ASSERT_PTR_NOT_NULL(errs.data && strstr((const char *)errs.data, "cergw store keygen"));
  /* keygen: mode 0600, loads, and never overwrites */
  snprintf(path, sizeof(path), "%s/new.key", dir);
  unlink(path);
  CU_ASSERT_EQUAL(gw_keyring_create(path, "site-1", &errs), GW_OK);
  struct stat sb;
  CU_ASSERT_EQUAL(stat(path, &sb), 0);
  CU_ASSERT_EQUAL(sb.st_mode & 0777, 0600);
  CU_ASSERT_EQUAL(gw_keyring_load(path, &kr, &errs), GW_OK);
  CU_ASSERT_STRING_EQUAL(kr ? gw_keyring_current(kr) : "", "site-1");
  gw_keyring_free(kr);
  CU_ASSERT_NOT_EQUAL(gw_keyring_create(path, "site-2", &errs), GW_OK);
  gw_buf_cleanup(&errs);
}

static int setup(void) { return mkdtemp(dir) ? 0 : -1; }
static int teardown(void) {
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  return system(cmd) == 0 ? 0 : -1;
}

int gw_test_seal_suite(void) {
  CU_pSuite s = CU_add_suite("tls/seal", setup, teardown);
  return !s || GW_ADD(s, test_round_trip) || GW_ADD(s, test_rotation) || GW_ADD(s, test_key_file_refused);
}
