#!/usr/bin/env bash
# Creates the development PKI in certs/dev/ (git-ignored) with the openssl CLI.
# ECDSA P-256 everywhere. Idempotent: does nothing when certs/dev/.complete exists
# and every certificate is still valid for at least a day; `--force` recreates it.
#
# Identity rule (see docs/operations.md, "Certificate identity"):
#   subject organizationIdentifier (2.5.4.97) = "RPWDL-<12 digits>"  kod resortowy part I
#   subject serialNumber          (2.5.4.5)  = "REGON-<9 or 14 digits>"
#   subject OU                                = role: clinic | p1 | gateway | backend | operator
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${CERGW_CERT_DIR:-$here/dev}
force=0
[ "${1:-}" = "--force" ] && force=1

# the development key that seals the store's content at rest (store.key_file; docs/operations.md):
# one "ID HEX" line, mode 0600; never replaced once made (the store's rows are sealed under it)
store_key() {
  [ -f "$out/store.key" ] && return 0
  mkdir -p "$out"
  (umask 077 && printf '# cergw store keys (development): "ID HEX" per line, the last seals new rows\ndev-1 %s\n' \
    "$(openssl rand -hex 32)" >"$out/store.key")
  echo "certs: created the development store key $out/store.key"
}

# the console's development bearer token (console.token_file), for a browser without operator.p12
console_token() {
  [ -f "$out/console.token" ] && return 0
  (umask 077 && openssl rand -hex 24 >"$out/console.token")
  echo "certs: created the console's development token $out/console.token"
}

if [ $force -eq 0 ] && [ -f "$out/.complete" ]; then
  store_key
  console_token
  ok=1
  for c in ca server clinic-a clinic-b p1 gateway-out revoked foreign-ca foreign rogue-p1 ca-client two-orgid no-clientauth operator; do
    openssl x509 -checkend 86400 -noout -in "$out/$c.pem" >/dev/null 2>&1 || ok=0
  done
  [ -f "$out/operator.p12" ] || ok=0
  # the CRL must not be stale either
  if [ $ok -eq 1 ] && openssl crl -in "$out/crl.pem" -noout -nextupdate >/dev/null 2>&1; then
    next=$(openssl crl -in "$out/crl.pem" -noout -nextupdate | cut -d= -f2)
    if [ "$(date -d "$next" +%s)" -gt "$(( $(date +%s) + 86400 ))" ]; then
      echo "certs: $out is up to date"
      exit 0
    fi
  fi
fi

keep=$(mktemp)
[ -f "$out/store.key" ] && cp -p "$out/store.key" "$keep" || rm -f "$keep"
rm -rf "$out"
mkdir -p "$out"
[ -f "$keep" ] && mv "$keep" "$out/store.key"
cd "$out"
umask 077
work=$out/.ca
mkdir -p "$work/newcerts" "$work/foreign/newcerts"
: >"$work/index.txt"
: >"$work/foreign/index.txt"
echo 1000 >"$work/serial"
echo 2000 >"$work/foreign/serial"
echo 1000 >"$work/crlnumber"

write_ca_conf() { # dir cert key
  cat <<EOF
[ ca ]
default_ca = dev_ca
[ dev_ca ]
dir = $1
database = \$dir/index.txt
new_certs_dir = \$dir/newcerts
serial = \$dir/serial
crlnumber = $work/crlnumber
certificate = $2
private_key = $3
default_md = sha256
default_days = 825
default_crl_days = 3650
policy = any_policy
unique_subject = no
copy_extensions = none
[ any_policy ]
commonName = supplied
organizationName = optional
organizationalUnitName = optional
organizationIdentifier = optional
serialNumber = optional
countryName = optional
[ v3_ca ]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ server_ext ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ client_ext ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ ca_client_ext ]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ both_ext ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth, serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
}

write_ca_conf "$work" "$out/ca.pem" "$out/ca.key" >"$work/ca.cnf"
write_ca_conf "$work/foreign" "$out/foreign-ca.pem" "$out/foreign-ca.key" >"$work/foreign.cnf"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }

# self-signed roots
key ca
openssl req -new -x509 -key ca.key -out ca.pem -days 3650 -sha256 \
  -subj "/C=PL/O=cergw development/CN=cergw development CA" \
  -config "$work/ca.cnf" -extensions v3_ca
key foreign-ca
openssl req -new -x509 -key foreign-ca.key -out foreign-ca.pem -days 3650 -sha256 \
  -subj "/C=PL/O=Somebody else/CN=Foreign CA" \
  -config "$work/foreign.cnf" -extensions v3_ca

