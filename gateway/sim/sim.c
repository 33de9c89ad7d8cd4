/* Backend simulators: stand-ins for P1 (FHIR R4 JSON + OAuth2 token
 * endpoint + notifications), SIMP (SOAP 1.2), AP-KOLCE (XML) and a clinic's
 * notification endpoint. They run on the gateway's own TLS/HTTP stack with
 * client certificates required, validate what they receive, keep it, drop
 * repeats by idempotency key (remembered on disk across restarts), and can be
 * told to delay, fail, reject, or go down (the tests kill and restart them). */
#include "sim/sim.h"
#include "tls/jwt.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>

#include "codec/fhir.h"
#include "codec/hl7v2.h"
#include "codec/xml.h"
#include "conf/conf.h"
#include "core/err.h"
#include "core/file.h"
#include "core/log.h"
#include "core/query.h"
#include "http/router.h"
#include "msg/engine.h"
#include "net/server.h"

enum role { R_P1, R_SIMP, R_APKOLCE, R_CLINIC };
enum mode { M_OK, M_FAIL, M_REJECT };

#define KEY_BUCKETS 65536
#define MAX_TOKENS  16

struct key {
  char *k;
  struct key *next;
};

static struct {
  enum role role;
  const struct gw_engine *engine;
  pthread_mutex_t mu;
  enum mode mode;
  int fail_status;
  int delay_ms;
  int token_delay_ms; /* the token endpoint answers this late */
  int token_ttl;
  bool token_fail; /* the token endpoint answers fail_status */
  long received, unique, duplicates, refused, invalid, unauthorized, tokens_issued, tokens_refused;
  struct key *keys[KEY_BUCKETS];
  int keys_fd;
  char tokens[MAX_TOKENS][65];
  time_t token_exp[MAX_TOKENS];
  int next_token;
  struct gw_jwt_key *trust; /* the gateway's public key: verifies private_key_jwt assertions */
  char gateway_url[256];
  char p1_cert[512], p1_key[512], ca[512];
  char last_key[128];
  uint8_t *last_body;
  size_t last_len;
} S = {.mu = PTHREAD_MUTEX_INITIALIZER, .fail_status = 503, .token_ttl = 300, .keys_fd = -1};

static unsigned khash(const char *s) {
  unsigned h = 2166136261u;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 16777619u;
  return h % KEY_BUCKETS;
}

/* Under S.mu. Returns true when |k| was new (and remembers it). */
static bool key_add(const char *k, bool persist) {
  unsigned h = khash(k);
  for (struct key *e = S.keys[h]; e; e = e->next)
    if (!strcmp(e->k, k))
      return false;
  struct key *e = malloc(sizeof(*e));
  if (!e || !(e->k = strdup(k))) {
    free(e);
    return true;
  }
  e->next = S.keys[h];
  S.keys[h] = e;
  if (persist && S.keys_fd >= 0) {
    char line[300];
    int n = snprintf(line, sizeof(line), "%s\n", k);
    if (write(S.keys_fd, line, (size_t)n) != n)
      gw_log(GW_LOG_WARN, "sim_keys_write_failed", "key=%s", k);
  }
  return true;
}

static void load_keys(const char *path) {
  FILE *f = fopen(path, "r");
  if (f) {
    char line[300];
    while (fgets(line, sizeof(line), f)) {
      line[strcspn(line, "\n")] = 0;
      if (line[0] && key_add(line, false))
        S.unique++;
    }
    fclose(f);
  }
  S.keys_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
}

