/* The message pipeline with a real engine, a real store and a delivery
 * configuration, but no network: the store's accepted hook stands in for
 * the dispatcher (every backend "delivered" at once), answers are collected
 * from the reply callback. Each stage's refusal, the answer per dialect, and
 * every core allocation failing in turn. */
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../suites.h"
#include "core/alloc.h"
#include "core/err.h"
#include "deliver/deliver.h"
#include "msg/engine.h"
#include "pipe/pipe.h"
#include "store/store.h"
#include "validate/rules.h"

static char dir[64];
static struct gw_engine *engine;
static struct gw_store *store;
static struct gw_pipe *pipe_;

/* answers that come later */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int nlater;
static struct gw_answer later;

static void on_reply(void *ud, struct gw_answer *a) {
  (void)ud;
  pthread_mutex_lock(&mu);
  free(later.body);
  later = *a;
  a->body = NULL;
  nlater++;
  pthread_cond_signal(&cv);
  pthread_mutex_unlock(&mu);
}

/* the dispatcher's stand-in: every backend delivered */
static void on_accepted(void *ud, struct gw_submit *s) {
  (void)ud;
  s->nres = s->nd;
  for (int i = 0; i < s->nd; i++) {
    memcpy(s->res[i].backend, s->d[i].backend, sizeof(s->res[i].backend));
    s->res[i].state = GW_DS_DELIVERED;
    s->res[i].attempts = 1;
  }
  s->done(s);
}

static const char *url_type; /* run() as POST /fhir/{url_type} when set */
static struct gw_identity clinic = {.role = GW_ROLE_CLINIC, .cn = "Poradnia A (test)", .rpwdl = "000000012345"};
static struct gw_identity p1 = {.role = GW_ROLE_P1, .cn = "P1 (test)"};

static char *read_file(const char *path, const char *from, const char *to) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  static char raw[1 << 16];
  size_t n = fread(raw, 1, sizeof(raw) - 1, f);
  fclose(f);
  raw[n] = 0;
  char *out = calloc(1, n * 2 + 1), *o = out;
  for (const char *p = raw; *p;) { /* every |from| becomes |to| */
    if (from && !strncmp(p, from, strlen(from))) {
      o += sprintf(o, "%s", to);
      p += strlen(from);
    } else {
      *o++ = *p++;
    }
  }
  return out;
}

/* A date |days| ahead as YYYYMMDD (HL7) or YYYY-MM-DD (XML). */
static void ahead(int days, bool dashes, char *out, size_t n) {
  time_t t = time(NULL) + (time_t)days * 86400;
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, n, dashes ? "%Y-%m-%d" : "%Y%m%d", &tm);
}

static int setup(void) {
  snprintf(dir, sizeof(dir), "/tmp/cergw-unit-pipe.XXXXXX");
  struct gw_buf err;
  gw_buf_init(&err, 1 << 16);
  struct gw_dconf *c = NULL;
  int rv = !mkdtemp(dir) || gw_engine_new(".", &engine, &err) || gw_dconf_load(NULL, &c, &err) ||
           gw_store_open(dir, on_accepted, NULL, &store, &err);
  if (rv) {
    fprintf(stderr, "pipe setup: %s\n", err.data ? (char *)err.data : "?");
    gw_buf_cleanup(&err);
    return -1;
  }
  gw_dconf_install(c);
  gw_store_set_memory(store, gw_rules_memory, (void *)gw_engine_rules(engine));
  pipe_ = gw_pipe_new(engine, store);
  gw_buf_cleanup(&err);
  return pipe_ ? 0 : -1;
}

static int teardown(void) {
  gw_pipe_free(pipe_);
  gw_store_close(store);
  gw_dconf_install(NULL);
  gw_engine_free(engine);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  return system(cmd) == 0 ? 0 : -1;
}

static int run(enum gw_mkind kind, const struct gw_identity *who, const char *text, const char *soap_op, char **body);

/* As POST /fhir/{type}. */
static int run_at(enum gw_mkind kind, const char *type, const char *text, char **body) {
  url_type = type;
  int st = run(kind, &clinic, text, NULL, body);
  url_type = NULL;
  return st;
}

