/* One test per CeR rule, through the whole engine (FHIR JSON in, issues out). */
#include <libxml/tree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../suites.h"
#include "core/err.h"
#include "msg/engine.h"
#include "validate/rules.h"

static struct gw_engine *eng;
static time_t now;

static int setup(void) {
  struct gw_buf errs;
  gw_buf_init(&errs, 1 << 16);
  int rv = gw_engine_new(".", &eng, &errs);
  if (rv)
    fprintf(stderr, "%s", errs.data ? (char *)errs.data : "");
  gw_buf_cleanup(&errs);
  gw_instant_parse("2026-11-22T08:00:00+01:00", &now);
  return rv;
}
static int teardown(void) {
  gw_engine_free(eng);
  return 0;
}

/* Runs |json| and returns the comma-separated rule ids found (static buffer). */
static const char *rules_of(const char *json, const char *caller, char *loc, size_t loclen) {
  static char out[512];
  struct gw_diag d;
  gw_diag_init(&d, 32);
  struct gw_check chk = {.caller_rpwdl = caller, .now = now};
  xmlDocPtr doc = NULL;
  gw_engine_check(eng, json, strlen(json), GW_D_UNKNOWN, &chk, &doc, &d);
  out[0] = 0;
  for (size_t i = 0; i < d.n; i++) {
    if (strstr(out, d.items[i].rule))
      continue;
    if (out[0])
      strcat(out, ",");
    strncat(out, d.items[i].rule, sizeof(out) - strlen(out) - 1);
  }
  if (loc)
    snprintf(loc, loclen, "%s", d.n ? d.items[0].location : "");
  xmlFreeDoc(doc);
  gw_diag_cleanup(&d);
  return out;
}

