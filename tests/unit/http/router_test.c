#include <stdio.h>
#include <string.h>

#include "../suites.h"
#include "http/req.h"
#include "http/router.h"

static void run(const char *method, const char *path, int early, struct gw_resp *resp) {
  struct gw_req r;
  gw_req_init(&r, 1024);
  strcpy(r.method, method);
  r.path = path ? strdup(path) : NULL;
  r.early_status = early;
  memset(resp, 0, sizeof(*resp));
  gw_router_handle(&r, resp);
  gw_req_cleanup(&r);
}

static void test_healthz(void) {
  gw_router_init();
  struct gw_resp resp;
  run("GET", "/healthz?x=1", 0, &resp);
  CU_ASSERT_EQUAL(resp.status, 200);
  CU_ASSERT_STRING_EQUAL(resp.content_type, "application/json");
  CU_ASSERT_PTR_NOT_NULL(strstr((char *)resp.body, "\"version\":\""));
  CU_ASSERT_PTR_NOT_NULL(strstr((char *)resp.body, "\"uptime_seconds\":"));
  gw_resp_cleanup(&resp);
  run("POST", "/healthz", 0, &resp);
  CU_ASSERT_EQUAL(resp.status, 405);
  CU_ASSERT_EQUAL(resp.nextra, 1);
  CU_ASSERT_STRING_EQUAL(resp.extra[0].name, "allow");
  gw_resp_cleanup(&resp);
}

static void test_metrics_and_404(void) {
  struct gw_resp resp;
  run("GET", "/metrics", 0, &resp);
  CU_ASSERT_EQUAL(resp.status, 200);
  CU_ASSERT_PTR_NOT_NULL(strstr((char *)resp.body, "# TYPE cergw_requests_total counter"));
  gw_resp_cleanup(&resp);
  run("GET", "/healthzz", 0, &resp);
  CU_ASSERT_EQUAL(resp.status, 404);
  gw_resp_cleanup(&resp);
  run("GET", "*", 0, &resp);
  CU_ASSERT_EQUAL(resp.status, 400);
  gw_resp_cleanup(&resp);
  run("GET", NULL, 0, &resp);
  CU_ASSERT_EQUAL(resp.status, 400);
  gw_resp_cleanup(&resp);
}

static void test_early_status(void) {
  struct gw_resp resp;
  run("POST", "/healthz", 413, &resp);
  CU_ASSERT_EQUAL(resp.status, 413);
  CU_ASSERT_PTR_NOT_NULL(strstr((char *)resp.body, "max_body_bytes"));
  gw_resp_cleanup(&resp);
  run("GET", "/healthz", 431, &resp);
  CU_ASSERT_EQUAL(resp.status, 431);
  gw_resp_cleanup(&resp);
}

/* The one route table: method and path to an operation, 405 with the Allow of the path's row, the
 * patterns ({type} only the CeR resource types), a query string ignored, the engine required where it is. */
static void test_route_table(void) {
  static const struct {
    const char *method, *path;
    int status;
    const char *allow;
  } cases[] = {
      {"DELETE", "/fhir/Appointment/A-1", 405, "GET, HEAD, PUT"},   /* read and update, nothing deleted */
      {"POST", "/fhir/Appointment/A-1/_history", 405, "GET, HEAD"}, /* history is read */
      {"PUT", "/fhir/Appointment", 405, "GET, HEAD, POST"},         /* an update needs an id */
      {"GET", "/fhir", 405, "POST"},                                /* transactions are POSTed */
      {"DELETE", "/hl7v2", 405, "POST"},                            /* unknown methods too */
      {"GET", "/fhir/$validate", 405, "POST"},                      /* the tools take POST */
      {"GET", "/fhir/Patient/1", 404, NULL},                        /* {type} is Schedule, Slot or Appointment */
      {"PUT", "/fhir/Appointment/a/b", 404, NULL},                  /* one segment for {id} */
      {"GET", "/metricsx", 404, NULL},                              /* whole segments only */
      {"GET", "/fhir/cer-profile.xsd?v=1", 503, NULL},              /* no engine in this test: the route needs one */
      {"POST", "/$translate?to=fhir", 503, NULL},
      {"GET", "/soap?wsdl", 503, NULL},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct gw_resp resp;
    run(cases[i].method, cases[i].path, 0, &resp);
    CU_ASSERT_EQUAL(resp.status, cases[i].status);
    if (resp.status != cases[i].status)
      fprintf(stderr, "route %s %s: %d\n", cases[i].method, cases[i].path, resp.status);
    if (cases[i].allow) {
      CU_ASSERT_EQUAL_FATAL(resp.nextra, 1);
      CU_ASSERT_STRING_EQUAL(resp.extra[0].value, cases[i].allow);
    }
    gw_resp_cleanup(&resp);
  }
}

