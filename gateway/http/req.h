/* One HTTP request as the protocol layers (h1/, h2/) hand it to the
 * application, and the response that comes back. Protocol-neutral. */
#ifndef GW_HTTP_REQ_H
#define GW_HTTP_REQ_H

#include <stdint.h>

#include "core/buf.h"
#include "core/identity.h"

struct gw_req {
  char method[16];
  char *path;             /* request target as received; owned */
  char *authority;        /* :authority or Host; owned, may be NULL */
  char *content_type;     /* owned, may be NULL */
  char *idem_key;         /* Idempotency-Key header; owned, may be NULL */
  char *if_none_exist;    /* If-None-Exist header (FHIR conditional create); owned, may be NULL */
  char *authorization;    /* Authorization header (the simulators' OAuth check); owned, may be NULL */
  char *acting;           /* X-Cergw-Acting-Clinic (what the gateway states to backends; the simulators check it) */
  char *if_match;         /* If-Match (FHIR versioned update); owned, may be NULL */
  char *if_none_match;    /* If-None-Match (conditional read); owned, may be NULL */
  char *accept;           /* Accept (FHIR JSON or XML); owned, may be NULL */
  char *prefer;           /* Prefer (return=minimal|representation|OperationOutcome); owned, may be NULL */
  int64_t content_length; /* -1 when absent */
  struct gw_buf body;     /* bounded by limits.max_body_bytes */
  size_t header_bytes;    /* name+value+32 per field, as HTTP/2 counts them */
  int early_status;       /* non-zero: the protocol layer already decided (400, 413, 414, 431) */
  int expect_continue;    /* HTTP/1.1 "Expect: 100-continue" */
  uint64_t start_ns;
  int32_t stream_id; /* HTTP/2 stream, or the request's ordinal on an HTTP/1.1 connection */
  int proto;         /* 1 (HTTP/1.1), 2 (HTTP/2) or GW_PROTO_MLLP */
  int console;       /* arrived on the console's listener (console_listen) */
  /* borrowed from the connection; valid while the request lives */
  const struct gw_identity *peer;
  const char *peer_addr;
  uint64_t conn_id;
  /* where a deferred answer goes (see gw_reply_post); set by the network layer */
  struct gw_reply_token {
    void *worker, *conn;
    uint64_t conn_id;
    int32_t stream_id;
  } reply;
};

/* The field of |r| that keeps request header |name| (|n| bytes, any case): Host, Content-Type,
 * Idempotency-Key, If-None-Exist, Authorization, X-Cergw-Acting-Clinic, If-Match, If-None-Match,
 * Accept, Prefer; NULL for a header the gateway does not read. One table for HTTP/1.1 and HTTP/2. */
char **gw_req_header_field(struct gw_req *r, const char *name, size_t n);

#define GW_PROTO_MLLP 3 /* an HL7 v2 message framed by MLLP: answered with the ACK alone */

#define GW_RESP_MAX_EXTRA 4

struct gw_resp {
  int status;
  const char *content_type; /* static string */
  uint8_t *body;            /* owned (malloc), may be NULL */
  size_t body_len;
  int close; /* ask the protocol layer to close after this response */
  struct {
    const char *name, *value; /* static strings */
  } extra[GW_RESP_MAX_EXTRA];
  int nextra;
  char location[256]; /* "Location" header when non-empty */
  char etag[48];      /* "ETag" header when non-empty */
  /* set by a handler that answers later through gw_reply_post(); the
   * protocol layer then keeps the request open */
  int deferred;
};

/* Delivers the answer to a request whose handler set resp->deferred. Safe
 * from any thread; takes ownership of |resp->body|. Answers to requests
 * whose connection or stream has gone are dropped. Implemented by the
 * network layer. */
void gw_reply_post(const struct gw_reply_token *t, struct gw_resp *resp);

/* Initialises |r| for a new request with a body ceiling of |max_body|. */
void gw_req_init(struct gw_req *r, size_t max_body);
/* Frees what |r| owns. */
void gw_req_cleanup(struct gw_req *r);
/* Frees the response body. */
void gw_resp_cleanup(struct gw_resp *r);
/* Sets a response with a copy of |body| (NUL-terminated). Returns 0 or GW_ERR_NOMEM. */
int gw_resp_set(struct gw_resp *r, int status, const char *content_type, const char *body);
/* Reason phrase for HTTP/1.1 status lines. */
const char *gw_http_reason(int status);

#endif
