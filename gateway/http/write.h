/* The write side of the gateway: FHIR REST create/update/transaction, the
 * SOAP operations, HL7 v2 over HTTP and MLLP, and P1's notifications. A
 * message that passes the checks is routed, rendered for each backend,
 * committed to the store and only then answered (deferred, in the caller's
 * dialect, with each backend's status within the answer deadline). */
#ifndef GW_HTTP_WRITE_H
#define GW_HTTP_WRITE_H

#include <stdbool.h>

#include "http/req.h"

struct gw_engine;
struct gw_store;

/* Enables the write endpoints (borrowed pointers; NULL store: they answer 503). */
void gw_write_init(const struct gw_engine *e, struct gw_store *st);

/* Handles |req| when it is a write; returns false when the path is not one. */
bool gw_write_handle(struct gw_req *req, struct gw_resp *resp);

/* Masks a PESEL-looking run of 11 digits in |s| (in place): 850101*****. */
void gw_mask_pesel(char *s);

#endif
