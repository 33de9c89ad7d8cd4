#include "http/req.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/err.h"

void gw_req_init(struct gw_req *r, size_t max_body) {
  memset(r, 0, sizeof(*r));
  r->content_length = -1;
  gw_buf_init(&r->body, max_body);
}

void gw_req_cleanup(struct gw_req *r) {
  free(r->path);
  free(r->authority);
  free(r->content_type);
  free(r->idem_key);
  free(r->if_none_exist);
  free(r->authorization);
  free(r->acting);
  free(r->if_match);
  free(r->if_none_match);
  free(r->accept);
  free(r->prefer);
  gw_buf_cleanup(&r->body);
  r->path = r->authority = r->content_type = r->idem_key = r->if_none_exist = r->authorization = r->acting = NULL;
  r->if_match = r->if_none_match = r->accept = r->prefer = NULL;
}

char **gw_req_header_field(struct gw_req *r, const char *name, size_t n) {
  static const struct {
    const char *name;
    size_t off;
  } fields[] = {{"host", offsetof(struct gw_req, authority)},
                {"content-type", offsetof(struct gw_req, content_type)},
                {"idempotency-key", offsetof(struct gw_req, idem_key)},
                {"if-none-exist", offsetof(struct gw_req, if_none_exist)},
                {"authorization", offsetof(struct gw_req, authorization)},
                {"x-cergw-acting-clinic", offsetof(struct gw_req, acting)},
                {"if-match", offsetof(struct gw_req, if_match)},
                {"if-none-match", offsetof(struct gw_req, if_none_match)},
                {"accept", offsetof(struct gw_req, accept)},
                {"prefer", offsetof(struct gw_req, prefer)}};
  for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
    if (strlen(fields[i].name) == n && !strncasecmp(fields[i].name, name, n))
      return (char **)((char *)r + fields[i].off);
  return NULL;
}

void gw_resp_cleanup(struct gw_resp *r) {
  free(r->body);
  r->body = NULL;
  r->body_len = 0;
}

int gw_resp_set(struct gw_resp *r, int status, const char *ct, const char *body) {
  size_t n = strlen(body);
  uint8_t *p = malloc(n + 1);
  if (!p)
    return GW_ERR_NOMEM;
  memcpy(p, body, n + 1);
  free(r->body);
  r->status = status;
  r->content_type = ct;
  r->body = p;
  r->body_len = n;
  return GW_OK;
}

const char *gw_http_reason(int s) {
  switch (s) {
  case 100:
    return "Continue";
  case 200:
    return "OK";
  case 201:
    return "Created";
  case 202:
    return "Accepted";
  case 204:
    return "No Content";
  case 400:
    return "Bad Request";
  case 401:
    return "Unauthorized";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 408:
    return "Request Timeout";
  case 409:
    return "Conflict";
  case 412:
    return "Precondition Failed";
  case 413:
    return "Content Too Large";
  case 414:
    return "URI Too Long";
  case 415:
    return "Unsupported Media Type";
  case 422:
    return "Unprocessable Content";
  case 429:
    return "Too Many Requests";
  case 431:
    return "Request Header Fields Too Large";
  case 500:
    return "Internal Server Error";
  case 501:
    return "Not Implemented";
  case 502:
    return "Bad Gateway";
  case 503:
    return "Service Unavailable";
  case 504:
    return "Gateway Timeout";
  }
  return "Unknown";
}