/* Runs one message; returns its answer's status (now or later), its body in |body| (malloc'd). */
static int run(enum gw_mkind kind, const struct gw_identity *who, const char *text, const char *soap_op, char **body) {
  struct gw_msg *m = gw_msg_new();
  if (!m) { /* as http/write.c answers it */
    *body = strdup("error: out of memory");
    return 503;
  }
  m->kind = kind;
  m->bundle = kind == GW_M_FHIR && !url_type;
  snprintf(m->url_type, sizeof(m->url_type), "%s", url_type ? url_type : "");
  m->body = (const uint8_t *)text;
  m->len = strlen(text);
  m->peer = who;
  m->reply = on_reply;
  if (soap_op)
    snprintf(m->soap_op, sizeof(m->soap_op), "%s", soap_op);
  pthread_mutex_lock(&mu);
  int before = nlater;
  pthread_mutex_unlock(&mu);
  int status;
  if (gw_pipe_run(pipe_, m)) {
    status = m->ans.status;
    *body = m->ans.body ? strndup((char *)m->ans.body, m->ans.len) : NULL;
    gw_msg_free(m);
    return status;
  }
  pthread_mutex_lock(&mu);
  while (nlater == before)
    pthread_cond_wait(&cv, &mu);
  status = later.status;
  *body = later.body ? strndup((char *)later.body, later.len) : NULL;
  pthread_mutex_unlock(&mu);
  return status;
}

/* |s| with every |from| replaced by |to| (a new string; |s| freed). */
static char *replace(char *s, const char *from, const char *to) {
  if (!s)
    return NULL;
  size_t n = 0, fl = strlen(from);
  for (const char *p = s; (p = strstr(p, from)); p += fl)
    n++;
  char *out = malloc(strlen(s) + n * strlen(to) + 1), *o = out;
  for (const char *p = s; *p;) {
    if (!strncmp(p, from, fl)) {
      o += sprintf(o, "%s", to);
      p += fl;
    } else {
      *o++ = *p++;
    }
  }
  *o = 0;
  free(s);
  return out;
}

/* The golden S12, five days ahead, with message number |n| and, if given, another PESEL. */
static char *siu(int n, const char *pesel) {
  char day[16], id[32], wiz[32];
  ahead(5, false, day, sizeof(day));
  snprintf(id, sizeof(id), "PIPE-%d", n);
  snprintf(wiz, sizeof(wiz), "WIZ-PIPE-%d", n);
  char *t = replace(read_file("tests/golden/siu/s12-cardiology.hl7", NULL, NULL), "20261203", day);
  t = replace(replace(t, "MSG-0001", id), "WIZ-2026-0001", wiz);
  return pesel ? replace(t, "85010112345", pesel) : t;
}

