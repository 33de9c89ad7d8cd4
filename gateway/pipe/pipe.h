/* The message pipeline: one struct for a message in flight (struct gw_msg)
 * passed through a fixed list of stages — admit, detect, canonicalise,
 * check, remember, route, facts, render, commit — each of which returns
 * next, wait, answer or fail in the one error model (core/diag.h); one
 * place renders the answer in the caller's dialect (pipe/answer.c). HTTP and
 * MLLP only map a request to a message (http/write.c); no stage does
 * blocking I/O: what needs the database (idempotency, conditional create,
 * the rules with memory, GetAppointmentStatus) is decided by the store's
 * writer thread, and the answer comes back through |reply|. */
#ifndef GW_PIPE_PIPE_H
#define GW_PIPE_PIPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/diag.h"
#include "core/identity.h"
#include "deliver/deliver.h"
#include "msg/engine.h"
#include "store/store.h"

struct _xmlDoc;

/* Which endpoint the message came to. */
enum gw_mkind { GW_M_FHIR, GW_M_SOAP, GW_M_HL7, GW_M_NOTIFY };

#define CT_FHIR_JSON "application/fhir+json; charset=utf-8"
#define CT_FHIR_XML  "application/fhir+xml; charset=utf-8"

/* An answer, protocol-neutral: the caller turns it into HTTP or an MLLP frame. */
struct gw_answer {
  int status;
  const char *ctype; /* static string */
  uint8_t *body;     /* owned (malloc) */
  size_t len;
  char location[256], etag[48]; /* "" when none */
  bool replay;                  /* the answer first given to an idempotent repeat */
};

struct gw_msg_entry { /* one entry of a Bundle, for the transaction-response */
  char type[32];      /* its resource type ("" when the entry has no resource) */
  char id[100];       /* its id or first identifier value; "" when it has neither */
  char url[160];      /* request.url, for an entry without a resource */
};

struct gw_msg {
  /* --- the request, filled by the caller --- */
  enum gw_mkind kind;
  bool update, bundle, mllp;  /* PUT /fhir/{type}/{id}; POST /fhir; arrived over MLLP */
  char url_type[32], rid[96]; /* the resource type and id the URL names */
  const uint8_t *body;        /* borrowed until the commit stage (or the answer) */
  size_t len;
  const struct gw_identity *peer;          /* borrowed likewise */
  const char *idem_header, *if_none_exist; /* borrowed likewise, may be NULL */
  int if_match;                            /* If-Match: W/"n" -> n; 0 none */
  char if_none_match[32];                  /* If-None-Match of a read */
  bool read;                               /* a FHIR read (rq, query) */
  char query[512];                         /* its query string */
  struct gw_rquery rq;
  bool want_xml; /* Accept or _format asks for FHIR XML */
  int prefer;    /* Prefer return=: 0 default, 1 minimal, 2 representation, 3 OperationOutcome */
  uint64_t conn_id;
  int32_t stream_id;
  void (*reply)(void *ud, struct gw_answer *a); /* a later answer (any thread); takes the body */
  void *reply_ud;
  /* --- found by the stages --- */
  char op[64], caller[64], who[240], ids[200], rkey[192], why[200];
  enum gw_dialect dialect;
  int soap_version;
  char soap_op[48], soap_mid[256];
  time_t now;
  struct _xmlDoc *doc, *v2; /* canonical FHIR; the HL7 request (for its ACK) */
  struct gw_diag diag;
  int rv;     /* what the failing stage ended with */
  int status; /* HTTP status of a refusal whose dialect default does not fit (0: the default) */
  bool batch;
  int nentries;
  struct gw_msg_entry *entries;
  int late_cancel;
  int nto;
  const struct gw_backend_conf *to[GW_MAX_BACKENDS];
  struct gw_dconf *conf; /* the delivery snapshot, from route to render */
  struct gw_submit *s;   /* keys, facts and a payload per backend; to the store */
  /* --- the answer --- */
  struct gw_answer ans;
  struct gw_pipe *pipe; /* the pipeline running it */
};

