/* The one error model: a bounded list of issues, each with a stable rule id,
 * a severity, an English and a Polish message, and where in the input it
 * was found. Renderers turn the same list into an OperationOutcome, a SOAP
 * Fault or an HL7 ACK, so every dialect reports the same codes and places. */
#ifndef GW_CORE_DIAG_H
#define GW_CORE_DIAG_H

#include <stdbool.h>
#include <stddef.h>

enum gw_severity { GW_SEV_FATAL = 0, GW_SEV_ERROR, GW_SEV_WARNING, GW_SEV_INFO };

struct gw_issue {
  enum gw_severity severity;
  char code[24]; /* FHIR IssueType: structure, required, value, invalid, business-rule, too-costly, ... */
  char rule[48]; /* stable rule id, e.g. "hl7.segment-name" or "cer.contact-present" */
  char msg_en[256];
  char msg_pl[256];
  char location[128]; /* FHIRPath, or an HL7 location "PID-3.4.1", or an XPath */
  int line, col;      /* in the input; 0 when unknown */
  int hl7_code;       /* HL7 table 0357 error code */
  bool resendable;    /* HL7: AE (fix and resend) rather than AR */
};

struct gw_diag {
  struct gw_issue *items; /* owned */
  size_t n, cap;
  size_t max; /* issues past this are counted in |dropped| only */
  size_t dropped;
};

void gw_diag_init(struct gw_diag *d, size_t max);
void gw_diag_cleanup(struct gw_diag *d);
/* Adds an issue; returns it (for setting location fields) or NULL when the
 * list is full or memory ran out (the issue is then only counted). */
struct gw_issue *gw_diag_add(struct gw_diag *d, enum gw_severity sev, const char *code, const char *rule,
                             const char *msg_en, const char *msg_pl);
/* True when any issue is an error or fatal. */
bool gw_diag_has_errors(const struct gw_diag *d);
const char *gw_severity_name(enum gw_severity s);

#endif
