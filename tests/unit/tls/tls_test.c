#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../suites.h"
#include "conf/conf.h"
#include "core/buf.h"
#include "core/err.h"
#include "tls/jwt.h"
#include "tls/tls.h"

static char path[4300];
static const char *cert(const char *name) {
  snprintf(path, sizeof(path), "%s/%s", gw_test_certs(), name);
  return path;
}

static void test_identity_clinic(void) {
  if (!gw_test_certs()) {
    CU_FAIL("certs/dev missing: run `make certs` first");
    return;
  }
  struct gw_identity id;
  CU_ASSERT_EQUAL_FATAL(gw_tls_identity_from_file(cert("clinic-a.pem"), &id), GW_OK);
  CU_ASSERT_EQUAL(id.role, GW_ROLE_CLINIC);
  CU_ASSERT_STRING_EQUAL(id.rpwdl, "000000012345");
  CU_ASSERT_STRING_EQUAL(id.regon, "123456785");
  CU_ASSERT_STRING_EQUAL(id.cn, "Poradnia kardiologiczna A (dev)");
  CU_ASSERT_STRING_EQUAL(id.issuer_cn, "cergw development CA");
  CU_ASSERT_EQUAL(strlen(id.fp_sha256), 64);
  CU_ASSERT(strlen(id.serial) > 0);
  CU_ASSERT_EQUAL_FATAL(gw_tls_identity_from_file(cert("clinic-b.pem"), &id), GW_OK);
  CU_ASSERT_STRING_EQUAL(id.rpwdl, "000000067890");
}

static void test_identity_roles(void) {
  if (!gw_test_certs())
    return;
  struct gw_identity id;
  CU_ASSERT_EQUAL_FATAL(gw_tls_identity_from_file(cert("p1.pem"), &id), GW_OK);
  CU_ASSERT_EQUAL(id.role, GW_ROLE_P1);
  CU_ASSERT_STRING_EQUAL(id.rpwdl, "");
  CU_ASSERT_EQUAL_FATAL(gw_tls_identity_from_file(cert("gateway-out.pem"), &id), GW_OK);
  CU_ASSERT_EQUAL(id.role, GW_ROLE_GATEWAY);
  CU_ASSERT_EQUAL_FATAL(gw_tls_identity_from_file(cert("server.pem"), &id), GW_OK);
  CU_ASSERT_EQUAL(id.role, GW_ROLE_OTHER);
  CU_ASSERT_EQUAL(gw_tls_identity_from_file(cert("ca.key"), &id), GW_ERR_INVAL);
  CU_ASSERT_EQUAL(gw_tls_identity_from_file("/nonexistent.pem", &id), GW_ERR_IO);
}

static void test_server_ctx(void) {
  if (!gw_test_certs())
    return;
  struct gw_conf c;
  CU_ASSERT_EQUAL_FATAL(gw_conf_defaults(&c), GW_OK);
  char *dir = strdup(gw_test_certs());
  struct gw_buf e;
  gw_buf_init(&e, 1 << 16);
  struct gw_tls *t = gw_tls_server_new(&c.tls, &e);
  CU_ASSERT_PTR_NOT_NULL(t);
  gw_tls_free(t);
  /* a key that does not belong to the certificate */
  free(c.tls.key);
  c.tls.key = strdup(cert("clinic-a.key"));
  t = gw_tls_server_new(&c.tls, &e);
  CU_ASSERT_PTR_NULL(t);
  CU_ASSERT_PTR_NOT_NULL(strstr((char *)e.data, "tls.key"));
  gw_buf_cleanup(&e);
  /* a CRL file with no CRL in it */
  free(c.tls.key);
  c.tls.key = strdup(cert("server.key"));
  free(c.tls.crl);
  c.tls.crl = strdup(cert("ca.pem"));
  gw_buf_init(&e, 1 << 16);
  t = gw_tls_server_new(&c.tls, &e);
  CU_ASSERT_PTR_NULL(t);
  CU_ASSERT_PTR_NOT_NULL(strstr((char *)e.data, "no CRL found"));
  gw_buf_cleanup(&e);
  free(dir);
  gw_conf_cleanup(&c);
}

/* SHA-256 as the idempotency digest uses it: the test vectors of FIPS 180-2 (appendix B) */
static void test_sha256(void) {
  char hex[65];
  gw_sha256_hex("abc", 3, hex);
  CU_ASSERT_STRING_EQUAL(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  static const char two[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  gw_sha256_hex(two, sizeof(two) - 1, hex);
  CU_ASSERT_STRING_EQUAL(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  gw_sha256_hex("", 0, hex);
  CU_ASSERT_STRING_EQUAL(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

int gw_test_tls_suite(void) {
  CU_pSuite s = CU_add_suite("tls/tls", NULL, NULL);
  return !s || GW_ADD(s, test_identity_clinic) || GW_ADD(s, test_identity_roles) || GW_ADD(s, test_server_ctx) ||
         GW_ADD(s, test_sha256);
}
