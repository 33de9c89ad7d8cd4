/* The message engine: detects a payload's dialect, brings it to the
 * canonical form (FHIR R4 XML), checks it against the FHIR model and the CeR
 * rules, and renders it in another dialect. Loaded once at start-up from the
 * project's schemas/ and mappings/; read-only afterwards and shared by every
 * worker and by the command-line tools, so `cergw validate` applies exactly
 * the gateway's rule set. */
#ifndef GW_MSG_ENGINE_H
#define GW_MSG_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/buf.h"
#include "core/diag.h"

struct _xmlDoc;
struct gw_engine;
struct gw_rules;

/* GW_D_SOAP_NOTIFY is an output only: the AppointmentNotification sent to a clinic's callback. */
enum gw_dialect { GW_D_UNKNOWN = 0, GW_D_FHIR_JSON, GW_D_FHIR_XML, GW_D_SOAP, GW_D_HL7V2, GW_D_SOAP_NOTIFY };
const char *gw_dialect_name(enum gw_dialect d);
/* Looks at the first bytes (a BOM, white space and an MLLP start byte are skipped). */
enum gw_dialect gw_dialect_detect(const char *text, size_t len);

/* Loads schemas/ and mappings/ under |root| ("." for the project root). */
int gw_engine_new(const char *root, struct gw_engine **out, struct gw_buf *errs);
void gw_engine_free(struct gw_engine *e);

struct gw_check {
  const char *caller_rpwdl; /* NULL offline */
  time_t now;
  const char *hl7_charset; /* HL7 v2 without MSH-18: its character set (iconv name), NULL for UTF-8 */
  /* optional: for HL7 v2 input, receives the parsed message (or NULL when it
   * did not parse), so that an ACK can be built without parsing it again.
   * The caller frees it with xmlFreeDoc. */
  struct _xmlDoc **hl7_out;
  /* optional: receives the FHIR JSON that the model check of HL7 v2 or FHIR XML input writes anyway
   * (|json_pretty|: indented), when it is what gw_engine_render would write (no PATCH entry);
   * emptied otherwise. gw_engine_render_checked takes it instead of converting again. */
  struct gw_buf *json;
  int json_pretty;
};

/* Parses |text| of dialect |d| (GW_D_UNKNOWN: detect) into canonical FHIR
 * XML and applies the FHIR model and CeR rules. |*out| is set whenever the
 * text could be brought to FHIR (even with rule errors) and must then be
 * freed with xmlFreeDoc. Returns 0 when valid, GW_ERR_INVAL when any error
 * was found (see |diag|), GW_ERR_NOTFOUND for a dialect not supported yet. */
int gw_engine_check(const struct gw_engine *e, const char *text, size_t len, enum gw_dialect d,
                    const struct gw_check *chk, struct _xmlDoc **out, struct gw_diag *diag);

/* A PATCH's partial resource merged into the version before it (gw_fhir_merge with the engine's
 * model): the store's merge hook (gw_merge_fn, |ud| the engine). */
int gw_engine_merge(void *ud, const uint8_t *prev, size_t plen, const uint8_t *partial, size_t len, uint8_t **out,
                    size_t *out_len);

/* The resource at |entry| of a message's canonical FHIR XML (-1: the canonical form is the resource),
 * as a document of its own: the store's extract hook (gw_extract_fn, |ud| the engine), for versions
 * kept as their message holds them. GW_OK, GW_ERR_NOTFOUND, GW_ERR_INVAL or GW_ERR_NOMEM. */
int gw_engine_extract(void *ud, const uint8_t *canonical, size_t len, int entry, uint8_t **out, size_t *out_len);

/* A FHIR JSON answer (an OperationOutcome, a Bundle) as FHIR XML, for a client that asked for XML. */
int gw_engine_json_as_xml(const struct gw_engine *e, const uint8_t *json, size_t len, struct gw_buf *out);

/* Renders canonical FHIR XML as FHIR JSON (|pretty|: indented), FHIR XML, an
 * HL7 v2 SIU (MSH-7 is |now|, the current time when 0) or a SOAP notification. */
int gw_engine_render(const struct gw_engine *e, struct _xmlDoc *fhir, enum gw_dialect to, int pretty, time_t now,
                     struct gw_buf *out, struct gw_diag *diag);

/* gw_engine_render after gw_engine_check with |chk|: FHIR JSON the check already wrote
 * (gw_check.json, same |pretty|) is handed over instead of converted a second time. */
int gw_engine_render_checked(const struct gw_engine *e, struct _xmlDoc *fhir, struct gw_check *chk, enum gw_dialect to,
                             int pretty, time_t now, struct gw_buf *out, struct gw_diag *diag);

/* Backends as data: one row per kind of backend (msg/outbound.c). Adding a
 * kind is one row, one mapping in mappings/ and its docs
 * (docs/architecture.md shows the change). |kind| everywhere below is an
 * index into this table. */