static void set_json(struct gw_resp *r, int status, const char *ct, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void set_json(struct gw_resp *r, int status, const char *ct, const char *fmt, ...) {
  char body[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(body, sizeof(body), fmt, ap);
  va_end(ap);
  gw_resp_set(r, status, ct, body);
}

static void stats(struct gw_resp *r) {
  pthread_mutex_lock(&S.mu);
  set_json(r, 200, "application/json",
           "{\"received\":%ld,\"unique\":%ld,\"duplicates\":%ld,\"refused\":%ld,\"invalid\":%ld,"
           "\"unauthorized\":%ld,\"tokens_issued\":%ld,\"tokens_refused\":%ld,\"mode\":\"%s\",\"last_key\":\"%s\"}\n",
           S.received, S.unique, S.duplicates, S.refused, S.invalid, S.unauthorized, S.tokens_issued, S.tokens_refused,
           S.mode == M_OK     ? "ok"
           : S.mode == M_FAIL ? "fail"
                              : "reject",
           S.last_key);
  pthread_mutex_unlock(&S.mu);
}

static void control(struct gw_req *req, struct gw_resp *r) {
  char v[32];
  pthread_mutex_lock(&S.mu);
  if (gw_query_param(req->path, "mode", v, sizeof(v))[0])
    S.mode = !strcmp(v, "fail") ? M_FAIL : !strcmp(v, "reject") ? M_REJECT : M_OK;
  if (gw_query_param(req->path, "status", v, sizeof(v))[0])
    S.fail_status = atoi(v) >= 400 && atoi(v) <= 599 ? atoi(v) : 503;
  if (gw_query_param(req->path, "delay_ms", v, sizeof(v))[0])
    S.delay_ms = atoi(v) >= 0 && atoi(v) <= 60000 ? atoi(v) : 0;
  if (gw_query_param(req->path, "token_delay_ms", v, sizeof(v))[0])
    S.token_delay_ms = atoi(v) >= 0 && atoi(v) <= 60000 ? atoi(v) : 0;
  if (gw_query_param(req->path, "token_ttl", v, sizeof(v))[0])
    S.token_ttl = atoi(v) > 0 ? atoi(v) : 300;
  if (gw_query_param(req->path, "token", v, sizeof(v))[0]) /* token=fail: the token endpoint fails; token=ok */
    S.token_fail = !strcmp(v, "fail");
  if (gw_query_param(req->path, "revoke", v, sizeof(v))[0] &&
      !strcmp(v, "1")) /* every token issued so far stops working */
    memset(S.tokens, 0, sizeof(S.tokens));
  pthread_mutex_unlock(&S.mu);
  stats(r);
}

/* ---- OAuth2 token endpoint (P1) ---- */

/* Verifies an RS256 JWT from the gateway: signature, expiry, audience. */
static const char *check_assertion(const char *jwt, size_t n) {
  char claims[2048];
  if (!S.trust)
    return "no trusted key configured";
  int rv = gw_jwt_verify(S.trust, jwt, n, claims, sizeof(claims));
  if (rv == GW_ERR_INVAL)
    return "the assertion is not a JWT in base64url";
  if (rv != GW_OK)
    return "the assertion's signature does not verify with the gateway's key";
  char eb[128];
  yajl_val root = yajl_tree_parse(claims, eb, sizeof(eb));
  const char *ep[] = {"exp", NULL}, *ap[] = {"aud", NULL};
  yajl_val exp = root ? yajl_tree_get(root, ep, yajl_t_number) : NULL;
  yajl_val aud = root ? yajl_tree_get(root, ap, yajl_t_string) : NULL;
  const char *why = NULL, *audv = NULL;
  if (!exp || !YAJL_IS_INTEGER(exp) || YAJL_GET_INTEGER(exp) < (long long)time(NULL))
    why = "the assertion has expired";
  else if (!aud || !(audv = YAJL_GET_STRING(aud)) || !strstr(audv, "/oauth2/token"))
    why = "the assertion's audience is not this token endpoint";
  yajl_tree_free(root);
  return why;
}

static void answer_later(struct gw_req *req, struct gw_resp *r, int ms);

static void token(struct gw_req *req, struct gw_resp *r) {
  const char *body = (const char *)req->body.data;
  const char *a = body ? strstr(body, "client_assertion=") : NULL;
  const char *why = "client_assertion missing";
  if (a) {
    a += strlen("client_assertion=");
    why = check_assertion(a, strcspn(a, "&"));
  }
  if (!body || !strstr(body, "grant_type=client_credentials"))
    why = "grant_type must be client_credentials";
  if (why) {
    set_json(r, 400, "application/json", "{\"error\":\"invalid_client\",\"error_description\":\"%s\"}\n", why);
    return;
  }
  pthread_mutex_lock(&S.mu);
  bool fail = S.token_fail;
  int fail_status = S.fail_status;
  S.tokens_refused += fail;
  pthread_mutex_unlock(&S.mu);
  if (fail) {
    set_json(r, fail_status, "application/json", "{\"error\":\"temporarily_unavailable\"}\n");
    return;
  }
  unsigned char rnd[32];
  gw_random_bytes(rnd, sizeof(rnd));
  char tok[65];
  for (int i = 0; i < 32; i++)
    snprintf(tok + 2 * i, 3, "%02x", rnd[i]);
  pthread_mutex_lock(&S.mu);
  int slot = S.next_token++ % MAX_TOKENS;
  snprintf(S.tokens[slot], sizeof(S.tokens[slot]), "%s", tok);
  S.token_exp[slot] = time(NULL) + S.token_ttl;
  S.tokens_issued++;
  int ttl = S.token_ttl, delay = S.token_delay_ms;
  pthread_mutex_unlock(&S.mu);
  set_json(r, 200, "application/json", "{\"access_token\":\"%s\",\"token_type\":\"Bearer\",\"expires_in\":%d}\n", tok,
           ttl);
  if (delay > 0)
    answer_later(req, r, delay);
}

static bool token_ok(const char *auth) {
  if (!auth || strncmp(auth, "Bearer ", 7) != 0)
    return false;
  time_t now = time(NULL);
  bool ok = false;
  pthread_mutex_lock(&S.mu);
  for (int i = 0; i < MAX_TOKENS; i++)
    ok |= S.tokens[i][0] && !strcmp(S.tokens[i], auth + 7) && S.token_exp[i] > now;
  pthread_mutex_unlock(&S.mu);
  return ok;
}

/* ---- receiving ---- */

/* Checks the payload's format; returns a reason when it is not what this backend takes. */
/* The system of record's view of ownership: the first clinic to write a resource owns it, and a write that
 * states another acting clinic is refused, as P1 and AP-KOLCE would. Keys: P1 the Appointments'
 * identifier values, AP-KOLCE the entries' IdWpisu. Under S.mu. */
#define MAX_OWNED 4096
static struct { char key[128], owner[16]; } owned[MAX_OWNED];
static int nowned;

/* One key the system of record checks: its owner, and that it exists before anything changes it. */
static const char *owner_of(const char *k, const char *acting) {
  static __thread char why[300];
  int j = 0;
  while (j < nowned && strcmp(owned[j].key, k))
    j++;
  if (j < nowned && strcmp(owned[j].owner, acting)) {
    snprintf(why, sizeof(why), "acting clinic %s is not the owner (%s) of %s", acting, owned[j].owner, k);
    return why;
  }
  if (j == nowned && nowned < MAX_OWNED) {
    snprintf(owned[nowned].key, sizeof(owned[0].key), "%s", k);
    snprintf(owned[nowned++].owner, sizeof(owned[0].owner), "%s", acting);
  }
  return NULL;
}

static bool owned_known(const char *k) {
  for (int j = 0; j < nowned; j++)
    if (!strcmp(owned[j].key, k))
      return true;
  return false;
}

static const char *owner_check(xmlDocPtr doc, const char *expr, const char *acting) {
  if (!acting || !acting[0])
    return "the acting clinic is not stated";
  xmlXPathContextPtr x = gw_fhir_xpath(doc);
  xmlXPathObjectPtr o = x ? xmlXPathEvalExpression(BAD_CAST expr, x) : NULL;
  const char *rv = NULL;
  for (int i = 0; o && o->nodesetval && i < o->nodesetval->nodeNr && !rv; i++) {
    xmlChar *k = xmlNodeGetContent(o->nodesetval->nodeTab[i]);
    rv = owner_of(k ? (const char *)k : "", acting);
    xmlFree(k);
  }
  xmlXPathFreeObject(o);
  return rv;
}

/* P1 as a system of record: each Appointment entry of the Bundle by its identifier value (from the
 * resource, or from the conditional URL of a PATCH, whose body is a FHIRPath Patch); a PATCH, or a
 * PUT that cancels, of an appointment P1 has never seen is refused with 404 (|*status|), as a FHIR
 * server does for a conditional update that matches nothing and may not create. Under S.mu. */
static const char *p1_record(xmlDocPtr doc, const char *acting, int *status) {
  static __thread char why[300];
  if (!acting || !acting[0])
    return "the acting clinic is not stated";
  xmlXPathContextPtr x = gw_fhir_xpath(doc);
  xmlXPathObjectPtr o = x ? xmlXPathEvalExpression(BAD_CAST "/f:Appointment | //f:entry[f:resource/f:Appointment or "
                                                            "(f:request/f:method/@value='PATCH' and "
                                                            "starts-with(f:request/f:url/@value,'Appointment'))]",
                                                   x)
                          : NULL;
  const char *rv = NULL;
  for (int i = 0; o && o->nodesetval && i < o->nodesetval->nodeNr && !rv; i++) {
    x->node = o->nodesetval->nodeTab[i];
    xmlXPathObjectPtr k = xmlXPathEvalExpression(
        BAD_CAST "concat(self::f:Appointment/f:identifier[1]/f:value/@value, "
                 "f:resource/f:Appointment/f:identifier[1]/f:value/@value, substring-after(substring-after("
                 "f:resource/f:Parameters/../../f:request/f:url/@value, '?identifier='), '|'))",
        x);
    xmlXPathObjectPtr changes = xmlXPathEvalExpression(
        BAD_CAST "f:request/f:method/@value='PATCH' or (self::f:Appointment | f:resource/f:Appointment)/f:status["
                 "@value='cancelled' or @value='noshow' or @value='entered-in-error' or @value='fulfilled']",
        x);
    const char *key = k && k->stringval ? (const char *)k->stringval : "";
    if (!*key) {
      rv = "an Appointment entry without an identifier value";
      *status = 400;
    } else if (changes && xmlXPathCastToBoolean(changes) && !owned_known(key)) {
      snprintf(why, sizeof(why), "appointment %s is not known to CeR: nothing to change or cancel", key);
      rv = why;
      *status = 404;
    } else {
      rv = owner_of(key, acting);
    }
    xmlXPathFreeObject(k);
    xmlXPathFreeObject(changes);
  }
  xmlXPathFreeObject(o);
  return rv;
}

static const char *validate(struct gw_req *req, int *status) {
  const char *body = (const char *)req->body.data;
  size_t len = req->body.len;
  if (S.role == R_P1) {
    if (gw_dialect_detect(body, len) != GW_D_FHIR_JSON)
      return "P1 takes FHIR R4 JSON";
    struct gw_diag d;
    gw_diag_init(&d, 20);
    xmlDocPtr doc = NULL;
    struct gw_check chk = {.caller_rpwdl = NULL, .now = time(NULL)};
    int rv = gw_engine_check(S.engine, body, len, GW_D_FHIR_JSON, &chk, &doc, &d);
    static __thread char why[300];
    const char *owner = NULL;
    if (rv != GW_OK) {
      snprintf(why, sizeof(why), "not a valid CeR resource: %s", d.n ? d.items[0].msg_en : "?");
    } else {
      pthread_mutex_lock(&S.mu);
      owner = p1_record(doc, req->acting, status);
      pthread_mutex_unlock(&S.mu);
    }
    xmlFreeDoc(doc);
    gw_diag_cleanup(&d);
    return rv != GW_OK ? why : owner;
  }
  if (S.role == R_CLINIC && gw_dialect_detect(body, len) == GW_D_HL7V2)
    return strncmp(body, "MSH|", 4) == 0 ? NULL : "not an HL7 v2 message";
  if (S.role == R_SIMP || S.role == R_CLINIC) {
    char op[48], mid[256];
    bool soap = gw_soap_operation(body, len, op, sizeof(op), mid, sizeof(mid)) == GW_OK;
    if (S.role == R_SIMP && (!soap || gw_soap_version(body, len) != 12 || strcmp(op, "ScreeningUpdate")))
      return "SIMP takes a SOAP 1.2 envelope with ScreeningUpdate";
    if (S.role == R_CLINIC && (!soap || strcmp(op, "AppointmentNotification")))
      return "the clinic endpoint takes a SOAP AppointmentNotification or an HL7 v2 message";
    return NULL;
  }
  /* AP-KOLCE */
  xmlDocPtr doc = NULL;
  struct gw_diag d;
  gw_diag_init(&d, 4);
  int rv = gw_xml_parse(body, len, len + 1, &doc, &d);
  gw_diag_cleanup(&d);
  if (rv != GW_OK)
    return "not well-formed XML";
  xmlNodePtr root = xmlDocGetRootElement(doc);
  const char *ns = root && root->ns ? (const char *)root->ns->href : "";
  bool ok = root && !strcmp(ns, "urn:cergw:apkolce:v1") && !strcmp((const char *)root->name, "KomunikatKolejki");
  const char *why = ok ? NULL : "AP-KOLCE takes KomunikatKolejki (urn:cergw:apkolce:v1)";
  if (!why) { /* the provider the message names is the one acting, and owns each entry */
    xmlXPathContextPtr x = gw_fhir_xpath(doc);
    xmlXPathRegisterNs(x, BAD_CAST "k", BAD_CAST "urn:cergw:apkolce:v1");
    xmlXPathObjectPtr o =
        xmlXPathEvalExpression(BAD_CAST "string(/k:KomunikatKolejki/k:Naglowek/k:Swiadczeniodawca)", x);
    static __thread char provider[32];
    snprintf(provider, sizeof(provider), "%s", o && o->stringval ? (const char *)o->stringval : "");
    xmlXPathFreeObject(o);
    pthread_mutex_lock(&S.mu);
    why = !provider[0] ? "Swiadczeniodawca is empty: the message names no provider"
                       : owner_check(doc, "/k:KomunikatKolejki/k:Wpis/k:IdWpisu", provider);
    pthread_mutex_unlock(&S.mu);
  }
  xmlFreeDoc(doc);
  return why;
}

static void success(struct gw_resp *r, bool dup) {
  switch (S.role) {
  case R_P1:
    set_json(r, dup ? 200 : 201, "application/fhir+json",
             "{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"severity\":\"information\",\"code\":"
             "\"informational\",\"diagnostics\":\"%s\"}]}\n",
             dup ? "repeat: already received" : "stored in CeR (simulator)");
    break;
  case R_SIMP:
  case R_CLINIC:
    set_json(r, 200, S.role == R_SIMP ? "application/soap+xml" : "text/xml",
             "<?xml version=\"1.0\"?><env:Envelope xmlns:env=\"%s\"><env:Body><Received>%s</Received></env:Body>"
             "</env:Envelope>\n",
             S.role == R_SIMP ? "http://www.w3.org/2003/05/soap-envelope" : "http://schemas.xmlsoap.org/soap/envelope/",
             dup ? "repeat" : "true");
    break;
  case R_APKOLCE:
    set_json(r, 200, "application/xml",
             "<Potwierdzenie xmlns=\"urn:cergw:apkolce:v1\"><Status>%s</Status></Potwierdzenie>\n",
             dup ? "powtorzenie" : "przyjety");
    break;
  }
}

struct delayed {
  struct gw_reply_token t;
  struct gw_resp r;
  int ms;
};

static void *delay_main(void *arg) {
  struct delayed *d = arg;
  struct timespec ts = {d->ms / 1000, (long)(d->ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
  gw_reply_post(&d->t, &d->r);
  free(d);
  return NULL;
}

/* Sends |r| |ms| milliseconds from now, from a thread of its own (the simulator stays responsive). */
static void answer_later(struct gw_req *req, struct gw_resp *r, int ms) {
  struct delayed *d = calloc(1, sizeof(*d));
  pthread_t th;
  if (!d)
    return;
  d->t = req->reply;
  d->r = *r;
  d->ms = ms;
  r->body = NULL;
  r->body_len = 0;
  if (pthread_create(&th, NULL, delay_main, d) == 0) {
    pthread_detach(th);
    r->deferred = 1;
  } else {
    *r = d->r;
    free(d);
  }
}

/* A message seen for the first time (its key new): counted, and kept as the last one
 * received (GET /_sim/last). Under S.mu. */
static void keep_new(const char *key, const struct gw_req *req) {
  S.unique++;
  snprintf(S.last_key, sizeof(S.last_key), "%s", key);
  uint8_t *copy = malloc(req->body.len + 1);
  if (copy) {
    memcpy(copy, req->body.data, req->body.len);
    copy[req->body.len] = 0;
    free(S.last_body);
    S.last_body = copy;
    S.last_len = req->body.len;
  }
}

static void receive(struct gw_req *req, struct gw_resp *r) {
  pthread_mutex_lock(&S.mu);
  S.received++;
  enum mode mode = S.mode;
  int fail = S.fail_status, delay = S.delay_ms;
  pthread_mutex_unlock(&S.mu);
  if (mode == M_FAIL) {
    pthread_mutex_lock(&S.mu);
    S.refused++;
    pthread_mutex_unlock(&S.mu);
    set_json(r, fail, "application/json", "{\"error\":\"simulated failure\"}\n");
  } else if (mode == M_REJECT) {
    pthread_mutex_lock(&S.mu);
    S.refused++;
    pthread_mutex_unlock(&S.mu);
    set_json(r, 422, "application/json", "{\"error\":\"rejected by the simulator: business rule\"}\n");
  } else if (!req->idem_key || !req->idem_key[0]) {
    set_json(r, 400, "application/json", "{\"error\":\"Idempotency-Key header missing\"}\n");
  } else {
    int status = 400;
    const char *why = validate(req, &status);
    bool dup = false;
    pthread_mutex_lock(&S.mu);
    if (why) {
      S.invalid++;
    } else if (key_add(req->idem_key, true)) {
      keep_new(req->idem_key, req);
    } else {
      S.duplicates++;
      dup = true;
    }
    pthread_mutex_unlock(&S.mu);
    if (why) {
      char esc[400];
      gw_log_quote(esc, sizeof(esc), why);
      if (S.role == R_P1) /* P1 answers as a FHIR server: an OperationOutcome */
        set_json(r, status, "application/fhir+json",
                 "{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"severity\":\"error\",\"code\":\"%s\","
                 "\"diagnostics\":%s}]}\n",
                 status == 404 ? "not-found" : "invalid", esc);
      else
        set_json(r, 400, "application/json", "{\"error\":%s}\n", esc);
    } else {
      success(r, dup);
    }
  }
  if (delay > 0)
    answer_later(req, r, delay);
}

/* P1 only: sends |req|'s body to the gateway's /notifications as P1 would. */
static size_t sink(char *p, size_t sz, size_t n, void *ud) {
  gw_buf_append(ud, p, sz * n);
  return sz * n;
}

static void notify(struct gw_req *req, struct gw_resp *r) {
  CURL *h = curl_easy_init();
  struct gw_buf out;
  gw_buf_init(&out, 1 << 20);
  char url[320], hdr[200];
  snprintf(url, sizeof(url), "%s/notifications", S.gateway_url);
  struct curl_slist *hs = curl_slist_append(NULL, "content-type: application/fhir+json");
  char ik[80];
  if (gw_query_param(req->path, "key", ik, sizeof(ik))[0]) {
    snprintf(hdr, sizeof(hdr), "idempotency-key: %s", ik);
    hs = curl_slist_append(hs, hdr);
  }
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_SSLCERT, S.p1_cert);
  curl_easy_setopt(h, CURLOPT_SSLKEY, S.p1_key);
  curl_easy_setopt(h, CURLOPT_CAINFO, S.ca);
  curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body.data);
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body.len);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &out);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  CURLcode cc = curl_easy_perform(h);
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(h);
  curl_slist_free_all(hs);
  if (cc != CURLE_OK) {
    set_json(r, 502, "application/json", "{\"error\":\"gateway unreachable: %s\"}\n", curl_easy_strerror(cc));
  } else {
    r->status = (int)status;
    r->content_type = "application/fhir+json";
    r->body = gw_buf_take(&out, &r->body_len);
  }
  gw_buf_cleanup(&out);
}

