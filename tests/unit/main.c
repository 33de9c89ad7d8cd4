#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "suites.h"

static int (*const suites[])(void) = {
    gw_test_buf_suite,    gw_test_log_suite,   gw_test_metrics_suite, gw_test_conf_suite,  gw_test_tls_suite,
    gw_test_router_suite, gw_test_h1_suite,    gw_test_h2_suite,      gw_test_hl7v2_suite, gw_test_fhir_suite,
    gw_test_rules_suite,  gw_test_store_suite, gw_test_mllp_suite,    gw_test_sched_suite, gw_test_pipe_suite,
    gw_test_hl7fn_suite,  gw_test_seal_suite,
};

const char *gw_test_certs(void) {
  static char dir[4096];
  const char *env = getenv("CERGW_CERT_DIR");
  snprintf(dir, sizeof(dir), "%s", env ? env : "certs/dev");
  char probe[4200];
  struct stat st;
  snprintf(probe, sizeof(probe), "%s/clinic-a.pem", dir);
  return stat(probe, &st) == 0 ? dir : NULL;
}

int main(void) {
  if (CU_initialize_registry() != CUE_SUCCESS)
    return 2;
  for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++)
    if (suites[i]()) {
      fprintf(stderr, "suite registration failed: %s\n", CU_get_error_msg());
      CU_cleanup_registry();
      return 2;
    }
  CU_basic_set_mode(CU_BRM_NORMAL);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  CU_cleanup_registry();
  return failed ? 1 : 0;
}