enum gw_render {
  GW_RENDER_FHIR_JSON,         /* the mapping's FHIR XML output, as FHIR JSON */
  GW_RENDER_XML,               /* the mapping's output as it is (SOAP, XML) */
  GW_RENDER_SOAP_NOTIFICATION, /* the clinic SOAP API's notification (fhir-to-soap.xsl) */
  GW_RENDER_SIU,               /* an HL7 v2 SIU (fhir-to-siu.xsl), MSH-10 the delivery key */
};
enum gw_path_rule { GW_PATH_NONE, GW_PATH_RESOURCE_TYPE /* "/{type}" after the URL for a single resource */ };
enum gw_auth { GW_AUTH_NONE, GW_AUTH_OAUTH2_JWT /* OAuth2 client_credentials, private_key_jwt (token_url) */ };
enum gw_transport { GW_TRANSPORT_HTTPS, GW_TRANSPORT_MLLP_OR_HTTPS /* mllp://HOST:PORT or https:// */ };
struct gw_backend_kind {
  const char *name;    /* as the configuration names it */
  bool clinic;         /* a clinic's notification endpoint (the clinics map), not a routed backend */
  const char *mapping; /* mappings/NAME.xsl */
  enum gw_render render;
  const char *ctype; /* content type of the payload */
  enum gw_path_rule path;
  enum gw_auth auth;
  const char *header; /* one more request header, or NULL */
  enum gw_transport transport;
  bool record; /* the system of record (P1): its rejection means the message was not accepted; the others
                  report (SIMP, AP-KOLCE), and their rejection is a warning the gateway follows up */
};
enum { GW_OUT_P1 = 0, GW_OUT_SIMP, GW_OUT_APKOLCE, GW_OUT_CLINIC_SOAP, GW_OUT_CLINIC_SIU };
/* Row |kind|, or NULL. */
const struct gw_backend_kind *gw_backend_kind(int kind);
int gw_backend_kinds(void);
int gw_outbound_parse(const char *name); /* -1 when unknown */
const char *gw_outbound_name(int kind);
/* What goes to a backend of |kind|: its mapping's output rendered as its row
 * says. |key| is the delivery's idempotency key; |late_cancel| marks a
 * cancellation less than 48 h before the visit; |acting| is the RPWDL of the
 * clinic acting (the caller's certificate; "" when not a clinic), which the
 * mappings state (mapping parameter acting_clinic). */
int gw_engine_outbound(const struct gw_engine *e, int kind, struct _xmlDoc *fhir, const char *key, int late_cancel,
                       const char *acting, struct gw_buf *out, const char **ctype, struct gw_diag *diag);

/* SOAP answers, in the envelope version of the request (11 or 12):
 * a Fault with c:Issues in its detail (Client/Sender), and the
 * ValidateMessageResponse. */
int gw_soap_version(const char *text, size_t len);
int gw_engine_soap_fault(const struct gw_diag *diag, int version, const char *reason, struct gw_buf *out);
/* What a SOAP request asks for: the local name of the Body's operation without
 * "Request" (e.g. "BookAppointment") and the WS-Addressing MessageID ("" when
 * absent), from one parse. Returns 0, or GW_ERR_INVAL when |text| is not a
 * SOAP 1.1/1.2 envelope with a Body. */
int gw_soap_operation(const char *text, size_t len, char *op, size_t opn, char *mid, size_t midn);

/* The answer to an accepted operation |op| ("BookAppointment" ->
 * BookAppointmentResponse): overall status, the gateway's message number,
 * one Delivery per backend and the warnings of |notes| as Issues (none when
 * NULL or empty); and the GetAppointmentStatus answer. */
struct gw_soap_delivery {
  const char *backend, *state, *detail;
};
int gw_engine_soap_accepted(int version, const char *op, const char *status, long long msg_id, int n,
                            const struct gw_soap_delivery *d, const struct gw_diag *notes, struct gw_buf *out);
int gw_engine_soap_status(int version, const char *id, const char *status, struct gw_buf *out);
int gw_engine_soap_validate_response(const struct gw_diag *diag, int valid, int version, struct gw_buf *out);

/* The rule registry the engine applies (schemas/cer/rules.json). */
const struct gw_rules *gw_engine_rules(const struct gw_engine *e);

/* The WSDL and XSD of the clinic SOAP API as loaded at start-up. */
const char *gw_engine_wsdl(const struct gw_engine *e, size_t *len);
const char *gw_engine_xsd(const struct gw_engine *e, size_t *len);
/* The CeR profile of Schedule, Slot and Appointment (schemas/cer/cer-profile.xsd), or NULL. */
const char *gw_engine_profile_xsd(const struct gw_engine *e, size_t *len);

/* A transaction-response Bundle (|batch|: a batch-response): one entry per
 * entry of the request, each with |status| ("201 Created", "202 Accepted")
 * and its location (may be ""), the delivery report |diag| as the first
 * entry's outcome. */
int gw_engine_tx_response_json(const struct gw_engine *e, const struct gw_diag *diag, int n,
                               const char *const *locations, const char *const *etags, const char *status, int batch,
                               int pretty, struct gw_buf *out);

/* Renders |diag| as a FHIR OperationOutcome in JSON. */
int gw_engine_outcome_json(const struct gw_engine *e, const struct gw_diag *diag, int pretty, struct gw_buf *out);

#endif
