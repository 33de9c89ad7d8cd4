/* Suite table for the one CUnit runner (libuv's test-list.h idea). */
#ifndef GW_TEST_SUITES_H
#define GW_TEST_SUITES_H
#include <CUnit/CUnit.h>

/* Each returns 0 on success; registered in main.c. */
int gw_test_buf_suite(void);
int gw_test_log_suite(void);
int gw_test_metrics_suite(void);
int gw_test_conf_suite(void);
int gw_test_tls_suite(void);
int gw_test_router_suite(void);
int gw_test_h1_suite(void);
int gw_test_h2_suite(void);
int gw_test_hl7v2_suite(void);
int gw_test_fhir_suite(void);
int gw_test_rules_suite(void);
int gw_test_store_suite(void);
int gw_test_mllp_suite(void);
int gw_test_sched_suite(void);
int gw_test_pipe_suite(void);
int gw_test_hl7fn_suite(void);
int gw_test_seal_suite(void);

/* Directory of the development certificates (certs/dev), or NULL. */
const char *gw_test_certs(void);

#define GW_ADD(suite, fn) (CU_add_test((suite), #fn, (fn)) ? 0 : -1)
#endif