static void last(struct gw_resp *r) {
  pthread_mutex_lock(&S.mu);
  if (S.last_body)
    gw_resp_set(r, 200, "application/octet-stream", (const char *)S.last_body);
  else
    gw_router_error(r, 404, "nothing received yet");
  pthread_mutex_unlock(&S.mu);
}

/* A clinic's MLLP endpoint: an SIU in, an ACK out. ok: AA (a repeated MSH-10 is counted
 * as a duplicate and acknowledged again); reject: AE; fail: an answer that is no ACK. */
static void mllp_receive(struct gw_req *req, struct gw_resp *r) {
  pthread_mutex_lock(&S.mu);
  S.received++;
  enum mode mode = S.mode;
  pthread_mutex_unlock(&S.mu);
  if (mode == M_FAIL) {
    pthread_mutex_lock(&S.mu);
    S.refused++;
    pthread_mutex_unlock(&S.mu);
    gw_resp_set(r, 200, "text/plain", "simulated failure");
    return;
  }
  struct gw_diag d;
  gw_diag_init(&d, 8);
  xmlDocPtr v2 = NULL;
  int rv = gw_hl7_parse((const char *)req->body.data, req->body.len, NULL, &v2, &d);
  char *ctrl = rv == GW_OK ? gw_hl7_get(v2, "MSH", 10, 0) : NULL;
  enum gw_hl7_ack code = GW_ACK_AA;
  const char *text = "received";
  pthread_mutex_lock(&S.mu);
  if (rv != GW_OK || !ctrl || !*ctrl) {
    S.invalid++;
    code = GW_ACK_AR;
    text = "not an HL7 v2 message with MSH-10";
  } else if (mode == M_REJECT) {
    S.refused++;
    code = GW_ACK_AE;
    text = "rejected by the simulator: business rule";
  } else if (key_add(ctrl, true)) {
    keep_new(ctrl, req);
  } else {
    S.duplicates++;
    text = "repeat: already received";
  }
  pthread_mutex_unlock(&S.mu);
  struct gw_buf out;
  gw_buf_init(&out, 1 << 16);
  char stamp[20];
  gw_hl7_now(stamp, sizeof(stamp));
  gw_hl7_ack(v2, code, text, &d, "SIMACK", stamp, &out);
  gw_resp_set(r, 200, "x-application/hl7-v2+er7", out.data ? (const char *)out.data : "");
  gw_buf_cleanup(&out);
  free(ctrl);
  xmlFreeDoc(v2);
  gw_diag_cleanup(&d);
}