#define PESEL_OK "85010112345"
#define APPT(extra)                                                                                                    \
  "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":["                                                  \
  "{\"resource\":{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":"                                           \
  "\"urn:oid:2.16.840.1.113883.3.4424.1.1.616\",\"value\":\"" PESEL_OK "\"}],\"telecom\":[{\"system\":\"phone\","      \
  "\"value\":\"+48600100200\"}]},\"request\":{\"method\":\"PUT\",\"url\":\"Patient\"}},"                               \
  "{\"resource\":{\"resourceType\":\"Appointment\",\"status\":\"booked\"," extra                                       \
  "\"participant\":[{\"actor\":{\"type\":\"Patient\",\"identifier\":{\"system\":"                                      \
  "\"urn:oid:2.16.840.1.113883.3.4424.1.1.616\",\"value\":\"" PESEL_OK "\"}},\"status\":\"accepted\"}]},"              \
  "\"request\":{\"method\":\"POST\",\"url\":\"Appointment\"}}]}"
#define WHEN "\"start\":\"2026-12-01T09:00:00+01:00\",\"end\":\"2026-12-01T09:20:00+01:00\","
#define SPEC(c)                                                                                                        \
  "\"specialty\":[{\"coding\":[{\"system\":\"urn:oid:2.16.840.1.113883.3.4424.11.2.4\",\"code\":\"" c "\"}]}],"
#define REFERRAL                                                                                                       \
  "\"extension\":[{\"url\":\"http://cergw.pl/fhir/StructureDefinition/urgency\",\"valueCode\":\"pilny\"}],"            \
  "\"basedOn\":[{\"identifier\":{\"value\":\"2026ABCD\"}}],"

static void test_valid_booking(void) {
  CU_ASSERT_STRING_EQUAL(rules_of(APPT(WHEN SPEC("1100") REFERRAL), NULL, NULL, 0), "");
}

static void test_pesel(void) {
  CU_ASSERT_TRUE(gw_pesel_valid("85010112345"));
  CU_ASSERT_TRUE(gw_pesel_valid("02270803624"));  /* 2002-07-08: month + 20 */
  CU_ASSERT_FALSE(gw_pesel_valid("85010112341")); /* check digit */
  CU_ASSERT_FALSE(gw_pesel_valid("85023012340")); /* 30 February */
  CU_ASSERT_FALSE(gw_pesel_valid("8501011234"));
  CU_ASSERT_FALSE(gw_pesel_valid("8501011234a"));
  char loc[200];
  const char *j =
      "{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":\"urn:oid:2.16.840.1.113883.3.4424.1.1.616\","
      "\"value\":\"85010112341\"}]}";
  CU_ASSERT_STRING_EQUAL(rules_of(j, NULL, loc, sizeof(loc)), "cer.pesel");
  CU_ASSERT_STRING_EQUAL(loc, "Patient.identifier[0].value");
}

static void test_contact(void) {
  /* the same booking without the patient's telecom */
  char *j = strdup(APPT(WHEN));
  char *t = strstr(j, ",\"telecom\"");
  char *e = strstr(t, "]}") + 1;
  memmove(t, e, strlen(e) + 1);
  CU_ASSERT_STRING_EQUAL(rules_of(j, NULL, NULL, 0), "cer.contact-present");
  free(j);
  /* a cancellation needs no contact */
  CU_ASSERT_STRING_EQUAL(rules_of("{\"resourceType\":\"Appointment\",\"status\":\"cancelled\",\"participant\":"
                                  "[{\"actor\":{\"display\":\"x\"},\"status\":\"declined\"}]}",
                                  NULL, NULL, 0),
                         "");
}

static void test_cardiology(void) {
  CU_ASSERT_STRING_EQUAL(rules_of(APPT(WHEN SPEC("1103")), NULL, NULL, 0), "cer.cardiology-referral");
  /* a follow-up visit needs no referral */
  CU_ASSERT_STRING_EQUAL(
      rules_of(APPT(WHEN SPEC("1100") "\"appointmentType\":{\"coding\":[{\"code\":\"followup\"}]},"), NULL, NULL, 0),
      "");
}

static void test_times(void) {
  CU_ASSERT_STRING_EQUAL(
      rules_of(APPT("\"start\":\"2026-11-01T09:00:00+01:00\",\"end\":\"2026-11-01T09:20:00+01:00\","), NULL, NULL, 0),
      "cer.not-past");
  CU_ASSERT_STRING_EQUAL(
      rules_of(APPT("\"start\":\"2027-01-15T09:00:00+01:00\",\"end\":\"2027-01-15T09:20:00+01:00\","), NULL, NULL, 0),
      "cer.horizon");
  /* screening (7910) has a 90-day horizon */
  CU_ASSERT_STRING_EQUAL(
      rules_of(APPT("\"start\":\"2027-01-15T09:00:00+01:00\",\"end\":\"2027-01-15T09:20:00+01:00\"," SPEC("7910")),
               NULL, NULL, 0),
      "");
  CU_ASSERT_STRING_EQUAL(
      rules_of(APPT("\"start\":\"2026-12-01T09:00:00+01:00\",\"end\":\"2026-12-01T08:20:00+01:00\","), NULL, NULL, 0),
      "cer.end-after-start");
  CU_ASSERT_STRING_EQUAL(rules_of(APPT("\"start\":\"2026-12-01 09:00\","), NULL, NULL, 0), "cer.time-format");
  time_t t;
  CU_ASSERT_EQUAL(gw_instant_parse("2026-12-01T09:00:00.250+01:00", &t), GW_OK);
  CU_ASSERT_EQUAL(t, 1796112000); /* 08:00Z */
  CU_ASSERT_EQUAL(gw_instant_parse("2026-12-01T09:00:00", &t), GW_ERR_INVAL);
}

static void test_specialty_covered(void) {
  CU_ASSERT_STRING_EQUAL(rules_of(APPT(WHEN SPEC("1010")), NULL, NULL, 0), "cer.specialty-covered");
}

static void test_slot_overlap(void) {
  const char *j =
      "{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":["
      "{\"resource\":{\"resourceType\":\"Slot\",\"schedule\":{\"reference\":\"Schedule/dr-nowak\"},"
      "\"status\":\"free\",\"start\":\"2026-12-01T09:00:00+01:00\",\"end\":\"2026-12-01T09:20:00+01:00\"}},"
      "{\"resource\":{\"resourceType\":\"Slot\",\"schedule\":{\"reference\":\"Schedule/dr-nowak\"},"
      "\"status\":\"free\",\"start\":\"2026-12-01T09:10:00+01:00\",\"end\":\"2026-12-01T09:30:00+01:00\"}},"
      "{\"resource\":{\"resourceType\":\"Slot\",\"schedule\":{\"reference\":\"Schedule/dr-kowal\"},"
      "\"status\":\"free\",\"start\":\"2026-12-01T09:10:00+01:00\",\"end\":\"2026-12-01T09:30:00+01:00\"}}]}";
  char loc[200];
  CU_ASSERT_STRING_EQUAL(rules_of(j, NULL, loc, sizeof(loc)), "cer.slot-overlap");
  CU_ASSERT_STRING_EQUAL(loc, "Bundle.entry[1].resource");
}

static void test_identity(void) {
  const char *j = "{\"resourceType\":\"Slot\",\"identifier\":[{\"system\":\"urn:oid:2.16.840.1.113883.3.4424.2.3.1\","
                  "\"value\":\"000000067890\"}],\"schedule\":{\"reference\":\"Schedule/1\"},\"status\":\"free\","
                  "\"start\":\"2026-12-01T09:00:00+01:00\",\"end\":\"2026-12-01T09:20:00+01:00\"}";
  CU_ASSERT_STRING_EQUAL(rules_of(j, "000000012345", NULL, 0), "cer.identity-match");
  CU_ASSERT_STRING_EQUAL(rules_of(j, "000000067890", NULL, 0), "");
  CU_ASSERT_STRING_EQUAL(rules_of(j, NULL, NULL, 0), ""); /* offline: no caller */
}

/* Checks |len| bytes of |j| with the test clock into |d| (initialised here, holding 32). */
static void run_check(const char *j, size_t len, struct gw_diag *d) {
  gw_diag_init(d, 32);
  struct gw_check chk = {.now = now};
  xmlDocPtr doc = NULL;
  gw_engine_check(eng, j, len, GW_D_UNKNOWN, &chk, &doc, d);
  xmlFreeDoc(doc);
}

/* The first issue of |json| (static copy). */
static struct gw_issue first_issue(const char *json) {
  static struct gw_issue out;
  struct gw_diag d;
  run_check(json, strlen(json), &d);
  memset(&out, 0, sizeof(out));
  if (d.n)
    out = d.items[0];
  gw_diag_cleanup(&d);
  return out;
}

#define SLOT(status, extra)                                                                                            \
  "{\"resourceType\":\"Slot\"," extra "\"schedule\":{\"reference\":\"Schedule/1\"},\"status\":\"" status "\","         \
  "\"start\":\"2026-12-01T09:00:00+01:00\",\"end\":\"2026-12-01T09:20:00+01:00\"}"

/* schemas/cer/cer-profile.xsd: value sets, lexical forms, CeR's required parts */
static void test_profile(void) {
  CU_ASSERT_STRING_EQUAL(rules_of(SLOT("free", ""), NULL, NULL, 0), "");
  struct gw_issue i = first_issue(SLOT("open", ""));
  CU_ASSERT_STRING_EQUAL(i.rule, "cer.profile");
  CU_ASSERT_STRING_EQUAL(i.location, "Slot.status");
  CU_ASSERT_STRING_EQUAL(i.code, "code-invalid");
  CU_ASSERT_EQUAL(i.hl7_code, 103);
  CU_ASSERT_PTR_NOT_NULL(strstr(i.msg_en, "'open'"));
  CU_ASSERT_PTR_NOT_NULL(strstr(i.msg_pl, "profilem CeR"));
  CU_ASSERT_PTR_NULL(strstr(i.msg_en, "{http://hl7.org/fhir}"));
  i = first_issue(SLOT("free", "\"identifier\":[{\"system\":\"urn:oid:1.2.3\"}],"));
  CU_ASSERT_STRING_EQUAL(i.rule, "cer.profile");
  CU_ASSERT_STRING_EQUAL(i.location, "Slot.identifier[0]");
  CU_ASSERT_STRING_EQUAL(i.code, "required");
  i = first_issue(SLOT("free", "\"id\":\"no spaces allowed\","));
  CU_ASSERT_STRING_EQUAL(i.location, "Slot.id");
  CU_ASSERT_STRING_EQUAL(i.code, "value");
  CU_ASSERT_EQUAL(i.hl7_code, 102);
  /* one issue per bad value, although libxml2 reports the facet and the type */
  CU_ASSERT_STRING_EQUAL(rules_of(SLOT("free", "\"id\":\"a b\","), NULL, NULL, 0), "cer.profile");
  struct gw_diag d;
  const char *two = SLOT("free", "\"id\":\"a b\",\"comment\":\"\",");
  run_check(two, strlen(two), &d);
  CU_ASSERT_EQUAL(d.n, 1); /* the empty comment is refused by the model first: one issue */
  gw_diag_cleanup(&d);
  /* Appointment: participant status and required from their value sets, minutesDuration positive, created a dateTime */
  CU_ASSERT_STRING_EQUAL(rules_of(APPT(WHEN "\"minutesDuration\":0,"), NULL, NULL, 0), "cer.profile");
  CU_ASSERT_STRING_EQUAL(rules_of(APPT(WHEN "\"created\":\"2026-13-01\","), NULL, NULL, 0), "cer.profile");
  CU_ASSERT_STRING_EQUAL(rules_of(APPT(WHEN "\"created\":\"2026-11\","), NULL, NULL, 0), "");
  const char *appt = "{\"resourceType\":\"Appointment\",\"status\":\"proposed\",\"participant\":"
                     "[{\"required\":\"yes\",\"status\":\"maybe\"}]}";
  CU_ASSERT_STRING_EQUAL(rules_of(appt, NULL, NULL, 0), "cer.profile,cer.contact-present");
  /* a Slot contained in a Schedule is checked with it */
  const char *sched = "{\"resourceType\":\"Schedule\",\"contained\":[" SLOT(
      "closed", "") "],"
                    "\"actor\":[{\"reference\":\"Practitioner/1\"}]}";
  char loc[200];
  CU_ASSERT_STRING_EQUAL(rules_of(sched, NULL, loc, sizeof(loc)), "cer.profile");
  CU_ASSERT_STRING_EQUAL(loc, "Schedule.contained.status");
}

/* rules.json without profile_xsd: no profile; one naming a broken XSD: a configuration error */
static void test_profile_load(void) {
  char dir[] = "/tmp/cergw-rules-XXXXXX";
  CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
  char rules[300], xsd[300];
  snprintf(rules, sizeof(rules), "%s/rules.json", dir);
  snprintf(xsd, sizeof(xsd), "%s/p.xsd", dir);
  FILE *f = fopen(rules, "w");
  fputs("{\"rules\": []}", f);
  fclose(f);
  struct gw_buf errs;
  gw_buf_init(&errs, 1 << 16);
  struct gw_rules *r = NULL;
  CU_ASSERT_EQUAL(gw_rules_load(rules, &r, &errs), GW_OK);
  gw_rules_free(r);
  f = fopen(rules, "w");
  fputs("{\"profile_xsd\": \"p.xsd\", \"rules\": []}", f);
  fclose(f);
  f = fopen(xsd, "w");
  fputs("<xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\"><xs:element name=\"a\" type=\"nope\"/></xs:schema>",
        f);
  fclose(f);
  r = NULL;
  CU_ASSERT_EQUAL(gw_rules_load(rules, &r, &errs), GW_ERR_CONF);
  CU_ASSERT_PTR_NULL(r);
  CU_ASSERT_PTR_NOT_NULL(strstr(errs.data ? (char *)errs.data : "", "p.xsd"));
  remove(xsd);
  r = NULL;
  CU_ASSERT_EQUAL(gw_rules_load(rules, &r, &errs), GW_ERR_CONF); /* missing file */
  gw_buf_cleanup(&errs);
  remove(rules);
  rmdir(dir);
}

#define PT(pesel, telecom)                                                                                             \
  "{\"resource\":{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":"                                           \
  "\"urn:oid:2.16.840.1.113883.3.4424.1.1.616\",\"value\":\"" pesel "\"}]" telecom "}},"
#define TEL ",\"telecom\":[{\"system\":\"phone\",\"value\":\"+48600100200\"}]"
#define BOOKING(pesel, contained)                                                                                      \
  "{\"resource\":{\"resourceType\":\"Appointment\",\"status\":\"booked\"," contained WHEN                              \
  "\"participant\":[{\"actor\":{\"type\":\"Patient\",\"identifier\":{\"system\":"                                      \
  "\"urn:oid:2.16.840.1.113883.3.4424.1.1.616\",\"value\":\"" pesel "\"}},\"status\":\"accepted\"}]}}"

/* Several bookings in one Bundle: each finds its own patient's contact (in another entry or
 * contained), and a patient without one is reported at that booking only. */
static void test_contact_many(void) {
  const char *j = "{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":[" PT("85010112345", TEL)
      PT("02270803624", "") BOOKING("85010112345", "") "," BOOKING("02270803624", "") "," BOOKING(
          "02270803624", "\"contained\":[{\"resourceType\":\"Patient\",\"id\":\"p\"" TEL "}],") "]}";
  struct gw_diag d;
  run_check(j, strlen(j), &d);
  CU_ASSERT_EQUAL_FATAL(d.n, 1);
  CU_ASSERT_STRING_EQUAL(d.items[0].rule, "cer.contact-present");
  CU_ASSERT_STRING_EQUAL(d.items[0].location, "Bundle.entry[3].resource.participant[0]");
  gw_diag_cleanup(&d);
}

#define SLOTAT(sched, from, to)                                                                                        \
  "{\"resource\":{\"resourceType\":\"Slot\",\"schedule\":{\"reference\":\"Schedule/" sched "\"},\"status\":\"free\","  \
  "\"start\":\"2026-12-01T" from ":00+01:00\",\"end\":\"2026-12-01T" to ":00+01:00\"}}"

/* Overlaps among many slots: every overlapping pair of one schedule, in document order,
 * at the later slot; touching slots and other schedules do not overlap. */
static void test_slot_overlap_many(void) {
  /* clang-format off */
  const char *j = "{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":["
                  SLOTAT("a", "11:00", "12:00") ","  /* 0 */
                  SLOTAT("a", "09:00", "10:00") ","  /* 1 */
                  SLOTAT("b", "09:00", "10:00") ","  /* 2: another schedule */
                  SLOTAT("a", "09:50", "10:10") ","  /* 3: overlaps 1 */
                  SLOTAT("a", "09:30", "09:40") ","  /* 4: inside 1, not touching 3 */
                  SLOTAT("a", "10:10", "11:00") "]}"; /* 5: touches 3 and 0 */
  /* clang-format on */
  struct gw_diag d;
  run_check(j, strlen(j), &d);
  CU_ASSERT_EQUAL_FATAL(d.n, 2);
  CU_ASSERT_PTR_NOT_NULL(strstr(d.items[0].msg_en, "(Slot 1 and 3)"));
  CU_ASSERT_STRING_EQUAL(d.items[0].location, "Bundle.entry[3].resource");
  CU_ASSERT_PTR_NOT_NULL(strstr(d.items[1].msg_en, "(Slot 1 and 4)"));
  CU_ASSERT_STRING_EQUAL(d.items[1].location, "Bundle.entry[4].resource");
  gw_diag_cleanup(&d);
  /* more overlaps than the issue list holds: it fills, the rest is counted, nothing more */
  struct gw_buf big;
  gw_buf_init(&big, 1 << 22);
  gw_buf_printf(&big, "{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":[");
  for (int i = 0; i < 400; i++)
    gw_buf_printf(&big, "%s" SLOTAT("a", "09:00", "10:00"), i ? "," : "");
  gw_buf_printf(&big, "]}");
  run_check((const char *)big.data, big.len, &d);
  CU_ASSERT_EQUAL(d.n, 32);
  CU_ASSERT_STRING_EQUAL(d.items[0].rule, "cer.slot-overlap");
  gw_diag_cleanup(&d);
  gw_buf_cleanup(&big);
}

/* One OID, however it is spelled: the case of "urn:oid:", leading zeros in an arc. */
static void test_system_normalize(void) {
  static const struct {
    const char *in, *out, *clinic;
  } cases[] = {
      {"urn:oid:2.16.840.1.113883.3.4424.2.3.1.000000067890", "urn:oid:2.16.840.1.113883.3.4424.2.3.1.67890",
       "000000067890"},
      {"URN:OID:2.16.840.1.113883.3.4424.2.3.1.000000067890", "urn:oid:2.16.840.1.113883.3.4424.2.3.1.67890",
       "000000067890"},
      {"urn:oid:2.16.840.1.113883.3.4424.02.3.1.000000067890", "urn:oid:2.16.840.1.113883.3.4424.2.3.1.67890",
       "000000067890"},
      {"Urn:Oid:2.16.840.1.113883.3.4424.2.3.1.000000012345.1", "urn:oid:2.16.840.1.113883.3.4424.2.3.1.12345.1",
       "000000012345"},
      {"urn:oid:2.16.840.1.113883.3.4424.1.1.616", "urn:oid:2.16.840.1.113883.3.4424.1.1.616", ""},
      {"urn:oid:0.0.00", "urn:oid:0.0.0", ""},
      {"http://example.org/Ids", "http://example.org/Ids", ""},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char out[128], clinic[16];
    gw_system_normalize(cases[i].in, out, sizeof(out));
    CU_ASSERT_STRING_EQUAL(out, cases[i].out);
    gw_system_clinic(cases[i].in, clinic, sizeof(clinic));
    CU_ASSERT_STRING_EQUAL(clinic, cases[i].clinic);
  }
  char tiny[12];
  gw_system_normalize("urn:oid:2.16.840.1.113883", tiny, sizeof(tiny)); /* truncates, terminated */
  CU_ASSERT_EQUAL(strlen(tiny), sizeof(tiny) - 1);
}

int gw_test_rules_suite(void) {
  CU_pSuite s = CU_add_suite("validate/rules", setup, teardown);
  return !s || GW_ADD(s, test_valid_booking) || GW_ADD(s, test_pesel) || GW_ADD(s, test_contact) ||
         GW_ADD(s, test_cardiology) || GW_ADD(s, test_times) || GW_ADD(s, test_specialty_covered) ||
         GW_ADD(s, test_slot_overlap) || GW_ADD(s, test_identity) || GW_ADD(s, test_profile) ||
         GW_ADD(s, test_profile_load) || GW_ADD(s, test_contact_many) || GW_ADD(s, test_slot_overlap_many) ||
         GW_ADD(s, test_system_normalize);
}
