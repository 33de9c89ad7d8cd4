#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../suites.h"
#include "conf/conf.h"
#include "core/buf.h"
#include "core/err.h"

/* Parses |text| over the defaults; returns the rv and leaves errors in |errs|. */
static int parse(struct gw_conf *c, const char *name, const char *text, struct gw_buf *errs) {
  CU_ASSERT_EQUAL_FATAL(gw_conf_defaults(c), GW_OK);
  gw_buf_init(errs, 1 << 16);
  return gw_conf_parse(c, name, text, strlen(text), errs);
}

static void test_defaults(void) {
  struct gw_conf c;
  CU_ASSERT_EQUAL_FATAL(gw_conf_defaults(&c), GW_OK);
  CU_ASSERT_STRING_EQUAL(c.listen_host, "127.0.0.1");
  CU_ASSERT_STRING_EQUAL(c.listen_port, "8443");
  CU_ASSERT_STRING_EQUAL(c.tls.ca, "certs/dev/ca.pem");
  CU_ASSERT_EQUAL(c.tls.min_version, 12);
  CU_ASSERT(c.limits.max_body_bytes > 0 && c.limits.max_streams > 0);
  gw_conf_cleanup(&c);
}

static void test_valid(void) {
  struct gw_conf c;
  struct gw_buf e;
  const char *t = "{ // comments are allowed\n"
                  "  \"listen\": \"[::1]:9443\", \"workers\": 3, \"log_level\": \"warn\",\n"
                  "  \"tls\": {\"cert\": \"s.pem\", \"client_ca\": \"/abs/ca.pem\", \"min_version\": \"1.3\"},\n"
                  "  \"limits\": {\"max_body_bytes\": 1024, \"idle_timeout_ms\": 5000}\n}";
  CU_ASSERT_EQUAL(parse(&c, "/etc/cergw/gw.json", t, &e), GW_OK);
  CU_ASSERT_EQUAL(e.len, 0);
  CU_ASSERT_STRING_EQUAL(c.listen_host, "::1");
  CU_ASSERT_STRING_EQUAL(c.listen_port, "9443");
  CU_ASSERT_EQUAL(c.workers, 3);
  CU_ASSERT_EQUAL(c.log_level, GW_LOG_WARN);
  CU_ASSERT_STRING_EQUAL(c.tls.cert, "/etc/cergw/s.pem"); /* relative to the file */
  CU_ASSERT_STRING_EQUAL(c.tls.ca, "/abs/ca.pem");
  CU_ASSERT_EQUAL(c.tls.min_version, 13);
  CU_ASSERT_EQUAL(c.limits.max_body_bytes, 1024);
  CU_ASSERT_EQUAL(c.limits.idle_timeout_ms, 5000);
  CU_ASSERT_EQUAL(c.limits.max_header_bytes, 16384); /* default kept */
  gw_buf_cleanup(&e);
  gw_conf_cleanup(&c);
}