static void sim_handle(struct gw_req *req, struct gw_resp *r) {
  if (req->proto == GW_PROTO_MLLP && !req->early_status) {
    mllp_receive(req, r);
    return;
  }
  if (req->early_status || !req->path) {
    gw_router_handle(req, r);
    return;
  }
  bool post = !strcmp(req->method, "POST");
  if (!strncmp(req->path, "/_sim/", 6) && (!req->peer || req->peer->role != GW_ROLE_OPERATOR)) {
    gw_router_error(r, 403, "the simulator's control endpoints take an operator certificate (OU=operator)");
    return;
  }
  if (!strncmp(req->path, "/_sim/stats", 11))
    stats(r);
  else if (!strncmp(req->path, "/_sim/control", 13) && post)
    control(req, r);
  else if (!strncmp(req->path, "/_sim/last", 10))
    last(r);
  else if (!strncmp(req->path, "/_sim/notify", 12) && post && S.role == R_P1)
    notify(req, r);
  else if (!strncmp(req->path, "/oauth2/token", 13) && post && S.role == R_P1)
    token(req, r);
  else if (!strcmp(req->path, "/healthz"))
    gw_router_handle(req, r);
  else if (post) {
    if (S.role == R_P1 && !token_ok(req->authorization)) {
      pthread_mutex_lock(&S.mu);
      S.unauthorized++;
      pthread_mutex_unlock(&S.mu);
      set_json(r, 401, "application/json", "{\"error\":\"invalid_token\"}\n");
      return;
    }
    receive(req, r);
  } else {
    gw_router_error(r, 404, "no such resource");
  }
}

