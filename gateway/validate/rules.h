/* CeR business rules over the canonical FHIR XML document. The rules'
 * ids, severities, English and Polish messages and parameters (publication
 * horizons, covered specialties) are data: schemas/cer/rules.json. The same
 * rule set serves `cergw validate`, `cergw translate` and the gateway. */
#ifndef GW_VALIDATE_RULES_H
#define GW_VALIDATE_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "core/buf.h"
#include "core/diag.h"

struct _xmlDoc;
struct gw_rules;

struct gw_rules_ctx {
  const char *caller_rpwdl; /* the clinic of the caller's certificate, or NULL (offline: not checked) */
  time_t now;
  int xml_lines; /* the document was parsed from the caller's XML: node line numbers mean something */
};

/* One entry of the rule registry: how a rule is answered in every dialect. */
struct gw_rule_info {
  char id[48];
  enum gw_severity sev;
  char code[24];     /* OperationOutcome issue type */
  int hl7_code;      /* HL7 table 0357 */
  bool resendable;   /* HL7 AE (fix and resend) rather than AR */
  int http_status;   /* a FHIR refusal's status (422 unless the registry says, e.g. 403) */
  bool memory;       /* decided in the store's transaction (gw_rules_memory), not by gw_rules_check */
  char loc_fhir[64]; /* where a rule with memory points, per dialect ("" for the others: they point at a node) */
  char loc_hl7[16];
  char loc_soap[48]; /* the element of a SOAP operation the rule is about ("Patient/Pesel"), or "" */
};

int gw_rules_load(const char *path, struct gw_rules **out, struct gw_buf *errs);
/* The registry entry of rule |id|, or NULL when the rule set does not list it. */
const struct gw_rule_info *gw_rules_info(const struct gw_rules *r, const char *id);
/* The English and Polish texts of rule |id| with its arguments; an argument
 * "@name" is the registry's phrase |name| in each language. */
int gw_rules_text(const struct gw_rules *r, const char *id, const char *a1, const char *a2, char *en, size_t enn,
                  char *pl, size_t pln);

struct gw_memq;
struct gw_submit;
/* The rules with memory, as the store's memory hook (gw_store_set_memory;
 * |ud| is the rule set): overlapping slots, booking a slot not known to be
 * free; records the slots a message publishes, books or frees. */
int gw_rules_memory(void *ud, struct gw_memq *q, struct gw_submit *s);
void gw_rules_free(struct gw_rules *r);
/* The CeR profile XSD's text (|*len| bytes), or NULL when the rules name none. */
const char *gw_rules_profile(const struct gw_rules *r, size_t *len);

/* Applies every rule to |fhir|; issues go to |diag|. Returns 0, or
 * GW_ERR_INVAL when an error-severity rule failed. */
int gw_rules_check(const struct gw_rules *r, struct _xmlDoc *fhir, const struct gw_rules_ctx *ctx,
                   struct gw_diag *diag);

/* An identifier system as compared by the gateway: "urn:oid:" in any case
 * becomes lower case and every arc of the OID loses its leading zeros
 * ("URN:OID:2.16.840.1.113883.3.4424.02.3.1.000000012345" ->
 * "urn:oid:2.16.840.1.113883.3.4424.2.3.1.12345"); other systems are kept.
 * Two spellings of one OID are one system. */
void gw_system_normalize(const char *in, char *out, size_t n);
/* The RPWDL number (12 digits) of the clinic whose namespace |system| is
 * (urn:oid:2.16.840.1.113883.3.4424.2.3.1.{RPWDL}[...]) in any spelling, or "". */
void gw_system_clinic(const char *system, char *out, size_t n);

/* PESEL check: 11 digits, check digit (weights 1,3,7,9,...), valid birth
 * date with the century in the month. Exposed for tests. */
int gw_pesel_valid(const char *pesel);

/* FHIR instant ("2026-12-03T09:00:00+01:00", optional fraction, Z or
 * offset required) to Unix time. Returns 0 or GW_ERR_INVAL. */
int gw_instant_parse(const char *s, time_t *out);

#endif