struct gw_pipe;
/* |e| and |st| are borrowed (|st| NULL: every write is refused with 503). */
struct gw_pipe *gw_pipe_new(const struct gw_engine *e, struct gw_store *st);
void gw_pipe_free(struct gw_pipe *p);

struct gw_msg *gw_msg_new(void);
void gw_msg_free(struct gw_msg *m);

/* Runs |m| through the stages. true: the answer is in m->ans now (the caller
 * sends it and frees |m|); false: it comes later through m->reply, and the
 * pipeline owns |m|. */
bool gw_pipe_run(struct gw_pipe *p, struct gw_msg *m);

/* ---- the stages' parts, for the unit tests and the answer module ---- */
enum gw_step { GW_STEP_NEXT, GW_STEP_WAIT, GW_STEP_ANSWER, GW_STEP_FAIL };
/* FHIR reads (pipe/read.c): the search parameters of m->query into m->rq (GW_ERR_INVAL with why), and
 * the stage that asks the store and answers. */
int gw_read_query(struct gw_msg *m, char *why, size_t wn);
/* The answer as the client asked: FHIR XML for Accept/_format XML, no body for Prefer: return=minimal. */
void gw_answer_negotiate(const struct gw_pipe *p, struct gw_msg *m);
struct gw_store;
enum gw_step gw_read_stage(struct gw_pipe *p, struct gw_store *st, struct gw_msg *m);

/* Ends a stage with a refusal of |status| and one issue. */
enum gw_step gw_msg_refuse(struct gw_msg *m, int status, const char *code, const char *rule, const char *en,
                           const char *pl);
/* Masks a PESEL-looking run of 11 digits in |s| (in place): 850101*****. */
void gw_mask_pesel(char *s);

/* Facts read from the canonical document (pipe/facts.c). */
void gw_facts_memory(struct _xmlDoc *doc, struct gw_submit *s, time_t now, int *late_cancel);
void gw_facts_ids(struct _xmlDoc *doc, char *ids, size_t n, char *rkey, size_t rn);
/* The PESELs the message names (identifiers of that system, distinct, at most 16) into s->pesels. */
int gw_facts_pesels(struct _xmlDoc *doc, struct gw_submit *s);
void gw_facts_payload_rpwdl(struct _xmlDoc *doc, char *out, size_t n);
int gw_facts_entries(struct _xmlDoc *doc, bool *batch, struct gw_msg_entry **out);
void gw_facts_str(struct _xmlDoc *doc, void *at, const char *expr, char *out, size_t n);
/* The resources |doc| writes, as ownership keys into s->ownkeys: each Schedule, Slot and Appointment by
 * logical id and by identifier (system normalised; without a system, the caller's own scope), each
 * Bundle entry's request URL, and |url| (a PUT's "Appointment/A-1", or NULL). */
int gw_facts_owned(struct _xmlDoc *doc, const char *caller, const char *url, struct gw_submit *s);
/* The Schedules, Slots and Appointments |doc| writes (s->resf), for their versions; |url_id| the id of a
 * PUT /fhir/{type}/{id}. */
int gw_facts_resources(struct _xmlDoc *doc, const char *caller, const char *url_id, struct gw_submit *s);
/* One more key from a request URL ("Appointment/B-1", "Appointment?identifier=sys|v"); |cap| is the
 * room s->ownkeys was made with. */
void gw_facts_url(struct gw_submit *s, int cap, const char *caller, const char *url);

/* Answers (pipe/answer.c), each in the caller's dialect. */
void gw_answer_refused(const struct gw_pipe *p, struct gw_msg *m);   /* m->diag, m->rv, m->status */
void gw_answer_committed(const struct gw_pipe *p, struct gw_msg *m); /* m->s after the store and dispatcher */
void gw_answer_status(const struct gw_pipe *p, struct gw_msg *m, const char *id, const char *status);
const struct gw_engine *gw_pipe_engine(const struct gw_pipe *p);
/* The audit log's outcome word for |m| (after its answer). */
const char *gw_answer_outcome(const struct gw_msg *m);

#endif
