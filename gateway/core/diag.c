#include "core/diag.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gw_diag_init(struct gw_diag *d, size_t max) {
  memset(d, 0, sizeof(*d));
  d->max = max;
}

void gw_diag_cleanup(struct gw_diag *d) {
  free(d->items);
  d->items = NULL;
  d->n = d->cap = d->dropped = 0;
}

struct gw_issue *gw_diag_add(struct gw_diag *d, enum gw_severity sev, const char *code, const char *rule,
                             const char *msg_en, const char *msg_pl) {
  if (d->n >= d->max) {
    d->dropped++;
    return NULL;
  }
  if (d->n == d->cap) {
    size_t cap = d->cap ? d->cap * 2 : 8;
    struct gw_issue *p = realloc(d->items, cap * sizeof(*p));
    if (!p) {
      d->dropped++;
      return NULL;
    }
    d->items = p;
    d->cap = cap;
  }
  struct gw_issue *i = &d->items[d->n++];
  memset(i, 0, sizeof(*i));
  i->severity = sev;
  snprintf(i->code, sizeof(i->code), "%s", code);
  snprintf(i->rule, sizeof(i->rule), "%s", rule);
  snprintf(i->msg_en, sizeof(i->msg_en), "%s", msg_en);
  snprintf(i->msg_pl, sizeof(i->msg_pl), "%s", msg_pl ? msg_pl : msg_en);
  i->resendable = true;
  return i;
}

bool gw_diag_has_errors(const struct gw_diag *d) {
  for (size_t i = 0; i < d->n; i++)
    if (d->items[i].severity <= GW_SEV_ERROR)
      return true;
  return d->dropped > 0;
}

const char *gw_severity_name(enum gw_severity s) {
  switch (s) {
  case GW_SEV_FATAL:
    return "fatal";
  case GW_SEV_ERROR:
    return "error";
  case GW_SEV_WARNING:
    return "warning";
  default:
    return "information";
  }
}