/* Each dialect end to end through every stage, and each stage's refusal in the sender's terms. */
static void test_stages_and_answers(void) {
  char *body = NULL, *msg = siu(1, NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL(msg);
  CU_ASSERT_EQUAL(run(GW_M_HL7, &clinic, msg, NULL, &body), 200);
  CU_ASSERT_PTR_NOT_NULL(body && strstr(body, "MSA|AA|PIPE-1|accepted: p1=delivered apkolce=delivered"));
  free(body);
  /* the same MSH-10 again: the first answer, replayed, nothing stored twice */
  CU_ASSERT_EQUAL(run(GW_M_HL7, &clinic, msg, NULL, &body), 200);
  CU_ASSERT_PTR_NOT_NULL(body && strstr(body, "MSA|AA|PIPE-1|accepted"));
  CU_ASSERT_TRUE(later.replay);
  free(body);
  free(msg);
  /* canonicalise: a bad PESEL, as an HL7 ACK AE pointing at PID-3 */
  msg = siu(2, "85010112346");
  CU_ASSERT_EQUAL(run(GW_M_HL7, &clinic, msg, NULL, &body), 422);
  CU_ASSERT_PTR_NOT_NULL(body && strstr(body, "MSA|AE|PIPE-2"));
  CU_ASSERT_PTR_NOT_NULL(body && strstr(body, "cer.pesel"));
  free(body);
  /* admit: P1's certificate cannot send a clinic message; a clinic cannot send a notification */
  CU_ASSERT_EQUAL(run(GW_M_HL7, &p1, msg, NULL, &body), 403);
  CU_ASSERT_PTR_NOT_NULL(body && strstr(body, "MSA|AR") && strstr(body, "gw.role"));
  free(body);
  CU_ASSERT_EQUAL(run(GW_M_NOTIFY, &clinic, "{\"resourceType\":\"Appointment\"}", NULL, &body), 403);
  CU_ASSERT_PTR_NOT_NULL(body && strstr(body, "OperationOutcome") && strstr(body, "gw.role"));
  free(body);
  free(msg);
  /* detect: FHIR needs JSON or XML */
  CU_ASSERT_EQUAL(run(GW_M_FHIR, &clinic, "MSH|^~\\&|x", NULL, &body), 415);
  free(body);
  /* check: a valid Bundle sent to POST /fhir/Appointment names the wrong type */
  msg = siu(3, NULL);
  struct gw_diag d;
  gw_diag_init(&d, 50);
  struct gw_check chk = {.now = time(NULL)};
  struct _xmlDoc *doc = NULL;
  struct gw_buf json;
  gw_buf_init(&json, 1 << 20);
  CU_ASSERT_EQUAL_FATAL(gw_engine_check(engine, msg, strlen(msg), GW_D_HL7V2, &chk, &doc, &d), GW_OK);
  CU_ASSERT_EQUAL_FATAL(gw_engine_render(engine, doc, GW_D_FHIR_JSON, 0, 0, &json, &d), GW_OK);
  gw_buf_append(&json, "", 1);
  CU_ASSERT_EQUAL(run_at(GW_M_FHIR, "Appointment", (char *)json.data, &body), 422);
  CU_ASSERT_PTR_NOT_NULL(body && strstr(body, "fhir.resource-type"));
  free(body);
  free(msg);
  gw_buf_cleanup(&json);
  gw_diag_cleanup(&d);
  xmlFreeDoc(doc);
  /* SOAP: a booking through every stage; then GetAppointmentStatus, looked up by the store's writer */
  char day[16];
  ahead(5, true, day, sizeof(day));
  char *soap = read_file("tests/golden/soap/book-cardiology.xml", "2026-12-03", day);
  CU_ASSERT_PTR_NOT_NULL_FATAL(soap);
  /* remember: the slot it books was never published, so the store's rule with memory refuses it — a
   * SOAP 1.1 Fault (HTTP 500) at the registry's location for the dialect */
  CU_ASSERT_EQUAL(run(GW_M_SOAP, &clinic, soap, "BookAppointment", &body), 500);
  CU_ASSERT_PTR_NOT_NULL(body && strstr(body, "<c:Rule>cer.slot-known-free</c:Rule>") &&
                         strstr(body, "<c:Location>Appointment.slot</c:Location>") &&
                         strstr(body, "nie jest znany bramce"));
  free(body);
  free(soap);
  /* a SOAP operation accepted end to end */
  ahead(3, true, day, sizeof(day));
  soap = read_file("tests/golden/soap/schedule.xml", "2026-12-01", day);
  CU_ASSERT_EQUAL(run(GW_M_SOAP, &clinic, soap, "PublishSchedule", &body), 200);
  CU_ASSERT_PTR_NOT_NULL(body && strstr(body, "PublishScheduleResponse"));
  free(body);
  free(soap);
}

/* A notification names a clinic without an endpoint: refused at the route stage, in FHIR terms. */
static void test_route_refusal(void) {
  char *body = NULL;
  static const char note[] = "{\"resourceType\":\"Appointment\",\"status\":\"booked\",\"identifier\":[{\"system\":"
                             "\"urn:oid:2.16.840.1.113883.3.4424.2.3.1.999999999999\",\"value\":\"X-1\"}],"
                             "\"participant\":[{\"actor\":{\"display\":\"x\"},\"status\":\"accepted\"}]}";
  int st = run(GW_M_NOTIFY, &p1, note, NULL, &body);
  CU_ASSERT(st == 422);
  CU_ASSERT_PTR_NOT_NULL(body && (strstr(body, "notify.no-endpoint") || strstr(body, "OperationOutcome")));
  free(body);
}

/* Every core allocation of the pipeline and the store's queue failing in turn: always an answer (an error
 * or an acceptance), never a crash; and what was answered as accepted is in the store. */
static void test_allocation_failures(void) {
  int accepted = 0, refused = 0;
  for (long k = 1; k <= 40; k++) {
    char *msg = siu(100 + (int)k, NULL), *body = NULL;
    CU_ASSERT_PTR_NOT_NULL_FATAL(msg);
    gw_alloc_fail_after(k);
    int st = run(GW_M_HL7, &clinic, msg, NULL, &body);
    gw_alloc_fail_after(0);
    CU_ASSERT(st > 0);
    bool ok = body && strstr(body, "MSA|AA|") != NULL;
    accepted += ok;
    refused += !ok;
    if (ok) { /* acknowledged: it is in the store, as a repeat shows */
      char *again = NULL;
      CU_ASSERT_EQUAL(run(GW_M_HL7, &clinic, msg, NULL, &again), 200);
      CU_ASSERT_TRUE(later.replay || (again && strstr(again, "duplicate")));
      free(again);
    } else {
      CU_ASSERT_PTR_NOT_NULL(body && (strstr(body, "MSA|AE|") || strstr(body, "MSA|AR|") || strstr(body, "error")));
    }
    free(body);
    free(msg);
  }
  CU_ASSERT(refused > 0);  /* the early allocations failed the message ... */
  CU_ASSERT(accepted > 0); /* ... and past the last one it went through */
}

/* The facts stage keeps every slot an Appointment names (they were cut at 4) and every Slot published. */
static void test_facts_uncut(void) {
  static const char x[] =
      "<Bundle xmlns='http://hl7.org/fhir'><entry><resource><Appointment><status value='booked'/>"
      "<start value='2030-01-02T09:00:00+01:00'/>"
      "<slot><reference value='Slot/S1'/></slot><slot><reference value='Slot/S2'/></slot>"
      "<slot><reference value='Slot/S3'/></slot><slot><reference value='Slot/S4'/></slot>"
      "<slot><reference value='Slot/S5'/></slot><slot><identifier><value value='S6'/></identifier></slot>"
      "</Appointment></resource></entry></Bundle>";
  xmlDocPtr doc = xmlReadMemory(x, (int)sizeof(x) - 1, NULL, NULL, XML_PARSE_NONET);
  CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
  struct gw_submit *s = gw_submit_new();
  int late = -1;
  gw_facts_memory(doc, s, time(NULL), &late);
  CU_ASSERT_EQUAL(s->nslotrefs, 6);
  CU_ASSERT_STRING_EQUAL(s->slotrefs[4], "S5");
  CU_ASSERT_STRING_EQUAL(s->slotrefs[5], "S6");
  CU_ASSERT_EQUAL(s->slot_release, 0);
  CU_ASSERT_EQUAL(late, 0);
  gw_submit_free(s);
  xmlFreeDoc(doc);
}

/* The table of backend kinds: each row found by its name, a mapping file for each, the clinic kinds
 * apart, and what each kind renders (through the engine, with the real mappings). */
static void test_backend_kinds(void) {
  CU_ASSERT(gw_backend_kinds() >= 5);
  for (int k = 0; k < gw_backend_kinds(); k++) {
    const struct gw_backend_kind *b = gw_backend_kind(k);
    CU_ASSERT_EQUAL(gw_outbound_parse(b->name), k);
    char path[256];
    snprintf(path, sizeof(path), "mappings/%s.xsl", b->mapping);
    FILE *f = fopen(path, "r");
    CU_ASSERT_PTR_NOT_NULL(f);
    if (f)
      fclose(f);
  }
  CU_ASSERT_PTR_NULL(gw_backend_kind(gw_backend_kinds()));
  CU_ASSERT_EQUAL(gw_outbound_parse("fax"), -1);
  CU_ASSERT_TRUE(gw_backend_kind(GW_OUT_CLINIC_SIU)->clinic);
  CU_ASSERT_FALSE(gw_backend_kind(GW_OUT_P1)->clinic);
  CU_ASSERT_EQUAL(gw_backend_kind(GW_OUT_P1)->auth, GW_AUTH_OAUTH2_JWT);
  CU_ASSERT_EQUAL(gw_backend_kind(GW_OUT_CLINIC_SIU)->transport, GW_TRANSPORT_MLLP_OR_HTTPS);
  /* each kind renders the same visit as its row says */
  char *msg = siu(7, NULL);
  struct gw_diag d;
  gw_diag_init(&d, 50);
  struct gw_check chk = {.now = time(NULL)};
  xmlDocPtr doc = NULL;
  CU_ASSERT_EQUAL_FATAL(gw_engine_check(engine, msg, strlen(msg), GW_D_HL7V2, &chk, &doc, &d), GW_OK);
  static const char *const expect[] = {"\"resourceType\"", "Envelope", "<", "Envelope", "MSH|"};
  for (int k = 0; k < 5; k++) {
    struct gw_buf out;
    gw_buf_init(&out, 1 << 20);
    const char *ct = NULL;
    CU_ASSERT_EQUAL(gw_engine_outbound(engine, k, doc, "KEY-1", 0, "000000012345", &out, &ct, &d), GW_OK);
    CU_ASSERT_STRING_EQUAL(ct, gw_backend_kind(k)->ctype);
    gw_buf_append(&out, "", 1);
    CU_ASSERT_PTR_NOT_NULL(strstr((char *)out.data, expect[k]));
    gw_buf_cleanup(&out);
  }
  xmlFreeDoc(doc);
  gw_diag_cleanup(&d);
  free(msg);
}

/* gw_facts_str reads string(f:a/f:b/@value) paths by walking the tree, and everything else with
 * XPath: the walk must give what XPath gives, first match in document order, [1], "..", absence. */
static void test_facts_str_walk(void) {
  static const char doc_text[] =
      "<Bundle xmlns='http://hl7.org/fhir' xmlns:o='urn:other'><type value='transaction'/>"
      "<entry><resource><Appointment><o:status value='wrong-ns'/><status value='booked'/>"
      "<identifier><system value='s1'/></identifier><identifier><system value='s2'/><value value='v2'/></identifier>"
      "<participant><actor><identifier><value/></identifier></actor></participant>"
      "</Appointment></resource><request><method value='PUT'/><url value='Appointment?x'/></request></entry></Bundle>";
  xmlDocPtr doc = xmlReadMemory(doc_text, (int)strlen(doc_text), "t.xml", NULL, XML_PARSE_NONET);
  CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
  xmlNodePtr appt = xmlDocGetRootElement(doc)->children->next->children->children;
  CU_ASSERT_STRING_EQUAL((const char *)appt->name, "Appointment");
  static const char *const exprs[] = {
      "string(f:status/@value)",
      "string(f:identifier/f:value/@value)",    /* the first identifier has none: the second's */
      "string(f:identifier[1]/f:value/@value)", /* only the first: none */
      "string(f:identifier[1]/f:system/@value)",
      "string(f:identifier/f:system/@value)",
      "string(../../f:request/f:url/@value)",
      "string(f:participant/f:actor/f:identifier/f:value/@value)", /* present without a value */
      "string(f:nothing/@value)",
      "string((f:identifier/f:value/@value | f:id/@value)[1])", /* not a simple path: XPath */
      "string(//f:system/@value)",                              /* any descendant: XPath */
      "string(/f:Bundle/f:type/@value)",                        /* from the root: XPath */
  };
  static const char *const want[] = {"booked", "v2", "",   "s1", "s1",         "Appointment?x",
                                     "",       "",   "v2", "s1", "transaction"};
  xmlXPathContextPtr x = xmlXPathNewContext(doc);
  xmlXPathRegisterNs(x, BAD_CAST "f", BAD_CAST "http://hl7.org/fhir");
  for (size_t i = 0; i < sizeof(exprs) / sizeof(exprs[0]); i++) {
    char got[64];
    gw_facts_str(doc, appt, exprs[i], got, sizeof(got));
    x->node = appt;
    xmlXPathObjectPtr o = xmlXPathEvalExpression(BAD_CAST exprs[i], x);
    xmlChar *xp = xmlXPathCastToString(o);
    if (strcmp(got, want[i]) || strcmp(got, (const char *)xp))
      fprintf(stderr, "\n%s: walk \"%s\", XPath \"%s\", want \"%s\"\n", exprs[i], got, xp, want[i]);
    CU_ASSERT_STRING_EQUAL(got, want[i]);
    CU_ASSERT_STRING_EQUAL(got, (const char *)xp);
    xmlFree(xp);
    xmlXPathFreeObject(o);
  }
  xmlXPathFreeContext(x);
  xmlFreeDoc(doc);
}

int gw_test_pipe_suite(void) {
  CU_pSuite s = CU_add_suite("pipe", setup, teardown);
  if (!s)
    return -1;
  return GW_ADD(s, test_stages_and_answers) || GW_ADD(s, test_route_refusal) || GW_ADD(s, test_facts_uncut) ||
         GW_ADD(s, test_backend_kinds) || GW_ADD(s, test_allocation_failures) || GW_ADD(s, test_facts_str_walk);
}
