#include "core/err.h"

const char *gw_strerror(int err) {
  switch (err) {
  case GW_OK:
    return "success";
  case GW_ERR_NOMEM:
    return "out of memory";
  case GW_ERR_INVAL:
    return "invalid argument";
  case GW_ERR_TOOBIG:
    return "size limit exceeded";
  case GW_ERR_IO:
    return "I/O error";
  case GW_ERR_TLS:
    return "TLS error";
  case GW_ERR_PROTO:
    return "protocol error";
  case GW_ERR_CONF:
    return "invalid configuration";
  case GW_ERR_NOTFOUND:
    return "not found";
  case GW_ERR_CALM:
    return "peer flood, enhance your calm";
  case GW_ERR_CLOSED:
    return "connection closed";
  }
  return "unknown error";
}

bool gw_err_is_fatal(int err) {
  return err == GW_ERR_NOMEM || err == GW_ERR_PROTO || err == GW_ERR_CALM || err == GW_ERR_CLOSED || err == GW_ERR_IO ||
         err == GW_ERR_TLS;
}
