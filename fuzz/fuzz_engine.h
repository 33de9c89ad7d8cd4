/* The engine the engine-level fuzz targets share: loaded once from the
 * project root (mappings/, schemas/), the process aborts when it cannot be. */
#ifndef GW_FUZZ_ENGINE_H
#define GW_FUZZ_ENGINE_H

#include <libxml/parser.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/err.h"
#include "msg/engine.h"

static struct gw_engine *fuzz_engine(void) {
  static struct gw_engine *engine;
  if (!engine) {
    xmlInitParser();
    struct gw_buf errs;
    gw_buf_init(&errs, 1 << 16);
    if (gw_engine_new(".", &engine, &errs)) {
      fprintf(stderr, "run from the project root: %s\n", errs.data ? (char *)errs.data : "");
      abort();
    }
    gw_buf_cleanup(&errs);
  }
  return engine;
}

/* A clock inside the seeds' publication horizon: 2026-11-28. */
#define FUZZ_NOW 1795852800

#endif