/* FHIR clients: GET /fhir/metadata states what is supported; every refusal under /fhir is an
 * OperationOutcome (404, 405 with Allow), elsewhere the JSON error. */
static void test_fhir_answers(void) {
  struct gw_resp resp;
  run("GET", "/fhir/metadata", 0, &resp);
  CU_ASSERT_EQUAL(resp.status, 200);
  CU_ASSERT_PTR_NOT_NULL(strstr((char *)resp.body, "\"resourceType\":\"CapabilityStatement\""));
  CU_ASSERT_PTR_NOT_NULL(strstr((char *)resp.body, "\"fhirVersion\":\"4.0.1\""));
  CU_ASSERT_PTR_NOT_NULL(strstr((char *)resp.body, "\"code\":\"vread\"")); /* what is supported */
  CU_ASSERT_PTR_NULL(strstr((char *)resp.body, "\"code\":\"delete\""));    /* and no more */
  gw_resp_cleanup(&resp);
  run("DELETE", "/fhir/Appointment/A-1", 0, &resp);
  CU_ASSERT_EQUAL(resp.status, 405);
  CU_ASSERT_PTR_NOT_NULL(strstr((char *)resp.body, "\"resourceType\":\"OperationOutcome\""));
  CU_ASSERT_PTR_NOT_NULL(strstr((char *)resp.body, "not-supported"));
  CU_ASSERT_STRING_EQUAL(resp.content_type, "application/fhir+json; charset=utf-8");
  gw_resp_cleanup(&resp);
  run("GET", "/fhir/Patient", 0, &resp);
  CU_ASSERT_EQUAL(resp.status, 404);
  CU_ASSERT_PTR_NOT_NULL(strstr((char *)resp.body, "\"code\":\"not-found\""));
  gw_resp_cleanup(&resp);
  run("GET", "/fhirx", 0, &resp);
  CU_ASSERT_EQUAL(resp.status, 404);
  CU_ASSERT_PTR_NULL(strstr((char *)resp.body, "OperationOutcome"));
  gw_resp_cleanup(&resp);
}

/* The access log's path: a template, query values masked, never what a client put in a URL. */
static void test_log_path(void) {
  static const struct {
    const char *in, *out;
  } cases[] = {
      {"/fhir/Appointment/85010112345", "/fhir/Appointment/{id}"},
      {"/fhir/Appointment?patient=85010112345&name=Kowalski", "/fhir/Appointment?patient=*&name=*"},
      {"/fhir?_format=json", "/fhir?_format=*"},
      {"/healthz", "/healthz"},
      {"/fhir/Patient/85010112345", "/fhir/..."},
      {"/85010112345", "/..."},
      {"/x/85010112345/y", "/..."},
      {"*", "-"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char out[256];
    gw_router_log_path(cases[i].in, out, sizeof(out));
    CU_ASSERT_STRING_EQUAL(out, cases[i].out);
    if (strcmp(out, cases[i].out))
      fprintf(stderr, "log path %s: %s\n", cases[i].in, out);
  }
}

int gw_test_router_suite(void) {
  CU_pSuite s = CU_add_suite("http/router", NULL, NULL);
  return !s || GW_ADD(s, test_healthz) || GW_ADD(s, test_metrics_and_404) || GW_ADD(s, test_early_status) ||
         GW_ADD(s, test_route_table) || GW_ADD(s, test_log_path) || GW_ADD(s, test_fhir_answers);
}
