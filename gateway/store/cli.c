#include "store/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"

int gw_cli_list_args(int argc, char **argv, struct gw_obx_query *q) {
  memset(q, 0, sizeof(*q));
  q->state = !strcmp(argv[0], "dead") ? GW_DS_DEAD : -1;
  q->limit = 100;
  for (int i = 1; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(argv[i], "--state") && v && (q->state = gw_dstate_parse(v)) >= 0) {
      i++;
    } else if (!strcmp(argv[i], "--limit") && v && atol(v) > 0) {
      q->limit = atol(v) > 100000 ? 100000 : (int)atol(v);
      i++;
    } else if (!strcmp(argv[i], "--backend") && v) {
      snprintf(q->backend, sizeof(q->backend), "%s", v);
      i++;
    } else if (!strcmp(argv[i], "--clinic") && v) {
      snprintf(q->clinic, sizeof(q->clinic), "%s", v);
      i++;
    } else if (!strcmp(argv[i], "--since") && v) {
      struct tm tm = {0};
      if (strlen(v) == 10 && strptime(v, "%Y-%m-%d", &tm))
        q->since_ms = (int64_t)timegm(&tm) * 1000;
      else if (strtol(v, NULL, 10) > 0)
        q->since_ms = gw_wall_ms() - strtol(v, NULL, 10) * 86400000LL;
      else
        return -1;
      i++;
    } else {
      return -1;
    }
  }
  return 0;
}

void gw_cli_age(int64_t ms, char *out, size_t n) {
  int64_t s = (gw_wall_ms() - ms) / 1000;
  if (s < 120)
    snprintf(out, n, "%llds", (long long)s);
  else if (s < 7200)
    snprintf(out, n, "%lldm", (long long)(s / 60));
  else if (s < 172800)
    snprintf(out, n, "%lldh", (long long)(s / 3600));
  else
    snprintf(out, n, "%lldd", (long long)(s / 86400));
}

void gw_cli_utc(int64_t ms, char *out, size_t n) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void gw_cli_one_line(const unsigned char *s, size_t n, char *out, size_t max) {
  size_t o = 0;
  for (size_t i = 0; s && i < n && o + 1 < max; i++)
    out[o++] = s[i] < 0x20 ? ' ' : (char)s[i];
  out[o] = 0;
}

void gw_cli_print_payload(const unsigned char *p, size_t n) {
  for (size_t i = 0; p && i < n; i++)
    putchar(p[i] == '\r' && (i + 1 >= n || p[i + 1] != '\n') ? '\n' : p[i]);
  putchar('\n');
}
