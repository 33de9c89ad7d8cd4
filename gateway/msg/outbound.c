/* The table of backend kinds: what each kind of backend receives and how it
 * is reached. One row per kind; see engine.h. */
#include <string.h>

#include "msg/engine.h"

static const struct gw_backend_kind kinds[] = {
    [GW_OUT_P1] = {.name = "p1",
                   .mapping = "fhir-to-p1",
                   .render = GW_RENDER_FHIR_JSON,
                   .ctype = "application/fhir+json",
                   .path = GW_PATH_RESOURCE_TYPE,
                   .auth = GW_AUTH_OAUTH2_JWT,
                   .transport = GW_TRANSPORT_HTTPS,
                   .record = true},
    [GW_OUT_SIMP] = {.name = "simp",
                     .mapping = "fhir-to-simp",
                     .render = GW_RENDER_XML,
                     .ctype = "application/soap+xml; charset=utf-8",
                     .transport = GW_TRANSPORT_HTTPS},
    [GW_OUT_APKOLCE] = {.name = "apkolce",
                        .mapping = "fhir-to-apkolce",
                        .render = GW_RENDER_XML,
                        .ctype = "application/xml; charset=utf-8",
                        .transport = GW_TRANSPORT_HTTPS},
    [GW_OUT_CLINIC_SOAP] = {.name = "clinic-soap",
                            .clinic = true,
                            .mapping = "fhir-to-soap",
                            .render = GW_RENDER_SOAP_NOTIFICATION,
                            .ctype = "text/xml; charset=utf-8",
                            .header = "soapaction: \"urn:cergw:clinic:v1/AppointmentNotification\"",
                            .transport = GW_TRANSPORT_HTTPS},
    [GW_OUT_CLINIC_SIU] = {.name = "clinic-siu",
                           .clinic = true,
                           .mapping = "fhir-to-siu",
                           .render = GW_RENDER_SIU,
                           .ctype = "x-application/hl7-v2+er7; charset=utf-8",
                           .transport = GW_TRANSPORT_MLLP_OR_HTTPS},
};

#define NKINDS ((int)(sizeof(kinds) / sizeof(kinds[0])))

const struct gw_backend_kind *gw_backend_kind(int kind) { return kind >= 0 && kind < NKINDS ? &kinds[kind] : NULL; }

int gw_backend_kinds(void) { return NKINDS; }

int gw_outbound_parse(const char *name) {
  for (int i = 0; i < NKINDS; i++)
    if (strcmp(kinds[i].name, name) == 0)
      return i;
  return -1;
}

const char *gw_outbound_name(int kind) { return kind >= 0 && kind < NKINDS ? kinds[kind].name : "?"; }
