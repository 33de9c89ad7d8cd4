/* MLLP framing: frames, partial input, line ends between frames, junk. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../suites.h"
#include "core/buf.h"
#include "core/clock.h"
#include "mllp/client.h"
#include "mllp/mllp.h"
#include "tls/tls.h"

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

/* A listening socket on 127.0.0.1 (never accepting); its port in |port|. */
static int listener(char *port, size_t n) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof(a);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 4) ||
      getsockname(fd, (struct sockaddr *)&a, &al)) {
    if (fd >= 0)
      close(fd);
    return -1;
  }
  snprintf(port, n, "%u", (unsigned)ntohs(a.sin_port));
  return fd;
}

/* Steps |c| (polling its socket) until it ends; returns the end state. */
static enum gw_mllp_call_state run_call(struct gw_mllp_call *c) {
  for (int i = 0; i < 500; i++) {
    enum gw_mllp_call_state st = gw_mllp_call_step(c, gw_wall_ms());
    if (st != GW_MLLP_CALL_PENDING)
      return st;
    short ev;
    struct pollfd pf = {.fd = gw_mllp_call_fd(c, &ev)};
    pf.events = ev;
    poll(&pf, 1, 10);
  }
  return GW_MLLP_CALL_PENDING;
}

/* The client's failures end the call with a reason, never hang it: a refused connection, and
 * a peer that takes the connection but never answers the TLS handshake (the deadline). */
static void test_client_failures(void) {
  struct gw_buf errs;
  gw_buf_init(&errs, 4096);
  struct gw_tls *t =
      gw_tls_client_new("certs/dev/gateway-out.pem", "certs/dev/gateway-out.key", "certs/dev/ca.pem", &errs);
  gw_buf_cleanup(&errs);
  if (!t) {
    fprintf(stderr, "\n  (certs/dev missing: run make certs; MLLP client checks skipped)\n");
    return;
  }
  char port[16];
  int fd = listener(port, sizeof(port));
  CU_ASSERT_FATAL(fd >= 0);
  close(fd); /* nobody listens there now */
  struct gw_mllp_call *c = gw_mllp_call_new(t, "127.0.0.1", port, "MSH|^~\\&|A", 11, gw_wall_ms() + 2000);
  CU_ASSERT_PTR_NOT_NULL_FATAL(c);
  CU_ASSERT_EQUAL(run_call(c), GW_MLLP_CALL_FAILED);
  CU_ASSERT_PTR_NOT_NULL(strstr(gw_mllp_call_error(c), "cannot connect"));
  gw_mllp_call_free(c);
  fd = listener(port, sizeof(port));
  CU_ASSERT_FATAL(fd >= 0);
  c = gw_mllp_call_new(t, "127.0.0.1", port, "MSH|^~\\&|A", 11, gw_wall_ms() + 300);
  CU_ASSERT_EQUAL(run_call(c), GW_MLLP_CALL_FAILED);
  CU_ASSERT_STRING_EQUAL(gw_mllp_call_error(c), "no answer in time");
  gw_mllp_call_free(c);
  close(fd);
  gw_tls_free(t);
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
  return GW_ADD(s, test_frames) || GW_ADD(s, test_partial_and_bad) || GW_ADD(s, test_url) ||
         GW_ADD(s, test_client_failures);
}
