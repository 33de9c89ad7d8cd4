/* Query strings of request targets: percent-decoding and one parameter's value. */
#ifndef GW_CORE_QUERY_H
#define GW_CORE_QUERY_H

#include <stddef.h>

/* |n| bytes of a query component percent-decoded ('+' a space) into |out| (at most |on| - 1 bytes, NUL
 * terminated); a '%' not followed by two hex digits is kept as it is. */
void gw_url_unescape(const char *s, size_t n, char *out, size_t on);
/* The decoded value of parameter |name| in the query of |target| ("...?a=1&b=2") into |out|; "" when it is
 * absent. Returns |out|. */
const char *gw_query_param(const char *target, const char *name, char *out, size_t n);

#endif