issue() { # name subject extension [conf] [extra ca args...]
  local name=$1 subj=$2 ext=$3 conf=${4:-$work/ca.cnf}
  shift 4 || shift $#
  key "$name"
  openssl req -new -key "$name.key" -out "$work/$name.csr" -subj "$subj" 2>/dev/null
  openssl ca -batch -notext -config "$conf" -extensions "$ext" \
    -in "$work/$name.csr" -out "$name.pem" "$@" 2>/dev/null
}

issue server "/C=PL/O=cergw development/CN=localhost" server_ext "$work/ca.cnf"
issue clinic-a "/C=PL/O=Przychodnia Serce sp. z o.o./OU=clinic/organizationIdentifier=RPWDL-000000012345/serialNumber=REGON-123456785/CN=Poradnia kardiologiczna A (dev)" client_ext "$work/ca.cnf"
issue clinic-b "/C=PL/O=Centrum Zdrowia Kobiety/OU=clinic/organizationIdentifier=RPWDL-000000067890/serialNumber=REGON-234567895/CN=Pracownia mammografii B (dev)" client_ext "$work/ca.cnf"
issue p1 "/C=PL/O=Centrum e-Zdrowia/OU=p1/CN=P1 CeR notifications (dev)" both_ext "$work/ca.cnf"
issue gateway-out "/C=PL/O=cergw development/OU=gateway/CN=cergw outbound (dev)" client_ext "$work/ca.cnf"
issue operator "/C=PL/O=cergw development/OU=operator/CN=cergw operator (dev)" client_ext "$work/ca.cnf"
issue expired "/C=PL/O=Przychodnia Dawna/OU=clinic/organizationIdentifier=RPWDL-000000011111/serialNumber=REGON-123456785/CN=Expired clinic (dev)" client_ext "$work/ca.cnf" \
  -startdate 20200101000000Z -enddate 20210101000000Z
issue revoked "/C=PL/O=Przychodnia Odwolana/OU=clinic/organizationIdentifier=RPWDL-000000022222/serialNumber=REGON-123456785/CN=Revoked clinic (dev)" client_ext "$work/ca.cnf"
issue foreign "/C=PL/O=Somebody else/OU=clinic/organizationIdentifier=RPWDL-000000012345/serialNumber=REGON-123456785/CN=Foreign clinic" client_ext "$work/foreign.cnf"
# certificates that verify but must name nobody (docs/operations.md, "Certificate identity")
issue rogue-p1 "/C=PL/O=Somebody/OU=p1/CN=Somebody claiming to be P1" client_ext "$work/ca.cnf"
issue ca-client "/C=PL/O=Przychodnia CA/OU=clinic/organizationIdentifier=RPWDL-000000033333/serialNumber=REGON-123456785/CN=A CA certificate used as a client" ca_client_ext "$work/ca.cnf"
issue two-orgid "/C=PL/O=Przychodnia Dwojaka/OU=clinic/organizationIdentifier=RPWDL-000000012345/organizationIdentifier=RPWDL-000000067890/serialNumber=REGON-123456785/CN=Two organizationIdentifiers" client_ext "$work/ca.cnf"
issue no-clientauth "/C=PL/O=Przychodnia Serwerowa/OU=clinic/organizationIdentifier=RPWDL-000000044444/serialNumber=REGON-123456785/CN=Server-only certificate" server_ext "$work/ca.cnf"

openssl ca -batch -config "$work/ca.cnf" -revoke revoked.pem -crl_reason keyCompromise 2>/dev/null
openssl ca -batch -config "$work/ca.cnf" -gencrl -out crl.pem 2>/dev/null

# convenience bundles for clients that want cert+key in one file
for c in clinic-a clinic-b p1 gateway-out expired revoked foreign rogue-p1 ca-client two-orgid no-clientauth operator; do
  cat "$c.pem" "$c.key" >"$c.bundle.pem"
done
chmod 600 ./*.key ./*.bundle.pem
chmod 644 ./*.pem
chmod 600 ./*.bundle.pem
# the operator's certificate for a browser (Chromium, Firefox: import it; password "cergw")
openssl pkcs12 -export -in operator.pem -inkey operator.key -certfile ca.pem -name "cergw operator (dev)" \
  -out operator.p12 -passout pass:cergw 2>/dev/null
chmod 600 operator.p12
store_key
console_token
touch .complete
echo "certs: created development PKI in $out"