static void test_errors_are_line_precise(void) {
  struct gw_conf c;
  struct gw_buf e;
  const char *t = "{\n"
                  "  \"workers\": \"two\",\n"
                  "  \"limits\": {\n"
                  "    \"max_body_bytes\": -1,\n"
                  "    \"bogus\": 1,\n"
                  "    \"idle_timeout_ms\": 1\n"
                  "  },\n"
                  "  \"tls\": [1, 2],\n"
                  "  \"log_level\": null,\n"
                  "  \"workers\": 2\n"
                  "}";
  CU_ASSERT_EQUAL(parse(&c, "x.json", t, &e), GW_ERR_CONF);
  const char *s = (const char *)e.data;
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  CU_ASSERT_PTR_NOT_NULL(strstr(s, "x.json:2:14: 'workers': expected a number, got a string\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(s, "x.json:4:23: 'limits.max_body_bytes': expected a non-negative integer, got -1\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(s, "x.json:5:5: unknown key 'limits.bogus'\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(s, "x.json:6:24: 'limits.idle_timeout_ms': 1 is out of range [100, 86400000]\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(s, "x.json:8:10: 'tls': arrays are not allowed here\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(s, "x.json:9:16: 'log_level': null is not allowed"));
  CU_ASSERT_PTR_NOT_NULL(strstr(s, "x.json:10:3: duplicate key 'workers'\n"));
  gw_buf_cleanup(&e);
  gw_conf_cleanup(&c);
}

static void test_syntax_error(void) {
  struct gw_conf c;
  struct gw_buf e;
  CU_ASSERT_EQUAL(parse(&c, "s.json", "{\n \"workers\": 2,\n \"tls\": {\n}", &e), GW_ERR_CONF);
  CU_ASSERT_PTR_NOT_NULL(strstr((char *)e.data, "s.json:4:2: JSON syntax error"));
  gw_buf_cleanup(&e);
  gw_conf_cleanup(&c);
  CU_ASSERT_EQUAL(parse(&c, "t.json", "[1]", &e), GW_ERR_CONF);
  CU_ASSERT_PTR_NOT_NULL(strstr((char *)e.data, "must be a JSON object"));
  gw_buf_cleanup(&e);
  gw_conf_cleanup(&c);
}

static void test_depth_limit(void) {
  struct gw_conf c;
  struct gw_buf e;
  char deep[200] = "";
  for (int i = 0; i < 20; i++)
    strcat(deep, "{\"a\":");
  strcat(deep, "1");
  for (int i = 0; i < 20; i++)
    strcat(deep, "}");
  CU_ASSERT_EQUAL(parse(&c, "d.json", deep, &e), GW_ERR_CONF);
  gw_buf_cleanup(&e);
  gw_conf_cleanup(&c);
}

static void test_listen(void) {
  struct gw_conf c;
  CU_ASSERT_EQUAL_FATAL(gw_conf_defaults(&c), GW_OK);
  CU_ASSERT_EQUAL(gw_conf_set_listen(&c, "0.0.0.0:443"), GW_OK);
  CU_ASSERT_STRING_EQUAL(c.listen_host, "0.0.0.0");
  CU_ASSERT_EQUAL(gw_conf_set_listen(&c, "[::]:8443"), GW_OK);
  CU_ASSERT_STRING_EQUAL(c.listen_host, "::");
  CU_ASSERT_EQUAL(gw_conf_set_listen(&c, "::1:8443"), GW_ERR_INVAL); /* IPv6 needs brackets */
  CU_ASSERT_EQUAL(gw_conf_set_listen(&c, "host:99999"), GW_ERR_INVAL);
  CU_ASSERT_EQUAL(gw_conf_set_listen(&c, ":8443"), GW_ERR_INVAL);
  CU_ASSERT_EQUAL(gw_conf_set_listen(&c, "host"), GW_ERR_INVAL);
  gw_conf_cleanup(&c);
}

static void test_load_missing(void) {
  struct gw_conf c;
  struct gw_buf e;
  CU_ASSERT_EQUAL_FATAL(gw_conf_defaults(&c), GW_OK);
  gw_buf_init(&e, 4096);
  CU_ASSERT_EQUAL(gw_conf_load(&c, "/nonexistent/cergw.json", &e), GW_ERR_CONF);
  CU_ASSERT_PTR_NOT_NULL(strstr((char *)e.data, "cannot open"));
  gw_buf_cleanup(&e);
  gw_conf_cleanup(&c);
}

int gw_test_conf_suite(void) {
  CU_pSuite s = CU_add_suite("conf/conf", NULL, NULL);
  return !s || GW_ADD(s, test_defaults) || GW_ADD(s, test_valid) || GW_ADD(s, test_errors_are_line_precise) ||
         GW_ADD(s, test_syntax_error) || GW_ADD(s, test_depth_limit) || GW_ADD(s, test_listen) ||
         GW_ADD(s, test_load_missing);
}