int gw_sim_main(const struct gw_engine *e, int argc, char **argv) {
  const char *role = NULL, *listen = NULL, *data = NULL, *trust = "certs/dev/gateway-out.pem";
  const char *gateway = "https://127.0.0.1:8443", *mllp = NULL;
  for (int i = 0; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--role"))
      role = argv[i + 1];
    else if (!strcmp(argv[i], "--listen"))
      listen = argv[i + 1];
    else if (!strcmp(argv[i], "--data"))
      data = argv[i + 1];
    else if (!strcmp(argv[i], "--trust"))
      trust = argv[i + 1];
    else if (!strcmp(argv[i], "--gateway"))
      gateway = argv[i + 1];
    else if (!strcmp(argv[i], "--mllp"))
      mllp = argv[i + 1];
    else
      role = NULL, i = argc;
  }
  if (!role || !listen || (argc % 2)) {
    fprintf(stderr, "usage: cergw sim --role p1|simp|apkolce|clinic --listen HOST:PORT [--data DIR]\n"
                    "                 [--trust GATEWAY-CERT.pem] [--gateway https://HOST:PORT]\n"
                    "                 [--mllp HOST:PORT]   (clinic: also take SIU over MLLP/TLS there)\n");
    return 2;
  }
  if (!strcmp(role, "p1"))
    S.role = R_P1;
  else if (!strcmp(role, "simp"))
    S.role = R_SIMP;
  else if (!strcmp(role, "apkolce"))
    S.role = R_APKOLCE;
  else if (!strcmp(role, "clinic"))
    S.role = R_CLINIC;
  else {
    fprintf(stderr, "sim: unknown role %s\n", role);
    return 2;
  }
  S.engine = e;
  snprintf(S.gateway_url, sizeof(S.gateway_url), "%s", gateway);
  snprintf(S.p1_cert, sizeof(S.p1_cert), "certs/dev/p1.pem");
  snprintf(S.p1_key, sizeof(S.p1_key), "certs/dev/p1.key");
  snprintf(S.ca, sizeof(S.ca), "certs/dev/ca.pem");
  struct gw_buf terr;
  gw_buf_init(&terr, 1024);
  S.trust = gw_jwt_key_public(trust, &terr);
  gw_buf_cleanup(&terr);
  if (S.role == R_P1 && !S.trust) {
    fprintf(stderr, "sim: cannot read the gateway's certificate %s\n", trust);
    return 1;
  }
  char dir[512], keys[600];
  snprintf(dir, sizeof(dir), "%s", data ? data : "data");
  mkdir(dir, 0700);
  snprintf(keys, sizeof(keys), "%s/sim-%s.keys", dir, role);
  load_keys(keys);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  struct gw_conf c;
  if (gw_conf_defaults(&c) || gw_conf_set_listen(&c, listen)) {
    fprintf(stderr, "sim: bad --listen %s\n", listen);
    gw_conf_cleanup(&c);
    return 2;
  }
  free(c.mllp_host);
  free(c.mllp_port);
  c.mllp_host = c.mllp_port = NULL;
  if (mllp && (S.role != R_CLINIC || gw_hostport_split(mllp, &c.mllp_host, &c.mllp_port))) {
    fprintf(stderr, "sim: --mllp HOST:PORT is for the clinic role\n");
    gw_conf_cleanup(&c);
    return 2;
  }
  c.workers = 1;
  c.log_level = GW_LOG_WARN;
  gw_log_set_level(GW_LOG_WARN);
  static const struct gw_app app = {.handle = sim_handle, .reload = NULL};
  gw_log(GW_LOG_WARN, "sim_started", "role=%s listen=%s keys=%ld", role, listen, S.unique);
  int rv = gw_server_run(&c, &app);
  gw_conf_cleanup(&c);
  gw_jwt_key_free(S.trust);
  if (S.keys_fd >= 0)
    close(S.keys_fd);
  for (int i = 0; i < KEY_BUCKETS; i++)
    for (struct key *k = S.keys[i], *n; k; k = n) {
      n = k->next;
      free(k->k);
      free(k);
    }
  free(S.last_body);
  curl_global_cleanup();
  return rv ? 1 : 0;
}
