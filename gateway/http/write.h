/* The write endpoints as HTTP and MLLP see them: each request becomes a
 * message for the pipeline (pipe/pipe.h), whose answer — now, or later from
 * the store's or the dispatcher's thread — goes back as an HTTP response or
 * an MLLP frame. */
#ifndef GW_HTTP_WRITE_H
#define GW_HTTP_WRITE_H

#include <stdbool.h>

#include "http/req.h"
#include "pipe/pipe.h"

struct gw_engine;
struct gw_store;

/* Enables the write endpoints (borrowed pointers; NULL store: they answer 503). */
void gw_write_init(const struct gw_engine *e, struct gw_store *st);
void gw_write_cleanup(void);

/* POST /fhir, /fhir/{type}, PUT /fhir/{type}/{id} (|type| "" for /fhir), /hl7v2 and MLLP frames, /notifications. */
void gw_write_message(struct gw_req *req, struct gw_resp *resp, enum gw_mkind kind, const char *type, const char *id);
/* A FHIR read of the caller's own resources: read (|id|), vread (|vid|), history (|history|), search (no
 * |id|: |query| the query string). */
void gw_write_read(struct gw_req *req, struct gw_resp *resp, const char *type, const char *id, int vid, bool history,
                   const char *query);
/* POST /soap with operation |op| and WS-Addressing MessageID |mid|: false when |op| is not one the pipeline
 * takes (ValidateMessage, faults: the router answers those). */
bool gw_write_soap(struct gw_req *req, struct gw_resp *resp, const char *op, const char *mid);

#endif
