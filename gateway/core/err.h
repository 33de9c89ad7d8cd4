/* One negative error enum for the whole gateway. */
#ifndef GW_CORE_ERR_H
#define GW_CORE_ERR_H

#include <stdbool.h>

enum gw_error {
  GW_OK = 0,
  GW_ERR_NOMEM = -1,    /* allocation failed */
  GW_ERR_INVAL = -2,    /* invalid argument or input */
  GW_ERR_TOOBIG = -3,   /* a configured ceiling was reached */
  GW_ERR_IO = -4,       /* an operating-system call failed */
  GW_ERR_TLS = -5,      /* TLS layer failure */
  GW_ERR_PROTO = -6,    /* peer broke the protocol: close the connection */
  GW_ERR_CONF = -7,     /* configuration is invalid */
  GW_ERR_NOTFOUND = -8, /* no such thing */
  GW_ERR_CALM = -9,     /* peer abuses the protocol (floods): close */
  GW_ERR_CLOSED = -10,  /* peer closed or connection is shutting down */
};

/* Returns a static English description of |err|. Never NULL. */
const char *gw_strerror(int err);

/* True when |err| must close the whole connection rather than fail one stream. */
bool gw_err_is_fatal(int err);

#endif
