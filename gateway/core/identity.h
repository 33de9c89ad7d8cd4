/* The verified identity of a TLS peer, copied out of its certificate so that
 * no other module needs OpenSSL types. See docs/operations.md for the rule
 * that maps certificate fields to these members. */
#ifndef GW_CORE_IDENTITY_H
#define GW_CORE_IDENTITY_H

enum gw_role { GW_ROLE_OTHER = 0, GW_ROLE_CLINIC, GW_ROLE_P1, GW_ROLE_GATEWAY, GW_ROLE_BACKEND, GW_ROLE_OPERATOR };

struct gw_identity {
  enum gw_role role;
  char cn[128];    /* subject commonName */
  char org[128];   /* subject organizationName */
  char rpwdl[16];  /* kod resortowy part I (12 digits), from organizationIdentifier "RPWDL-…" */
  char regon[16];  /* REGON (9 or 14 digits), from serialNumber "REGON-…" */
  char serial[48]; /* certificate serial number, hex */
  char issuer_cn[128];
  char fp_sha256[65]; /* certificate SHA-256 fingerprint, lowercase hex */
  char problem[128];  /* why the certificate has no role although it verified ("" when none): logged */
};

static inline const char *gw_role_name(enum gw_role r) {
  switch (r) {
  case GW_ROLE_CLINIC:
    return "clinic";
  case GW_ROLE_P1:
    return "p1";
  case GW_ROLE_GATEWAY:
    return "gateway";
  case GW_ROLE_BACKEND:
    return "backend";
  case GW_ROLE_OPERATOR:
    return "operator";
  default:
    return "other";
  }
}

#endif
