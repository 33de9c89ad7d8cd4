#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../suites.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/file.h"
#include "core/log.h"
#include "core/metrics.h"

static void test_buf_ceiling(void) {
  struct gw_buf b;
  gw_buf_init(&b, 10);
  CU_ASSERT_EQUAL(gw_buf_append(&b, "12345", 5), GW_OK);
  CU_ASSERT_EQUAL(gw_buf_append(&b, "67890", 5), GW_OK);
  CU_ASSERT_EQUAL(b.len, 10);
  CU_ASSERT_EQUAL(gw_buf_append(&b, "x", 1), GW_ERR_TOOBIG);
  CU_ASSERT_EQUAL(b.len, 10); /* unchanged on error */
  CU_ASSERT_STRING_EQUAL((char *)b.data, "1234567890");
  gw_buf_cleanup(&b);
  CU_ASSERT_PTR_NULL(b.data);
}

static void test_buf_printf_take(void) {
  struct gw_buf b;
  gw_buf_init(&b, 64);
  CU_ASSERT_EQUAL(gw_buf_printf(&b, "%d-%s", 42, "x"), GW_OK);
  CU_ASSERT_EQUAL(gw_buf_printf(&b, "%0100d", 1), GW_ERR_TOOBIG);
  size_t n;
  uint8_t *p = gw_buf_take(&b, &n);
  CU_ASSERT_EQUAL(n, 4);
  CU_ASSERT_STRING_EQUAL((char *)p, "42-x");
  CU_ASSERT_EQUAL(b.len, 0);
  free(p);
}

static void test_file_read(void) {
  char path[] = "/tmp/cergw-file-XXXXXX";
  int fd = mkstemp(path);
  CU_ASSERT_FATAL(fd >= 0);
  char big[10000];
  memset(big, 'x', sizeof(big));
  CU_ASSERT_EQUAL(write(fd, big, sizeof(big)), (ssize_t)sizeof(big));
  close(fd);
  size_t len = 0;
  const char *why = NULL;
  char *t = gw_file_read(path, 10000, &len, &why);
  CU_ASSERT_PTR_NOT_NULL(t);
  CU_ASSERT_EQUAL(len, 10000);
  CU_ASSERT_EQUAL(t ? t[len] : 1, 0);
  free(t);
  CU_ASSERT_PTR_NULL(gw_file_read(path, 9999, &len, &why)); /* one byte over the ceiling */
  CU_ASSERT_STRING_EQUAL(why, "larger than the limit");
  CU_ASSERT_PTR_NULL(gw_file_read("/nonexistent/x", 100, &len, &why));
  CU_ASSERT_STRING_EQUAL(why, "cannot open");
  unlink(path);
}

int gw_test_buf_suite(void) {
  CU_pSuite s = CU_add_suite("core/buf", NULL, NULL);
  return !s || GW_ADD(s, test_buf_ceiling) || GW_ADD(s, test_buf_printf_take) || GW_ADD(s, test_file_read);
}

static void test_log_quote(void) {
  char out[64];
  CU_ASSERT_STRING_EQUAL(gw_log_quote(out, sizeof(out), "a \"b\"\\\n"), "\"a \\\"b\\\"\\\\\\x0a\"");
  CU_ASSERT_STRING_EQUAL(gw_log_quote(out, sizeof(out), NULL), "\"\"");
  char tiny[8];
  gw_log_quote(tiny, sizeof(tiny), "abcdefghij");
  CU_ASSERT(strlen(tiny) < sizeof(tiny));
  CU_ASSERT_EQUAL(tiny[strlen(tiny) - 1], '"');
}

static void test_log_level(void) {
  enum gw_log_level l;
  CU_ASSERT_EQUAL(gw_log_level_parse("warn", &l), GW_OK);
  CU_ASSERT_EQUAL(l, GW_LOG_WARN);
  CU_ASSERT_EQUAL(gw_log_level_parse("verbose", &l), GW_ERR_INVAL);
}

static void test_strerror(void) {
  CU_ASSERT_STRING_EQUAL(gw_strerror(GW_ERR_TOOBIG), "size limit exceeded");
  CU_ASSERT_STRING_EQUAL(gw_strerror(-999), "unknown error");
  CU_ASSERT_TRUE(gw_err_is_fatal(GW_ERR_PROTO));
  CU_ASSERT_FALSE(gw_err_is_fatal(GW_ERR_TOOBIG));
}

static void test_log_mask(void) {
  char s[] = "422 {\"error\":\"PESEL 85010112345 tel +48600100200 mail jan.kowalski@example.pl HTTP 503 id 12345678\"}";
  gw_log_mask(s);
  CU_ASSERT_PTR_NULL(strstr(s, "85010112345"));
  CU_ASSERT_PTR_NULL(strstr(s, "600100200"));
  CU_ASSERT_PTR_NULL(strstr(s, "jan.kowalski"));
  CU_ASSERT_PTR_NOT_NULL(strstr(s, "@example.pl"));
  CU_ASSERT_PTR_NOT_NULL(strstr(s, "HTTP 503 id 12345678")); /* short numbers stay */
}

int gw_test_log_suite(void) {
  CU_pSuite s = CU_add_suite("core/log", NULL, NULL);
  return !s || GW_ADD(s, test_log_quote) || GW_ADD(s, test_log_level) || GW_ADD(s, test_strerror) ||
         GW_ADD(s, test_log_mask);
}

static void test_metrics_render(void) {
  struct gw_metrics *m = gw_metrics_slot();
  CU_ASSERT_PTR_NOT_NULL_FATAL(m);
  gw_metrics_request(m, "GET", 200, 300000);    /* 0.3 ms */
  gw_metrics_request(m, "POST", 413, 20000000); /* 20 ms */
  gw_metrics_request(m, "BREW", 418, 1000);     /* other method, other status */
  GW_METRIC_INC(m, handshakes[GW_HS_REVOKED]);
  struct gw_buf b;
  gw_buf_init(&b, 1 << 20);
  CU_ASSERT_EQUAL_FATAL(gw_metrics_render(&b, 1.5), GW_OK);
  const char *t = (const char *)b.data;
  CU_ASSERT_PTR_NOT_NULL(strstr(t, "cergw_requests_total{method=\"GET\",status=\"200\"} 1\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(t, "cergw_requests_total{method=\"POST\",status=\"413\"} 1\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(t, "cergw_requests_total{method=\"OTHER\",status=\"other\"} 1\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(t, "cergw_tls_handshakes_total{outcome=\"refused\",reason=\"revoked\"} 1\n"));
  /* cumulative buckets: 1 request <= 0.0005 s (the 1 µs one... and 0.3 ms), 3 in total */
  CU_ASSERT_PTR_NOT_NULL(strstr(t, "cergw_request_duration_seconds_bucket{le=\"0.0005\"} 2\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(t, "cergw_request_duration_seconds_bucket{le=\"0.025\"} 3\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(t, "cergw_request_duration_seconds_count 3\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(t, "cergw_uptime_seconds 1.500\n"));
  gw_buf_cleanup(&b);
}

static void test_metrics_ceiling(void) {
  struct gw_buf b;
  gw_buf_init(&b, 100);
  CU_ASSERT_EQUAL(gw_metrics_render(&b, 0), GW_ERR_TOOBIG);
  gw_buf_cleanup(&b);
}

int gw_test_metrics_suite(void) {
  CU_pSuite s = CU_add_suite("core/metrics", NULL, NULL);
  return !s || GW_ADD(s, test_metrics_render) || GW_ADD(s, test_metrics_ceiling);
}
