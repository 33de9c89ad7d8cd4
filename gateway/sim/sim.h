/* Backend simulators (P1, SIMP, AP-KOLCE, a clinic's notification endpoint)
 * for `make run`, the tests and the benchmark: `cergw sim --role ...`. */
#ifndef GW_SIM_SIM_H
#define GW_SIM_SIM_H

struct gw_engine;

int gw_sim_main(const struct gw_engine *e, int argc, char **argv);

#endif
