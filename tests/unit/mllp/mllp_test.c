/* MLLP framing: frames, partial input, line ends between frames, junk. */
#include <string.h>

#include "../suites.h"
#include "mllp/mllp.h"

static enum gw_mllp_result next(const char *s, size_t len, size_t *start, size_t *mlen, size_t *used) {
  return gw_mllp_next((const uint8_t *)s, len, start, mlen, used);
}

static void test_frames(void) {
  size_t st, ml, used;
  const char two[] = "\x0bMSH|a\rPID|1\x1c\r\r\n\x0bMSH|b\x1c\r";
  CU_ASSERT_EQUAL(next(two, sizeof(two) - 1, &st, &ml, &used), GW_MLLP_FRAME);
  CU_ASSERT_EQUAL(st, 1);
  CU_ASSERT_EQUAL(ml, 11);
  CU_ASSERT_EQUAL(memcmp(two + st, "MSH|a\rPID|1", 11), 0);
  const char *rest = two + used;
  size_t rl = sizeof(two) - 1 - used;
  CU_ASSERT_EQUAL(next(rest, rl, &st, &ml, &used), GW_MLLP_FRAME);
  CU_ASSERT_EQUAL(st, 3); /* CR LF between frames skipped */
  CU_ASSERT_EQUAL(ml, 5);
  CU_ASSERT_EQUAL(used, rl);
}

static void test_partial_and_bad(void) {
  size_t st, ml, used;
  CU_ASSERT_EQUAL(next("\x0bMSH|a", 6, &st, &ml, &used), GW_MLLP_MORE);
  CU_ASSERT_EQUAL(next("\x0bMSH|a\x1c", 7, &st, &ml, &used), GW_MLLP_MORE);    /* FS without CR yet */
  CU_ASSERT_EQUAL(next("\x0b\x1cx\x1c\r", 5, &st, &ml, &used), GW_MLLP_FRAME); /* FS inside, then the end */
  CU_ASSERT_EQUAL(ml, 2);
  CU_ASSERT_EQUAL(next("\r\n", 2, &st, &ml, &used), GW_MLLP_MORE);
  CU_ASSERT_EQUAL(used, 2);
  CU_ASSERT_EQUAL(next("GET / HTTP/1.1\r\n", 16, &st, &ml, &used), GW_MLLP_BAD);
  CU_ASSERT_EQUAL(next("", 0, &st, &ml, &used), GW_MLLP_MORE);
}

static void test_url(void) {
  char h[64], p[8];
  CU_ASSERT_EQUAL(gw_mllp_url("mllp://127.0.0.1:2575", h, sizeof(h), p, sizeof(p)), 0);
  CU_ASSERT_STRING_EQUAL(h, "127.0.0.1");
  CU_ASSERT_STRING_EQUAL(p, "2575");
  CU_ASSERT_EQUAL(gw_mllp_url("mllp://[::1]:2575", h, sizeof(h), p, sizeof(p)), 0);
  CU_ASSERT_STRING_EQUAL(h, "::1");
  CU_ASSERT_EQUAL(gw_mllp_url("mllp://his.example.pl:6661", h, sizeof(h), p, sizeof(p)), 0);
  CU_ASSERT_STRING_EQUAL(h, "his.example.pl");
  CU_ASSERT_EQUAL(gw_mllp_url("mllp://host", h, sizeof(h), p, sizeof(p)), -1);      /* no port */
  CU_ASSERT_EQUAL(gw_mllp_url("mllp://host:12ab", h, sizeof(h), p, sizeof(p)), -1); /* not a number */
  CU_ASSERT_EQUAL(gw_mllp_url("mllp://:2575", h, sizeof(h), p, sizeof(p)), -1);     /* no host */
  CU_ASSERT_EQUAL(gw_mllp_url("mllp://[::1]2575", h, sizeof(h), p, sizeof(p)), -1);
  CU_ASSERT_EQUAL(gw_mllp_url("https://host:443", h, sizeof(h), p, sizeof(p)), -1);
  CU_ASSERT_EQUAL(gw_mllp_url("mllp://host:123456789", h, sizeof(h), p, sizeof(p)), -1); /* too long for |p| */
}

int gw_test_mllp_suite(void) {
  CU_pSuite s = CU_add_suite("mllp", NULL, NULL);
  if (!s)
    return -1;
  return GW_ADD(s, test_frames) || GW_ADD(s, test_partial_and_bad) || GW_ADD(s, test_url);
}
