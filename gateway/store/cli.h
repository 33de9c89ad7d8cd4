/* What the operator's commands of both stores share (sqlite.c, pgcli.c): their list filters and how they
 * print times, ages, one-line answers and payloads. Internal to store/. */
#ifndef GW_STORE_CLI_H
#define GW_STORE_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* `outbox list|dead [--state S] [--backend B] [--clinic RPWDL] [--since DAYS|YYYY-MM-DD] [--limit N]` into |q|
 * (argv[0] the command). 0, or -1 for a usage error. */
int gw_cli_list_args(int argc, char **argv, struct gw_obx_query *q);
/* "3m", "2h", "5d": how long ago |ms| was. */
void gw_cli_age(int64_t ms, char *out, size_t n);
/* |ms| as an ISO 8601 UTC time. */
void gw_cli_utc(int64_t ms, char *out, size_t n);
/* |n| bytes of |s| on one line (control characters as spaces), at most |max| - 1. */
void gw_cli_one_line(const unsigned char *s, size_t n, char *out, size_t max);
/* |n| bytes of a payload, readable: an HL7 message's CRs as new lines. */
void gw_cli_print_payload(const unsigned char *p, size_t n);

#endif
