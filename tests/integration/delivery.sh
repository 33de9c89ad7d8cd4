#!/usr/bin/env bash
# Delivery tests with real processes: the gateway, the four backend
# simulators (P1, SIMP, AP-KOLCE, clinic endpoint), curl, openssl s_client
# for MLLP, sqlite3 to look into the store. Covers every dialect and route,
# idempotency, retries, a backend down and back, dead letters, ordering,
# the rules with memory, notifications back to clinics, SIGHUP reload, and
# kill -9 of the gateway under load.
# Usage: delivery.sh BUILD_DIR [sqlite|postgresql]: the same suite over either store (postgresql: a
# throwaway PostgreSQL started from Debian's package, tests/lib/pg.sh; the few checks that are about
# one store's files say which). Prints "N passed, N failed"; exits 1 on failure.
set -u
BUILD=${1:-build}
STORE=${2:-sqlite}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
. tests/lib/pg.sh
. tests/lib/check.sh
GW=$ROOT/$BUILD/cergw
CLI=$ROOT/build/cergw
D=$ROOT/certs/dev
T=$(mktemp -d /tmp/cergw-dl.XXXXXX)
B=$(( 28000 + ($$ % 3990) ))  # port bands: see tests/integration/run.sh
[ "$STORE" = postgresql ] && B=$(( 32000 + ($$ % 3990) ))
PGU=
if [ "$STORE" = postgresql ]; then
  pg_available || { echo "FAIL - PostgreSQL is not installed: run 'make deps'"; echo "0 passed, 1 failed"; exit 1; }
  pg_start || { echo "FAIL - the test PostgreSQL did not start"; exit 1; }
  PGU=$(pg_db cergw_dl) || exit 1
  export CERGW_STORE_PG=$PGU # the command line tools (cergw outbox, store) work on it
fi
export STORE PGU T
GWP=$B MLLP=$((B + 1)) P1=$((B + 2)) SIMP=$((B + 3)) KOLCE=$((B + 4)) CLIN=$((B + 5)) CLIN2=$((B + 6)) CLINM=$((B + 7))
GW_PID=
declare -A SIM_PID
cleanup() {
  [ -n "$GW_PID" ] && kill -TERM "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null
  for r in "${!SIM_PID[@]}"; do kill -TERM "${SIM_PID[$r]}" 2>/dev/null; done
  wait 2>/dev/null
  [ -n "${KEEP_LOGS:-}" ] && cp "$T/gw.log" /tmp/last-gw.log; rm -rf "$T"
  pg_stop
}
trap cleanup EXIT


port_of() { case $1 in p1) echo $P1 ;; simp) echo $SIMP ;; apkolce) echo $KOLCE ;; clinic) echo $CLIN ;; mllpclinic) echo $CLIN2 ;; esac; }
start_sim() { # role (mllpclinic: a second clinic endpoint that also takes SIU over MLLP/TLS)
  local p; p=$(port_of "$1")
  local role=$1 extra=() data=$T/sims
  [ "$1" = mllpclinic ] && role=clinic extra=(--mllp "127.0.0.1:$CLINM") data=$T/sims-mllp
  "$GW" sim --role "$role" --listen 127.0.0.1:$p --data "$data" --gateway "https://localhost:$GWP" "${extra[@]}" \
    >>"$T/sim-$1.log" 2>&1 &
  SIM_PID[$1]=$!
  for _ in $(seq 1 100); do
    curl -s --max-time 1 --cacert "$D/ca.pem" --cert "$D/operator.pem" --key "$D/operator.key" \
      "https://localhost:$p/_sim/stats" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "simulator $1 did not start"; cat "$T/sim-$1.log"; return 1
}
stop_sim() { kill -TERM "${SIM_PID[$1]}" 2>/dev/null; wait "${SIM_PID[$1]}" 2>/dev/null; unset "SIM_PID[$1]"; }
sim() { # role path [curl args]: GET/POST to a simulator's control endpoints
  local p; p=$(port_of "$1")
  curl -s --max-time 10 --cacert "$D/ca.pem" --cert "$D/operator.pem" --key "$D/operator.key" \
    "https://localhost:$p$2" "${@:3}"
}
stat() { sim "$1" /_sim/stats | sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p"; }
mode() { sim "$1" "/_sim/control?mode=$2" -X POST >/dev/null; }

write_delivery() { # extra route settings: apkolce route enabled (true|false)
  cat >"$T/delivery.json" <<EOF
{
  "answer_deadline_ms": 1500,
  "client_tls": {"cert": "$D/gateway-out.pem", "key": "$D/gateway-out.key", "ca": "$D/ca.pem"},
  "defaults": {"timeout_ms": 3000, "max_attempts": 100, "backoff_ms": 50, "max_backoff_ms": 400,
               "concurrency": 32, "breaker_failures": 5, "breaker_open_ms": 300},
  "backends": {
    "p1": {"kind": "p1", "url": "https://localhost:$P1/fhir", "token_url": "https://localhost:$P1/oauth2/token",
           "client_id": "cergw-test"},
    "simp": {"kind": "simp", "url": "https://localhost:$SIMP/simp", "max_attempts": 3},
    "apkolce": {"kind": "apkolce", "url": "https://localhost:$KOLCE/apkolce", "memory_queue": 5}
  },
  "routes": [
    {"name": "cer", "match": "/f:*", "backends": ["p1"]},
    {"name": "cardiology-waiting-list", "backends": ["apkolce"], "enabled": ${1:-true},
     "match": "//f:specialty/f:coding[f:code/@value >= 1100 and f:code/@value <= 1105]"},
    {"name": "screening", "backends": ["simp"],
     "match": "//f:specialty/f:coding[f:code/@value = '7910' or f:code/@value = '7912']"}
  ],
  "clinics": {
    "000000012345": {"notify": "clinic-soap", "url": "https://localhost:$CLIN/clinic/000000012345"},
    "000000067890": {"notify": "clinic-siu", "url": "https://localhost:$CLIN/clinic/000000067890",
                     "hl7_charset": "windows-1250"},
    "000000011111": {"notify": "clinic-siu", "url": "mllp://127.0.0.1:$CLINM", "backoff_ms": 50, "max_attempts": 100}
  }
}
EOF
}
# the store's content sealed at rest under a key of this run (the CLI reads it from CERGW_STORE_KEY)
"$GW" store keygen "$T/store.key" test-1 >/dev/null
export CERGW_STORE_KEY=$T/store.key
STORE_CONF=
[ "$STORE" = postgresql ] && STORE_CONF=", \"backend\": \"postgresql\", \"postgresql\": \"$PGU\", \"lease_ms\": 3000"
cat >"$T/gw.json" <<EOF
{
  "listen": "127.0.0.1:$GWP", "mllp_listen": "127.0.0.1:$MLLP", "workers": 2, "log_level": "info",
  "data_dir": "$T/gw", "delivery": "$T/delivery.json", "store": {"key_file": "$T/store.key", "retention": {"check_ms": 1000}$STORE_CONF},
  "tls": {"cert": "$D/server.pem", "key": "$D/server.key", "client_ca": "$D/ca.pem", "crl": "$D/crl.pem"},
  "limits": {"max_body_bytes": 65536}
}
EOF
write_delivery true
LOG=$T/gw.log
start_gw() {
  "$GW" serve --config "$T/gw.json" >>"$LOG" 2>&1 &
  GW_PID=$!
  for _ in $(seq 1 200); do
    curl -s --max-time 1 --cacert "$D/ca.pem" --cert "$D/clinic-a.pem" --key "$D/clinic-a.key" \
      "https://localhost:$GWP/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$GW_PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "gateway did not start:"; tail -20 "$LOG"; return 1
}
gw() { # cert path [curl args]
  curl -s --max-time 15 --cacert "$D/ca.pem" --cert "$D/$1.pem" --key "$D/$1.key" "https://localhost:$GWP$2" "${@:3}"
}
code() { gw "$1" "$2" -o /dev/null -w '%{http_code}' "${@:3}"; }
db() { # SQL: the store's answer, one value per line (the same SQL runs on both stores)
  if [ "$STORE" = postgresql ]; then psql "$PGU" -X -q -t -A -c "$1"; else sqlite3 -cmd '.timeout 5000' "$T/gw/cergw.db" "$1"; fi
}
export -f db

# Messages: the golden SIU S12 with a visit DAYS ahead, unique ids, a specialty
DAY=$(date -u -d '+5 days' +%Y%m%d)
siu() { # n [specialty] [days-ahead] [event]
  local n=$1 spec=${2:-1100} day ev=${4:-S12}
  day=$(date -u -d "+${3:-5} days" +%Y%m%d)
  sed -e "s/MSG-0001/MSG-$n/; s/WIZ-2026-0001/WIZ-$n/g; s/20261203/$day/g; s/1100^Poradnia kardiologiczna/$spec^Poradnia/" \
    -e "s/SIU^S12^SIU_S12/SIU^$ev^SIU_$ev/" tests/golden/siu/s12-cardiology.hl7
}
fhir() { # n [specialty] [days-ahead]: the same visit as a FHIR transaction Bundle
  siu "$@" >"$T/in.hl7" && "$CLI" translate --to fhir "$T/in.hl7"
}
post_fhir() { # cert n [specialty] [days] [extra curl args]: prints the status
  fhir "$2" "${3:-1100}" "${4:-5}" >"$T/b-$2.json"
  code "$1" /fhir -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/b-$2.json" "${@:5}"
}

for r in p1 simp apkolce clinic mllpclinic; do start_sim $r || exit 1; done
sc() { curl -s -o /dev/null -w '%{http_code}' --cacert "$D/ca.pem" --cert "$D/$1.pem" --key "$D/$1.key" "https://localhost:$P1$2" "${@:3}"; }
check "simulator control endpoints: a clinic's certificate is refused (403)" eq "$(sc clinic-a '/_sim/control?mode=fail' -X POST)" 403
check "  the gateway's outbound certificate too: no reading another clinic's last message (403)" eq "$(sc gateway-out /_sim/last)" 403
check "  an operator's certificate is taken" eq "$(sc operator /_sim/stats)" 200
start_gw || exit 1

# ------------------------------------------------------------ every dialect
check "FHIR transaction, cardiology: 200 with a transaction-response" eq "$(post_fhir clinic-a 1001)" 200
check "  delivered once to P1 (OAuth token obtained with private_key_jwt)" eq "$(stat p1 unique)" 1
check "  and once to AP-KOLCE (cardiology route)" eq "$(stat apkolce unique)" 1
check "  not to SIMP" eq "$(stat simp unique)" 0
check "  P1 issued a token after verifying the gateway's signed assertion" eq "$(stat p1 tokens_issued)" 1
check "  P1 received FHIR JSON with the CeR profile" bash -c "curl -s --cacert $D/ca.pem --cert $D/operator.pem --key $D/operator.key https://localhost:$P1/_sim/last | grep -q 'PLCeRAppointment'"
check "  AP-KOLCE received KomunikatKolejki for service 60004" bash -c "curl -s --cacert $D/ca.pem --cert $D/operator.pem --key $D/operator.key https://localhost:$KOLCE/_sim/last | grep -q '<k:KodSwiadczenia>60004'"
check "FHIR transaction, mammography screening: 200" eq "$(post_fhir clinic-a 1002 7910)" 200
check "  delivered to SIMP as SOAP 1.2" eq "$(stat simp unique)" 1
check "  and to P1" eq "$(stat p1 unique)" 2

siu 1003 >"$T/m.hl7"
check "HL7 SIU over HTTP: ACK AA" bash -c "curl -s --cacert $D/ca.pem --cert $D/clinic-a.pem --key $D/clinic-a.key https://localhost:$GWP/hl7v2 --data-binary @$T/m.hl7 | tr '\\r' '\\n' | grep -q '^MSA|AA|MSG-1003'"
check "  delivered" eq "$(stat p1 unique)" 3
ack=$(gw clinic-a /hl7v2 --data-binary @"$T/m.hl7" | tr '\r' '\n')
check "HL7 repeat of MSH-10: AA again, no second delivery" eq "$(stat p1 unique)/$(echo "$ack" | grep -c '^MSA|AA')" 3/1
# the same MSH-10 for another visit (clinic systems reset their counters): refused with AR, ERR-3 205 at
# MSH-10 — never answered AA as a "repeat" and silently dropped
p1n=$(stat p1 unique)
siu 1003 1100 6 >"$T/reuse.hl7"
ack=$(gw clinic-a /hl7v2 --data-binary @"$T/reuse.hl7" | tr '\r' '\n')
check "the same MSH-10 with other content: ACK AR, ERR 205 (duplicate key identifier) at MSH-10, nothing delivered" \
  bash -c "grep -q '^MSA|AR|MSG-1003' <<<\"\$1\" && grep -q '^ERR||MSH^1^10|205^Duplicate key identifier^HL70357|E||||idempotency.key-reused' <<<\"\$1\" && [ $(stat p1 unique) = $p1n ]" _ "$ack"

siu 1004 >"$T/mllp.hl7"
mllp_ack=$( (printf '\x0b'; cat "$T/mllp.hl7"; printf '\x1c\x0d'; sleep 1.5) |
  openssl s_client -connect 127.0.0.1:$MLLP -cert "$D/clinic-a.pem" -key "$D/clinic-a.key" -CAfile "$D/ca.pem" \
    -quiet -no_ign_eof 2>/dev/null | tr '\r' '\n')
check "HL7 SIU over MLLP/TLS: framed ACK AA" bash -c "printf '%s' \"\$1\" | grep -q 'MSA|AA|MSG-1004'" _ "$mllp_ack"
check "  delivered" eq "$(stat p1 unique)" 4
mllp_bad=$( (printf '\x0bMSH|^~\\&|X\x1c\x0d'; sleep 1) |
  openssl s_client -connect 127.0.0.1:$MLLP -cert "$D/clinic-a.pem" -key "$D/clinic-a.key" -CAfile "$D/ca.pem" \
    -quiet -no_ign_eof 2>/dev/null | tr '\r' '\n')
check "MLLP: a broken message gets ACK AE/AR, nothing delivered" bash -c "printf '%s' \"\$1\" | grep -q 'MSA|A[ER]'" _ "$mllp_bad"
mllp_big=$( (printf '\x0bMSH|^~\\&|X|Y|Z|W|20261122||SIU^S12|BIG|P|2.5.1\r'; head -c 70000 /dev/zero | tr '\0' 'a'; printf '\x1c\x0d'; sleep 1) |
  openssl s_client -connect 127.0.0.1:$MLLP -cert "$D/clinic-a.pem" -key "$D/clinic-a.key" -CAfile "$D/ca.pem" \
    -quiet -no_ign_eof 2>/dev/null | tr '\r' '\n')
check "MLLP: a message over the size limit gets ACK AR (mllp.too-large) for its MSH-10, not a dropped connection" bash -c "printf '%s' \"\$1\" | grep -q 'MSA|AR|BIG'" _ "$mllp_big"
# a frame past what the connection buffers at all (here 400 KB): answered with an ACK AR for its MSH-10 as
# soon as it is too large, its rest dropped, and the connection goes on with the next message
siu 1005 >"$T/mllp2.hl7"
mllp_huge=$( (printf '\x0bMSH|^~\\&|X|Y|Z|W|20261122||SIU^S12|HUGE|P|2.5.1\r'; head -c 400000 /dev/zero | tr '\0' 'a'
  printf '\x1c\x0d\x0b'; cat "$T/mllp2.hl7"; printf '\x1c\x0d'; sleep 2) |
  openssl s_client -connect 127.0.0.1:$MLLP -cert "$D/clinic-a.pem" -key "$D/clinic-a.key" -CAfile "$D/ca.pem" \
    -quiet -no_ign_eof 2>/dev/null | tr '\r' '\n')
check "MLLP: a frame past the connection's buffer gets ACK AR for its MSH-10, and the next message on that connection ACK AA" \
  bash -c "printf '%s' \"\$1\" | grep -q 'MSA|AR|HUGE' && printf '%s' \"\$1\" | grep -q 'MSA|AA|MSG-1005'" _ "$mllp_huge"
alpn_of() { # port: what the server answers to a client offering h2 and http/1.1
  (sleep 0.3) | openssl s_client -connect 127.0.0.1:$1 -cert "$D/clinic-a.pem" -key "$D/clinic-a.key" -CAfile "$D/ca.pem" \
    -alpn h2,http/1.1 2>&1 | grep -a -E 'ALPN' | head -1
}
a1=$(alpn_of "$MLLP"); a2=$(alpn_of "$GWP")
check "MLLP: the port negotiates no ALPN, whatever the client offers ($a1)" bash -c "grep -q 'No ALPN negotiated' <<<\"\$1\"" _ "$a1"
check "  while the HTTPS port negotiates h2 ($a2)" bash -c "grep -q 'ALPN protocol: h2' <<<\"\$1\"" _ "$a2"
check "MLLP: a client without a certificate is refused" bash -c "! (printf '\x0bMSH\x1c\x0d'; sleep 0.5) | openssl s_client -connect 127.0.0.1:$MLLP -CAfile $D/ca.pem -quiet -no_ign_eof 2>/dev/null | grep -q MSA"

sed -e "s/2026-12-03/$(date -u -d '+6 days' +%Y-%m-%d)/g" tests/golden/soap/book-cardiology.xml |
  sed -e 's|<soap:Header>|<soap:Header><wsa:MessageID xmlns:wsa="http://www.w3.org/2005/08/addressing">urn:uuid:book-1</wsa:MessageID>|' >"$T/book.xml"
grep -q 'soap:Header' "$T/book.xml" || sed -i 's|<soap:Body>|<soap:Header><wsa:MessageID xmlns:wsa="http://www.w3.org/2005/08/addressing">urn:uuid:book-1</wsa:MessageID></soap:Header><soap:Body>|' "$T/book.xml"
SD=$(date -u -d '+6 days' +%Y-%m-%d)
cat >"$T/slot42.json" <<EOF
{"resourceType":"Slot","identifier":[{"system":"urn:oid:2.16.840.1.113883.3.4424.2.3.1.000000012345","value":"SLOT-0042"}],
 "specialty":[{"coding":[{"system":"urn:oid:2.16.840.1.113883.3.4424.11.2.4","code":"1100"}]}],
 "schedule":{"reference":"Schedule/GRAFIK-SOAP"},"status":"free","start":"${SD}T09:00:00+01:00","end":"${SD}T09:20:00+01:00"}
EOF
check "the slot the SOAP booking names is published first (FHIR Slot)" eq "$(code clinic-a /fhir/Slot -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/slot42.json")" 201
before=$(stat p1 unique)
sresp=$(gw clinic-a /soap -H 'content-type: text/xml' --data-binary @"$T/book.xml")
check "SOAP BookAppointment: BookAppointmentResponse with per-backend status" bash -c "printf '%s' \"\$1\" | grep -q '<c:BookAppointmentResponse><c:Status>delivered'" _ "$sresp"
gw clinic-a /soap -H 'content-type: text/xml' --data-binary @"$T/book.xml" >/dev/null
check "SOAP repeat of the WS-Addressing MessageID: one delivery" eq "$(stat p1 unique)" $((before + 1))
# legacy SOAP stacks speak HTTP/1.1: two deferred answers on one keep-alive connection
sed -e 's/urn:uuid:book-1/urn:uuid:book-h1a/; s|<c:SlotId>[^<]*</c:SlotId>||; s/WIZ-2026-0100/WIZ-H1A/g' "$T/book.xml" >"$T/book-h1a.xml"
sed -e 's/urn:uuid:book-1/urn:uuid:book-h1b/; s|<c:SlotId>[^<]*</c:SlotId>||; s/WIZ-2026-0100/WIZ-H1B/g' "$T/book.xml" >"$T/book-h1b.xml"
h1=$(curl -s --http1.1 --cacert "$D/ca.pem" --cert "$D/clinic-a.pem" --key "$D/clinic-a.key" -H 'content-type: text/xml' \
  --data-binary @"$T/book-h1a.xml" "https://localhost:$GWP/soap" --next --http1.1 --cacert "$D/ca.pem" \
  --cert "$D/clinic-a.pem" --key "$D/clinic-a.key" -H 'content-type: text/xml' --data-binary @"$T/book-h1b.xml" \
  "https://localhost:$GWP/soap" -w '\n%{num_connects}\n')
check "SOAP over HTTP/1.1: two deferred answers in order on one connection" \
  bash -c "[ \"\$(printf '%s' \"\$1\" | grep -o 'BookAppointmentResponse><c:Status>' | wc -l)\" = 2 ] && printf '%s' \"\$1\" | tail -1 | grep -qx 0" _ "$h1"
APPT_ID=$(sed -n 's/.*<c:AppointmentId>\([^<]*\)<.*/\1/p' "$T/book.xml" | head -1)
cat >"$T/status.xml" <<EOF
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:c="urn:cergw:clinic:v1"><soap:Body>
<c:GetAppointmentStatusRequest><c:Clinic><c:Rpwdl>000000012345</c:Rpwdl><c:Specialty>1100</c:Specialty></c:Clinic>
<c:AppointmentId>$APPT_ID</c:AppointmentId></c:GetAppointmentStatusRequest></soap:Body></soap:Envelope>
EOF
check "SOAP GetAppointmentStatus: the status last accepted and its deliveries" bash -c "curl -s --cacert $D/ca.pem --cert $D/clinic-a.pem --key $D/clinic-a.key https://localhost:$GWP/soap -H 'content-type: text/xml' --data-binary @$T/status.xml | grep -q '<c:Status>booked (p1=delivered apkolce=delivered)'"
sed -i "s/$APPT_ID/NO-SUCH-1/" "$T/status.xml"
check "SOAP GetAppointmentStatus of an unknown appointment: a Client fault" bash -c "curl -s --cacert $D/ca.pem --cert $D/clinic-a.pem --key $D/clinic-a.key https://localhost:$GWP/soap -H 'content-type: text/xml' --data-binary @$T/status.xml | grep -q soap.unknown-appointment"

# acknowledgment modes (MSH-15 accept, MSH-16 application; table 0155): enhanced mode gets the commit
# ACK CA/CE/CR, or the application ACK, or none, as asked
siu 1101 | sed 's/|P|2.5.1/|P|2.5.1|||AL|NE/' >"$T/enh1.hl7"
check "enhanced mode MSH-15 AL: the commit acknowledgment CA, MSA-2 the message's MSH-10" \
  has "$(gw clinic-a /hl7v2 --data-binary @"$T/enh1.hl7" | tr '\r' '\n')" '^MSA|CA|MSG-1101'
siu 1102 | sed 's/|P|2.5.1/|P|2.5.1|||NE|AL/' >"$T/enh2.hl7"
check "enhanced mode MSH-15 NE, MSH-16 AL: the application acknowledgment AA" \
  has "$(gw clinic-a /hl7v2 --data-binary @"$T/enh2.hl7" | tr '\r' '\n')" '^MSA|AA|MSG-1102'
siu 1103 | sed 's/|P|2.5.1/|P|2.5.1|||NE|NE/' >"$T/enh3.hl7"
check "enhanced mode NE/NE: no acknowledgment (HTTP 204)" \
  bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' --cacert $D/ca.pem --cert $D/clinic-a.pem --key $D/clinic-a.key https://localhost:$GWP/hl7v2 --data-binary @$T/enh3.hl7)\" = 204 ]"
check "  and the message is still stored and delivered to P1 (no ACK asked is not no delivery)" \
  wait_for 5 bash -c "[ \"\$(db \"select count(*) from deliveries d join messages m on m.id = d.msg_id where m.idem_key = '$("$CLI" store hash '000000012345|msh10|MSG-1103')' and d.backend = 'p1' and d.state = 1\")\" = 1 ]"
siu 1104 | sed 's/|P|2.5.1/|P|2.5.1|||AL|AL/; s/85010112345/85010112346/' >"$T/enh4.hl7"
check "enhanced mode, a message refused (bad PESEL): CE, with the ERR" \
  has "$(gw clinic-a /hl7v2 --data-binary @"$T/enh4.hl7" | tr '\r' '\n')" '^MSA|CE|MSG-1104' 'cer.pesel'
# character sets (MSH-18, table 0211): ISO 8859-2 declared, Windows-1250 undeclared
siu 1105 | sed 's/|P|2.5.1/|P|2.5.1||||||8859\/2/; s/Kowalski^Jan/Łęcka^Grażyna/' | iconv -f UTF-8 -t ISO-8859-2 >"$T/latin2.hl7"
check "MSH-18 8859/2: the ISO 8859-2 message is accepted (AA)" \
  has "$(gw clinic-a /hl7v2 --data-binary @"$T/latin2.hl7" | tr '\r' '\n')" '^MSA|AA|MSG-1105'
check "  and P1 received the names in UTF-8" wait_for 5 bash -c "curl -s --cacert $D/ca.pem --cert $D/operator.pem --key $D/operator.key https://localhost:$P1/_sim/last | grep -q 'Łęcka'"
siu 1106 | sed 's/Kowalski^Jan/Łęcka^Grażyna/' | iconv -f UTF-8 -t WINDOWS-1250 >"$T/cp1250.hl7"
ack=$(gw clinic-a /hl7v2 --data-binary @"$T/cp1250.hl7" | tr '\r' '\n')
check "undeclared Windows-1250: AE at the first byte that is not UTF-8 (line and column), MSA-2 and MSH-5/6 still echo the message" \
  has "$ack" '^MSA|AE|MSG-1106' 'byte 0xA3 at line 5, column' '^MSH|^~\\&|CERGW|CER|GABINET|PORADNIA|'
siu 1107 | sed 's/Kowalski^Jan/Łęcka^Grażyna/; s/2.3.1.000000012345/2.3.1.000000067890/' | iconv -f UTF-8 -t WINDOWS-1250 >"$T/cp1250b.hl7"
check "the same from clinic B, whose configuration says hl7_charset windows-1250: AA" \
  has "$(gw clinic-b /hl7v2 --data-binary @"$T/cp1250b.hl7" | tr '\r' '\n')" '^MSA|AA|MSG-1107'

# --------------------------------------------------------------- FHIR REST
fhir 1005 >"$T/b.json"
gw clinic-a /fhir -X POST -H 'content-type: application/fhir+json' -H 'Idempotency-Key: ik-1' --data-binary @"$T/b.json" -o "$T/tx.out"
check "FHIR transaction-response: each entry 201 Created with its location and ETag" bash -c "grep -q '\"status\": \"201 Created\"' $T/tx.out && grep -q '\"location\": \"Appointment/WIZ-1005/_history/[0-9]*\"' $T/tx.out && grep -q '\"etag\": \"W/' $T/tx.out && grep -q 'transaction-response' $T/tx.out"
# a batch of 20 slots (more than fit a fixed table), the last without an identifier
SDAY=$(date -u -d '+20 days' +%Y-%m-%d)
{
  printf '{"resourceType":"Bundle","type":"batch","entry":['
  for i in $(seq 1 20); do
    ident='"identifier":[{"system":"urn:oid:2.16.840.1.113883.3.4424.2.3.1.000000012345","value":"TXS-'$i'"}],'
    [ "$i" = 20 ] && ident=
    printf '%s{"resource":{"resourceType":"Slot",%s"schedule":{"reference":"Schedule/tx-many"},"status":"free","start":"%sT%02d:00:00Z","end":"%sT%02d:30:00Z"},"request":{"method":"POST","url":"Slot"}}' \
      "$([ "$i" = 1 ] || echo ,)" "$ident" "$SDAY" $((i + 1)) "$SDAY" $((i + 1))
  done
  printf ']}'
} >"$T/batch20.json"
gw clinic-a /fhir -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/batch20.json" -o "$T/batch20.out"
check "a batch of 20: a batch-response with 20 entries, in order" bash -c "grep -q '\"type\": \"batch-response\"' $T/batch20.out && [ \$(grep -c '\"status\": \"20[12] ' $T/batch20.out) = 20 ] && grep -o '\"location\": \"Slot/TXS-[0-9]*' $T/batch20.out | sed 's/.*TXS-//' | paste -sd, | grep -qx \"\$(seq -s, 1 19)\""
check "  an entry without id or identifier gets a location the gateway assigns" grep -q '"location": "Slot/cergw-[0-9]*-19/_history/1"' "$T/batch20.out"
before=$(stat p1 unique)
rep=$(gw clinic-a /fhir -X POST -H 'content-type: application/fhir+json' -H 'Idempotency-Key: ik-1' --data-binary @"$T/b.json" -D -)
check "Idempotency-Key repeat: the original answer replayed" bash -c "printf '%s' \"\$1\" | grep -qi '^x-cergw-replay: true'" _ "$rep"
check "  and nothing delivered again" eq "$(stat p1 unique)" "$before"
post_fhir_other() { fhir 1099 1100 9 >"$T/b-other.json"; code clinic-a /fhir -X POST -H 'content-type: application/fhir+json' -H 'Idempotency-Key: ik-1' --data-binary @"$T/b-other.json"; }
check "the same Idempotency-Key with another body: 422 (refused, not replayed), nothing delivered" \
  bash -c "[ \"\$1\" = 422 ] && [ $(stat p1 unique) = $before ]" _ "$(post_fhir_other)"

long_key=$(head -c 300 /dev/zero | tr '\0' k)
check "an Idempotency-Key over 200 characters: 400, not silently ignored" eq "$(code clinic-a /fhir -X POST -H 'content-type: application/fhir+json' -H "Idempotency-Key: $long_key" --data-binary @"$T/b.json")" 400
# (it names clinic A's identifiers, so B is refused as acting for another clinic: 403, cer.identity-match)
check "same key from another clinic is not a repeat of the first clinic's message" \
  bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' --cacert $D/ca.pem --cert $D/clinic-b.pem --key $D/clinic-b.key https://localhost:$GWP/fhir -X POST -H 'content-type: application/fhir+json' -H 'Idempotency-Key: ik-1' --data-binary @$T/b.json)\" = 403 ]"

# single resources: an Appointment alone, PUT with an id, conditional create
APPT=$(date -u -d '+7 days' +%Y-%m-%dT10:00:00+00:00)
APPT_END=$(date -u -d '+7 days' +%Y-%m-%dT10:20:00+00:00)
appt() { # id status start end
  cat <<EOF
{"resourceType":"Appointment","status":"$2",
 "contained":[{"resourceType":"Patient","id":"p","telecom":[{"system":"phone","value":"+48600100200"}]}],
 "identifier":[{"system":"urn:oid:2.16.840.1.113883.3.4424.2.3.1.000000012345","value":"$1"}],
 "specialty":[{"coding":[{"system":"urn:oid:2.16.840.1.113883.3.4424.11.2.4","code":"1100"}]}],
 "appointmentType":{"coding":[{"code":"KONTYNUACJA"}]},
 "start":"$3","end":"$4",
 "participant":[{"actor":{"reference":"#p","type":"Patient","identifier":{"system":"urn:oid:2.16.840.1.113883.3.4424.1.1.616","value":"85010112345"},"display":"Jan Kowalski"},"status":"accepted"}],
 "comment":"wizyta kontrolna"}
EOF
}
appt A-1 booked "$APPT" "$APPT_END" >"$T/a1.json"
r=$(gw clinic-a /fhir/Appointment -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/a1.json" -D - -o "$T/a1.out")
if printf '%s' "$r" | grep -q '^HTTP/2 201'; then
  ok "POST /fhir/Appointment: 201"
  check "  Location and ETag: its id is its identifier's value, version 1" \
    bash -c "printf '%s' \"\$1\" | grep -qi '^location: /fhir/Appointment/A-1/_history/1' && printf '%s' \"\$1\" | grep -qi '^etag: W/\"1\"'" _ "$r"
else
  ko "POST /fhir/Appointment: 201" "$(head -1 <<<"$r") $(head -c 400 "$T/a1.out")"
fi
check "PUT /fhir/Appointment/A-1: the same resource, version 2 (Location and ETag)" \
  has "$(gw clinic-a /fhir/Appointment/A-1 -X PUT -H 'content-type: application/fhir+json' --data-binary @"$T/a1.json" -D - -o /dev/null)" \
  '^location: /fhir/Appointment/A-1/_history/2' '^etag: W/"2"'
before=$(stat p1 unique)
cm=$(gw clinic-a /fhir/Appointment -X POST -H 'content-type: application/fhir+json' -H 'If-None-Exist: identifier=urn:oid:2.16.840.1.113883.3.4424.2.3.1.000000012345|A-1' --data-binary @"$T/a1.json" -D - )
check "conditional create matching an appointment sent before: 200, its location, nothing delivered" bash -c "printf '%s' \"\$1\" | grep -q '^HTTP/2 200' && printf '%s' \"\$1\" | grep -qi '^location: /fhir/Appointment/A-1' && printf '%s' \"\$1\" | grep -q fhir.conditional-match" _ "$cm"

check "  (P1 saw nothing new)" eq "$(stat p1 unique)" "$before"
appt A-5 booked "$APPT" "$APPT_END" >"$T/a5.json"
c1=$(code clinic-a /fhir/Appointment -X POST -H 'content-type: application/fhir+json' -H 'If-None-Exist: identifier=A-5' --data-binary @"$T/a5.json")
c2=$(code clinic-a /fhir/Appointment -X POST -H 'content-type: application/fhir+json' -H 'If-None-Exist: identifier=A-5' --data-binary @"$T/a5.json")
check "conditional create without a match creates (201), then matches (200)" eq "$c1/$c2/$(stat p1 unique)" "201/200/$((before + 1))"
# FHIR reads of the clinic's own resources (read, vread, history, search), versions and ETags
r=$(gw clinic-a /fhir/Appointment/A-1 -D -)
check "GET /fhir/Appointment/A-1: 200, the latest version with its id, versionId, and the delivery state per backend" \
  has "$r" '^HTTP/2 200' '^etag: W/"2"' '"id": "A-1"' '"versionId": "2"' 'StructureDefinition/delivery' 'p1=' '"lastUpdated"'
check "GET /fhir/Appointment/A-1/_history/1: version 1" has "$(gw clinic-a /fhir/Appointment/A-1/_history/1)" '"versionId": "1"'
check "GET /fhir/Appointment/A-1/_history: a history Bundle of both versions" \
  has "$(gw clinic-a /fhir/Appointment/A-1/_history)" '"type": "history"' '"total": 2'
check "  the store keeps no copy of a version sent whole: read out of its message's canonical form" \
  eq "$(db "select count(*) from resources where clinic = '000000012345' and id = 'A-1' and length(body) = 0")" 2
check "GET /fhir/Appointment?identifier=system|A-1: a searchset with it" \
  has "$(gw clinic-a '/fhir/Appointment?identifier=urn:oid:2.16.840.1.113883.3.4424.2.3.1.000000012345%7CA-1')" '"type": "searchset"' '"total": 1' '"id": "A-1"'
r=$(gw clinic-a '/fhir/Slot?schedule=tx-many&_count=5')
check "GET /fhir/Slot?schedule=…&_count=5: 20 in all, 5 on the page, a next link" \
  has "$r" '"total": 20' '"relation": "next"' '_offset=5'
check "  the next page" has "$(gw clinic-a '/fhir/Slot?schedule=tx-many&_count=5&_offset=15')" '"total": 20'
check "an unknown search parameter: 400 OperationOutcome, not ignored" \
  has "$(gw clinic-a '/fhir/Appointment?foo=bar' -w '%{http_code}')" 'fhir.search-parameter' '400$'
check "another clinic cannot read A-1: 404" eq "$(code clinic-b /fhir/Appointment/A-1)" 404
check "  nor its history or a version of it: 404" bash -c "[ $(code clinic-b /fhir/Appointment/A-1/_history) = 404 ] && [ $(code clinic-b /fhir/Appointment/A-1/_history/1) = 404 ]"
check "  nor find it by searching with A's identifier or its id: empty searchsets" \
  bash -c 'for q in "identifier=urn:oid:2.16.840.1.113883.3.4424.2.3.1.000000012345%7CA-1" "_id=A-1" "identifier=A-1"; do
    has "$(curl -s --cacert $0/ca.pem --cert $0/clinic-b.pem --key $0/clinic-b.key "https://localhost:$1/fhir/Appointment?$q")" "\"total\": 0" || exit 1; done' "$D" "$GWP"
check "  and the gateway's own certificates cannot read a clinic's resources: 403" \
  bash -c "[ $(code p1 /fhir/Appointment/A-1) = 403 ] && [ $(code gateway-out '/fhir/Appointment?_id=A-1') = 403 ]"
check "Accept: application/fhir+xml: FHIR XML" has "$(gw clinic-a /fhir/Appointment/A-1 -H 'Accept: application/fhir+xml' -D -)" \
  '^content-type: application/fhir+xml' '<Appointment xmlns="http://hl7.org/fhir">' '<versionId value="2"/>'
check "_format=xml: FHIR XML too" has "$(gw clinic-a '/fhir/Appointment/A-1?_format=xml')" '<Appointment xmlns="http://hl7.org/fhir">'
check "If-None-Match of the current version: 304" eq "$(code clinic-a /fhir/Appointment/A-1 -H 'If-None-Match: W/"2"')" 304
r=$(gw clinic-a /fhir/Appointment/A-1 -X PUT -H 'content-type: application/fhir+json' -H 'If-Match: W/"1"' --data-binary @"$T/a1.json" -w '\n%{http_code}')
check "PUT with If-Match of an old version: 412 fhir.version-conflict, nothing kept" has "$r" 'fhir.version-conflict' '412$'
check "  the version did not move" has "$(gw clinic-a /fhir/Appointment/A-1)" '"versionId": "2"'
check "PUT with If-Match of the current version: version 3" \
  has "$(gw clinic-a /fhir/Appointment/A-1 -X PUT -H 'content-type: application/fhir+json' -H 'If-Match: W/"2"' --data-binary @"$T/a1.json" -D - -o /dev/null)" '^etag: W/"3"'
r=$(gw clinic-a /fhir/Appointment/A-1 -X PUT -H 'content-type: application/fhir+json' -H 'Prefer: return=minimal' --data-binary @"$T/a1.json" -D - -o "$T/min.out")
check "Prefer: return=minimal: the status and headers, no body" bash -c "grep -q '^HTTP/2 20' <<<\"\$1\" && [ ! -s $T/min.out ]" _ "$r"
check "a write answered in XML when asked (Accept)" \
  has "$(gw clinic-a /fhir/Appointment/A-1 -X PUT -H 'content-type: application/fhir+json' -H 'Accept: application/fhir+xml' --data-binary @"$T/a1.json")" '<OperationOutcome xmlns="http://hl7.org/fhir">'

fhir 1011 >"$T/b-1011.json"
check "POST /fhir/ (a trailing slash, as fhir-kit-client's transaction() sends): the same transaction, 200" \
  eq "$(code clinic-a /fhir/ -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/b-1011.json")" 200

# --------------------------------------- ownership: a clinic acts only on its own resources (B = 000000067890)
own() { # id system [resource-id]: an appointment whose identifier has |system| ("" = none)
  local sys=$2
  appt "$1" booked "$APPT" "$APPT_END" | sed -e "s|\"system\":\"urn:oid:2.16.840.1.113883.3.4424.2.3.1.000000012345\",|${sys:+\"system\":\"$sys\",}|" \
    -e "s|\"resourceType\":\"Appointment\",|\"resourceType\":\"Appointment\",${3:+\"id\":\"$3\",}|"
}
tx() { # url resource-file: a transaction of one entry
  printf '{"resourceType":"Bundle","type":"transaction","entry":[{"resource":%s,"request":{"method":"PUT","url":"%s"}}]}' "$(cat "$2")" "$1"
}
RPB=urn:oid:2.16.840.1.113883.3.4424.2.3.1.000000067890
RPA=urn:oid:2.16.840.1.113883.3.4424.2.3.1.000000012345
own B-1 "$RPB" B-1 >"$T/b1.json"
c=$(code clinic-b /fhir/Appointment/B-1 -X PUT -H 'content-type: application/fhir+json' --data-binary @"$T/b1.json")
check "clinic B creates its appointment B-1 (PUT /fhir/Appointment/B-1: $c)" bash -c "[[ $c == 20? ]]"
p1before=$(stat p1 unique); kbefore=$(stat apkolce unique)
own B-1 "" B-1 >"$T/x1.json"
r=$(gw clinic-a /fhir/Appointment/B-1 -X PUT -H 'content-type: application/fhir+json' --data-binary @"$T/x1.json" -w '\n%{http_code}')
check "clinic A cannot overwrite B-1 by its id (identifier system left out): 403 cer.identity-match" \
  bash -c "[ \"\$(tail -1 <<<\"\$1\")\" = 403 ] && grep -q cer.identity-match <<<\"\$1\"" _ "$r"
own B-1 "URN:OID:2.16.840.1.113883.3.4424.2.3.1.000000067890" >"$T/x2.json"
check "  nor by B's identifier system upper-cased: 403" eq "$(code clinic-a /fhir/Appointment -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/x2.json")" 403
own B-1 "urn:oid:2.16.840.1.113883.3.4424.02.3.1.000000067890" >"$T/x3.json"
check "  nor with a leading zero in an arc of B's OID: 403" eq "$(code clinic-a /fhir/Appointment -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/x3.json")" 403
own X-9 "$RPA" >"$T/x4.json"
tx "Appointment/B-1" "$T/x4.json" >"$T/x4tx.json"
check "  nor by a transaction entry whose request URL is Appointment/B-1: 403" eq "$(code clinic-a /fhir -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/x4tx.json")" 403
tx "Appointment?identifier=$RPB|B-1" "$T/x4.json" >"$T/x5tx.json"
check "  nor by a conditional URL naming B's identifier: 403" eq "$(code clinic-a /fhir -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/x5tx.json")" 403
siu 8101 1100 5 S15 | sed "s/2.3.1.000000012345/2.3.1.000000067890/" >"$T/x6.hl7"
ack=$(gw clinic-a /hl7v2 --data-binary @"$T/x6.hl7" | tr '\r' '\n')
check "  nor by an HL7 S15 with B's system in SCH-1: ACK AR, cer.identity-match" \
  bash -c "grep -q '^MSA|AR' <<<\"\$1\" && grep -q cer.identity-match <<<\"\$1\"" _ "$ack"
check "  and none of these reached P1 or AP-KOLCE" bash -c "[ $(stat p1 unique) = $p1before ] && [ $(stat apkolce unique) = $kbefore ]"
own B-1 "$RPB" B-1 | sed 's/wizyta kontrolna/wizyta kontrolna, zmiana/' >"$T/b2.json"
# every outbound payload states the acting clinic, whatever the payload names: AP-KOLCE's Swiadczeniodawca
# is the certificate's clinic even when the identifier's system is left out (it was empty), P1 gets a header
own A-7 "" >"$T/a7.json"
code clinic-a /fhir/Appointment -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/a7.json" >/dev/null
last=$(sim apkolce /_sim/last | tr -d ' \n')
check "AP-KOLCE is told the acting clinic (Swiadczeniodawca 000000012345) though the payload names none" \
  bash -c "grep -q '<k:Swiadczeniodawca>000000012345</k:Swiadczeniodawca>' <<<\"\$1\"" _ "$last"
# and the systems of record hold a clinic to its own resources: AP-KOLCE refuses an entry of A's sent as B's
kk() { printf '<k:KomunikatKolejki xmlns:k="urn:cergw:apkolce:v1" wersja="1"><k:Naglowek><k:IdKomunikatu>x</k:IdKomunikatu><k:Swiadczeniodawca>%s</k:Swiadczeniodawca></k:Naglowek><k:Wpis><k:IdWpisu>%s</k:IdWpisu></k:Wpis></k:KomunikatKolejki>' "$1" "$2"; }
r=$(kk 000000067890 A-7 | curl -s --cacert "$D/ca.pem" --cert "$D/gateway-out.pem" --key "$D/gateway-out.key" -H 'Idempotency-Key: kk-1' -H 'content-type: application/xml' --data-binary @- "https://localhost:$KOLCE/apkolce" -w ' %{http_code}' | tr -d '\n')
check "  the AP-KOLCE simulator refuses another clinic's entry (as the real system would): $r" bash -c "grep -q 'not the owner' <<<\"\$1\" && grep -q ' 400$' <<<\"\$1\"" _ "$r"
c=$(code clinic-b /fhir/Appointment/B-1 -X PUT -H 'content-type: application/fhir+json' --data-binary @"$T/b2.json")
check "clinic B itself updates B-1: accepted ($c)" bash -c "[[ $c == 20? ]]"
check "a resource type that does not match the URL: 422" eq "$(code clinic-a /fhir/Slot -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/a1.json")" 422
sed 's/"resourceType":"Appointment",/"resourceType":"Appointment","id":"OTHER",/' "$T/a1.json" >"$T/a1-other.json"
check "PUT whose body names another id: 422 fhir.id-mismatch" bash -c "curl -s --cacert $D/ca.pem --cert $D/clinic-a.pem --key $D/clinic-a.key https://localhost:$GWP/fhir/Appointment/A-1 -X PUT -H 'content-type: application/fhir+json' --data-binary @$T/a1-other.json | grep -q fhir.id-mismatch"
check "PUT without an id: 405" eq "$(code clinic-a /fhir/Appointment -X PUT -H 'content-type: application/fhir+json' --data-binary @"$T/a1.json")" 405

# ------------------------------------------------------------ refusals
before=$(stat p1 received)
siu 1006 >"$T/bad.hl7"; sed -i 's/85010112345/85010112346/' "$T/bad.hl7"
check "invalid message (bad PESEL): ACK AE with the rule, never forwarded" bash -c "curl -s --cacert $D/ca.pem --cert $D/clinic-a.pem --key $D/clinic-a.key https://localhost:$GWP/hl7v2 --data-binary @$T/bad.hl7 | grep -q 'cer.pesel\|PESEL'"
check "  P1 saw nothing" eq "$(stat p1 received)" "$before"
check "a clinic acting for another clinic: 422 cer.identity-match" bash -c "curl -s --cacert $D/ca.pem --cert $D/clinic-b.pem --key $D/clinic-b.key https://localhost:$GWP/fhir -X POST -H 'content-type: application/fhir+json' --data-binary @$T/b.json | grep -q cer.identity-match"
check "P1's certificate cannot send clinic messages: 403" eq "$(code p1 /fhir -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/b.json")" 403
check "a clinic cannot send notifications: 403" eq "$(code clinic-a /notifications -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/a1.json")" 403
# roles are not taken from the OU alone: certificates of the development CA that verify but name nobody
for c in rogue-p1:/notifications ca-client:/fhir two-orgid:/fhir no-clientauth:/fhir; do
  r=$(code "${c%%:*}" "${c#*:}" -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/a1.json")
  check "certificate ${c%%:*} may not write to ${c#*:} (status $r: 403, or refused at the handshake)" bash -c "[ $r = 403 ] || [ $r = 000 ]"
done
check "  each logged with why: OU=p1 not pinned, a CA certificate, two organizationIdentifiers" \
  wait_for 3 bash -c "grep 'event=identity_refused' $LOG | grep -q 'not the P1 identity of the configuration' &&
           grep 'event=identity_refused' $LOG | grep -q 'a CA certificate is not a client' &&
           grep 'event=identity_refused' $LOG | grep -q 'more than one organizationIdentifier'"
check "  and the server-only certificate named nobody either (refused at the handshake, or no clientAuth)" \
  wait_for 3 bash -c "grep -q 'reason=\"no clientAuth in the extended key usage\"' $LOG || grep -q 'event=tls_refused.*Server-only certificate' $LOG"

# ------------------------------------------------------ rules with memory
SLOT_DAY=$(date -u -d '+8 days' +%Y-%m-%d)
slot() { # id from to
  cat <<EOF
{"resourceType":"Slot","identifier":[{"system":"urn:oid:2.16.840.1.113883.3.4424.2.3.1.000000012345","value":"$1"}],
 "specialty":[{"coding":[{"system":"urn:oid:2.16.840.1.113883.3.4424.11.2.4","code":"1100"}]}],
 "schedule":{"reference":"Schedule/GRAFIK-NOWAK"},"status":"free",
 "start":"${SLOT_DAY}T$2:00+00:00","end":"${SLOT_DAY}T$3:00+00:00"}
EOF
}
slot S-1 10:00 10:30 >"$T/s1.json"; slot S-2 10:15 10:45 >"$T/s2.json"; slot S-3 10:30 11:00 >"$T/s3.json"
s1=$(code clinic-a /fhir/Slot -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/s1.json")
check "a free slot is accepted" eq "$s1" 201
check "an overlapping free slot of the same schedule, in a later message: 422 cer.slot-overlap-stored" \
  bash -c "curl -s --cacert $D/ca.pem --cert $D/clinic-a.pem --key $D/clinic-a.key https://localhost:$GWP/fhir/Slot -X POST -H 'content-type: application/fhir+json' --data-binary @$T/s2.json | grep -q cer.slot-overlap-stored"
check "an adjacent slot is accepted" eq "$(code clinic-a /fhir/Slot -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/s3.json")" 201
check "re-publishing the same slot is not an overlap with itself" eq "$(code clinic-a /fhir/Slot -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/s1.json")" 201
appt A-2 booked "${SLOT_DAY}T10:00:00+00:00" "${SLOT_DAY}T10:30:00+00:00" | sed 's|"comment"|"slot":[{"identifier":{"value":"S-9"}}],"comment"|' >"$T/a2.json"
check "an appointment naming an unknown slot: 422 cer.slot-known-free" bash -c "curl -s --cacert $D/ca.pem --cert $D/clinic-a.pem --key $D/clinic-a.key https://localhost:$GWP/fhir/Appointment -X POST -H 'content-type: application/fhir+json' --data-binary @$T/a2.json | grep -q cer.slot-known-free"
sed -i 's/S-9/S-1/' "$T/a2.json"
check "an appointment naming a known free slot: 201" eq "$(code clinic-a /fhir/Appointment -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/a2.json")" 201
sed -i 's/"A-2"/"A-3"/' "$T/a2.json"
check "a second appointment in the same (now taken) slot: 422" eq "$(code clinic-a /fhir/Appointment -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/a2.json")" 422
LATE=$(date -u -d '+20 hours' +%Y-%m-%dT%H:00:00+00:00)
LATE_END=$(date -u -d '+21 hours' +%Y-%m-%dT%H:00:00+00:00)
appt A-4 booked "$LATE" "$LATE_END" >"$T/late-book.json"
check "an appointment less than 48 h ahead is booked" eq "$(code clinic-a /fhir/Appointment -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/late-book.json")" 201
appt A-4 cancelled "$LATE" "$LATE_END" >"$T/late.json"
check "cancellation less than 48 h before the visit: accepted" eq "$(code clinic-a /fhir/Appointment -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/late.json")" 201
check "  and marked not reassignable by the Poczekalnia in what P1 receives" bash -c "curl -s --cacert $D/ca.pem --cert $D/operator.pem --key $D/operator.key https://localhost:$P1/_sim/last | grep -q not-reassignable"

# ------------------------------------------ the slot and appointment lifecycle (issue 11, finding 5)
soapc() { # operation body: a SOAP 1.1 request of clinic A
  printf '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><c:%sRequest xmlns:c="urn:cergw:clinic:v1"><c:Clinic><c:Rpwdl>000000012345</c:Rpwdl><c:Specialty>1100</c:Specialty></c:Clinic>%s</c:%sRequest></soap:Body></soap:Envelope>' "$1" "$2" "$1"
}
slot L-1 12:00 12:30 >"$T/l1.json"; slot L-2 12:30 13:00 >"$T/l2.json"
check "two free slots L-1, L-2 are published" bash -c "[ $(code clinic-a /fhir/Slot -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/l1.json") = 201 ] && [ $(code clinic-a /fhir/Slot -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/l2.json") = 201 ]"
lappt() { # id slot start end
  appt "$1" booked "${SLOT_DAY}T$3:00+00:00" "${SLOT_DAY}T$4:00+00:00" | sed "s|\"comment\"|\"slot\":[{\"identifier\":{\"value\":\"$2\"}}],\"comment\"|"
}
lappt L-A L-1 12:00 12:30 >"$T/la.json"; lappt L-B L-1 12:00 12:30 >"$T/lb.json"
check "L-A books L-1: 201" eq "$(code clinic-a /fhir/Appointment -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/la.json")" 201
check "  L-B cannot book the taken L-1: 422" eq "$(code clinic-a /fhir/Appointment -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/lb.json")" 422
soapc CancelAppointment '<c:AppointmentId>L-A</c:AppointmentId><c:Reason>pacjent odwołał</c:Reason>' >"$T/cancel-la.xml"
r=$(gw clinic-a /soap -H 'content-type: text/xml' -H 'SOAPAction: "urn:cergw:clinic:v1:CancelAppointment"' --data-binary @"$T/cancel-la.xml")
check "SOAP CancelAppointment of L-A (no slot named): accepted and delivered" has "$r" '<c:CancelAppointmentResponse><c:Status>delivered'
last=$(sim p1 /_sim/last)
check "  P1 received a FHIRPath Patch (Parameters: replace Appointment.status cancelled), not an Appointment body" \
  has "$last" '"resourceType":"Parameters"' 'Appointment.status' '"method":"PATCH"'
check "  and no Appointment body" bash -c '! grep -q "\"resourceType\":\"Appointment\"" <<<"$1"' _ "$last"
check "  GET /fhir/Appointment/L-A: version 2, the patch merged into the booking (cancelled, its start and patient kept)" \
  has "$(gw clinic-a /fhir/Appointment/L-A)" '"versionId": "2"' '"status": "cancelled"' '"start": ' '85010112345' 'pacjent odwołał'
check "  the merged version is the one kept with a body of its own (the PATCH's partial resource is not a version)" \
  eq "$(db "select case when length(body) > 0 then 1 else 0 end from resources where id = 'L-A' and version = 2")" 1
check "  the cancellation freed L-1: L-B books it now (201)" eq "$(code clinic-a /fhir/Appointment -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/lb.json")" 201
lappt L-B L-1 12:00 12:25 >"$T/lb2.json"
check "  L-B keeps L-1 and corrects its end (a reschedule to the slot it holds): 201" eq "$(code clinic-a /fhir/Appointment -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/lb2.json")" 201
soapc RescheduleAppointment "<c:AppointmentId>L-B</c:AppointmentId><c:SlotId>L-2</c:SlotId><c:Start>${SLOT_DAY}T12:30:00Z</c:Start><c:End>${SLOT_DAY}T13:00:00Z</c:End>" >"$T/resched-lb.xml"
r=$(gw clinic-a /soap -H 'content-type: text/xml' --data-binary @"$T/resched-lb.xml")
check "SOAP RescheduleAppointment of L-B to L-2: accepted" has "$r" '<c:RescheduleAppointmentResponse><c:Status>delivered'
lappt L-C L-1 12:00 12:30 >"$T/lc.json"
check "  the reschedule freed L-1: L-C books it (201)" eq "$(code clinic-a /fhir/Appointment -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/lc.json")" 201
lappt L-D L-2 12:30 13:00 >"$T/ld.json"
check "  and took L-2: L-D cannot book it (422)" eq "$(code clinic-a /fhir/Appointment -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/ld.json")" 422
# a cancellation on the provider's side (R4 appointment-cancellation-reason "prov"): the clinic withdraws
# the slot, which stays taken
lappt L-E L-3 13:00 13:30 >"$T/le.json"
slot L-3 13:00 13:30 >"$T/l3.json"
code clinic-a /fhir/Slot -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/l3.json" >/dev/null
check "L-E books L-3: 201" eq "$(code clinic-a /fhir/Appointment -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/le.json")" 201
sed 's/"status":"booked"/"status":"cancelled","cancelationReason":{"coding":[{"system":"http:\/\/terminology.hl7.org\/CodeSystem\/appointment-cancellation-reason","code":"prov"}]}/' "$T/le.json" >"$T/le-cancel.json"
check "  cancelled by the provider (reason prov): accepted" eq "$(code clinic-a /fhir/Appointment -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/le-cancel.json")" 201
lappt L-F L-3 13:00 13:30 >"$T/lf.json"
check "  the slot stays withdrawn: L-F cannot book L-3 (422)" eq "$(code clinic-a /fhir/Appointment -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/lf.json")" 422
# (finding 7) a cancellation of an appointment nobody has seen: the gateway says it does not know it,
# and P1, the system of record, refuses it with 404: the clinic is told P1 rejected it and why
soapc CancelAppointment '<c:AppointmentId>NEVER-BOOKED-1</c:AppointmentId>' >"$T/cancel-unknown.xml"
r=$(gw clinic-a /soap -H 'content-type: text/xml' --data-binary @"$T/cancel-unknown.xml")
check "SOAP cancel of an appointment never booked: a fault saying P1 rejected it (HTTP 404, not known to CeR)" \
  has "$r" 'Fault' 'HTTP 404' 'not known to CeR'
siu 8201 1100 5 S15 | sed 's/|Booked|/|Cancelled|/' >"$T/s15-unknown.hl7"
ack=$(gw clinic-a /hl7v2 --data-binary @"$T/s15-unknown.hl7" | tr '\r' '\n')
check "HL7 S15 of an appointment never booked: AR (resending cannot help), ERR 204 at SCH-1 (unknown to the gateway) and P1's 404" \
  has "$ack" '^MSA|AR|MSG-8201|not accepted: p1=rejected' '^ERR||SCH^1^1|204^Unknown key identifier^HL70357|W||||cer.appointment-unknown' 'HTTP 404'
# (finding 11) acceptance: P1 took it, only the reporting backend AP-KOLCE refused: AA with a warning ERR
mode apkolce reject
siu 8202 >"$T/kolce-rejects.hl7"
ack=$(gw clinic-a /hl7v2 --data-binary @"$T/kolce-rejects.hl7" | tr '\r' '\n')
mode apkolce ok
check "P1 delivered, AP-KOLCE rejected: ACK AA (a resend would book twice) with an ERR of severity W for AP-KOLCE" \
  has "$ack" '^MSA|AA|MSG-8202|accepted: p1=delivered apkolce=rejected' '^ERR|.*|W||||delivery.rejected: apkolce rejected'

# ------------------------------------------------- notifications to clinics
appt WIZ-N1 cancelled "$APPT" "$APPT_END" >"$T/n1.json"
nres=$(sim p1 /_sim/notify -X POST --data-binary @"$T/n1.json")
check "P1 notification (cancelled in IKP) accepted by the gateway" bash -c "printf '%s' \"\$1\" | grep -q 'clinic-000000012345: delivered'" _ "$nres"
check "  the clinic endpoint received a SOAP AppointmentNotification" bash -c "curl -s --cacert $D/ca.pem --cert $D/operator.pem --key $D/operator.key https://localhost:$CLIN/_sim/last | grep -q '<c:Change>cancelled</c:Change>'"
sed 's/000000012345/000000067890/; s/"1100"/"7910"/' "$T/n1.json" >"$T/n2.json"
sim p1 /_sim/notify -X POST --data-binary @"$T/n2.json" >/dev/null
check "  a clinic registered for HL7 gets SIU over HTTP" bash -c "curl -s --cacert $D/ca.pem --cert $D/operator.pem --key $D/operator.key https://localhost:$CLIN/_sim/last | grep -q '^MSH|'"
# a clinic registered with an MLLP endpoint: SIU over MLLP/TLS, its ACK decides
sed 's/000000012345/000000011111/; s/"1100"/"7910"/' "$T/n1.json" >"$T/n4.json"
nres=$(sim p1 /_sim/notify -X POST --data-binary @"$T/n4.json")
check "  a clinic registered for MLLP gets the SIU over MLLP/TLS, ACK AA: delivered" bash -c "printf '%s' \"\$1\" | grep -q 'clinic-000000011111: delivered'" _ "$nres"
check "    the clinic holds it once, MSH-10 the delivery's key" bash -c "[ \"\$(curl -s --cacert $D/ca.pem --cert $D/operator.pem --key $D/operator.key https://localhost:$CLIN2/_sim/stats | sed -n 's/.*\"unique\":\([0-9]*\).*/\1/p')\" = 1 ] && curl -s --cacert $D/ca.pem --cert $D/operator.pem --key $D/operator.key https://localhost:$CLIN2/_sim/last | grep -q '^MSH|[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|[^|]*||SIU^S15[^|]*|[0-9a-f-]*-clinic-000000011111|'"
mode mllpclinic reject
sed 's/WIZ-N1/WIZ-N4/' "$T/n4.json" >"$T/n5.json"
nres=$(sim p1 /_sim/notify -X POST --data-binary @"$T/n5.json")
check "    an ACK AE from the clinic: rejected, the ACK's text kept" bash -c "printf '%s' \"\$1\" | grep -q 'clinic-000000011111 rejected the message: ACK AE: rejected by the simulator' && [ \"\$(\"$CLI\" outbox --data $T/gw list --backend clinic-000000011111 --state rejected | grep -c 'ACK AE: rejected by the simulator')\" = 1 ]" _ "$nres"
mode mllpclinic fail
u0=$(stat mllpclinic unique)
sed 's/WIZ-N1/WIZ-N5/' "$T/n4.json" >"$T/n6.json"
sim p1 /_sim/notify -X POST --data-binary @"$T/n6.json" >/dev/null
check "    an answer that is no ACK: attempted again (not an ACK, logged as a failed attempt)" wait_for 10 bash -c "[ \"\$(\"$CLI\" outbox --data $T/gw list --backend clinic-000000011111 --state queued | awk '/not an HL7 ACK/ && \$8 >= 2' | wc -l)\" = 1 ]"
mode mllpclinic ok
check "    then delivered once the clinic acknowledges" wait_for 10 bash -c "[ \"\$(curl -s --cacert $D/ca.pem --cert $D/operator.pem --key $D/operator.key https://localhost:$CLIN2/_sim/stats | sed -n 's/.*\"unique\":\([0-9]*\).*/\1/p')\" = $((u0 + 1)) ]"
sed 's/000000012345/000000099999/' "$T/n1.json" >"$T/n3.json"
check "  a clinic without a registered endpoint: refused with a clear error" bash -c "curl -s --cacert $D/ca.pem --cert $D/operator.pem --key $D/operator.key https://localhost:$P1/_sim/notify -X POST --data-binary @$T/n3.json | grep -q notify.no-endpoint"

# ------------------------------------------- failures, retries, ordering
mode p1 fail
opened0=$(grep -c 'event=breaker_open backend=p1' "$LOG"); closed0=$(grep -c 'event=breaker_closed backend=p1' "$LOG")
r=$(post_fhir clinic-a 2001)
check "P1 failing: the message is accepted and answered 202 (queued for retry)" eq "$r" 202
check "  five failed attempts in a row open P1's breaker (logged)" wait_for 10 bash -c "[ \$(grep -c 'event=breaker_open backend=p1' $LOG) -gt $opened0 ]"
before=$(stat p1 unique)
mode p1 ok
check "  delivered once P1 is back" wait_for 10 bash -c "[ \"\$(curl -s --cacert $D/ca.pem --cert $D/operator.pem --key $D/operator.key https://localhost:$P1/_sim/stats | sed -n 's/.*\"unique\":\([0-9]*\).*/\1/p')\" = $((before + 1)) ]"
check "  and the breaker closed again (logged)" wait_for 5 bash -c "[ \$(grep -c 'event=breaker_closed backend=p1' $LOG) -gt $closed0 ]"

sim p1 "/_sim/control?delay_ms=2500" -X POST >/dev/null
before=$(stat p1 unique)
fhir 2002 >"$T/b-2002.json"
t0=$(date +%s%N)
c=$(code clinic-a /fhir -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/b-2002.json")
t1=$(date +%s%N)
check "P1 slower than answer_deadline_ms (1500): answered 202 at the deadline" eq "$c" 202
check "  at the deadline, not after P1's 2.5 s (took $(( (t1 - t0) / 1000000 )) ms)" bash -c "[ $(( (t1 - t0) / 1000000 )) -ge 1400 ] && [ $(( (t1 - t0) / 1000000 )) -lt 2450 ]"
check "  and delivered once P1 answers" wait_for 10 bash -c "[ \"\$(curl -s --cacert $D/ca.pem --cert $D/operator.pem --key $D/operator.key https://localhost:$P1/_sim/stats | sed -n 's/.*\"unique\":\([0-9]*\).*/\1/p')\" = $((before + 1)) ]"
sim p1 "/_sim/control?delay_ms=0" -X POST >/dev/null

mode p1 fail
appt ORD-1 booked "$APPT" "$APPT_END" >"$T/o1.json"
appt ORD-1 cancelled "$APPT" "$APPT_END" >"$T/o2.json"
code clinic-a /fhir/Appointment -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/o1.json" >/dev/null
code clinic-a /fhir/Appointment -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/o2.json" >/dev/null
sleep 0.5
mode p1 ok
wait_for 10 bash -c "db \"select count(*) from deliveries where backend='p1' and state=0\" | grep -qx 0"
check "ordering: the cancellation did not overtake its booking (P1 saw it last)" bash -c "curl -s --cacert $D/ca.pem --cert $D/operator.pem --key $D/operator.key https://localhost:$P1/_sim/last | grep -q '\"status\":\"cancelled\"'"

# P1's token endpoint failing: the issued tokens are revoked (the next delivery gets 401, the gateway
# drops its token) and new ones refused; the message waits, then goes once tokens are issued again
sim p1 "/_sim/control?token=fail&revoke=1" -X POST >/dev/null
before=$(stat p1 unique); refused0=$(stat p1 tokens_refused)
check "P1's token endpoint failing: the message is accepted and answered 202" eq "$(post_fhir clinic-a 2101)" 202
check "  the gateway asked for a new token and was refused" wait_for 10 bash -c "[ \"\$(curl -s --cacert $D/ca.pem --cert $D/operator.pem --key $D/operator.key https://localhost:$P1/_sim/stats | sed -n 's/.*\"tokens_refused\":\([0-9]*\).*/\1/p')\" -gt $refused0 ]"
check "  nothing reached P1 without a valid token" eq "$(stat p1 unique)" "$before"
check "  the failure is logged" grep -q 'event=oauth_failed backend=p1 status=503' "$LOG"
sim p1 "/_sim/control?token=ok" -X POST >/dev/null
check "  delivered once tokens are issued again (backoff at most 60 s; here seconds)" wait_for 20 bash -c "[ \"\$(curl -s --cacert $D/ca.pem --cert $D/operator.pem --key $D/operator.key https://localhost:$P1/_sim/stats | sed -n 's/.*\"unique\":\([0-9]*\).*/\1/p')\" = $((before + 1)) ]"

# P1's token endpoint slow (2.5 s, under the 3 s timeout): the token request is one more transfer, so
# nothing else waits for it. The first message finds its token revoked (401): the gateway asks for a new
# one, which takes 2.5 s; a second message sent meanwhile still reaches AP-KOLCE at once (a token fetch
# that blocked the dispatcher would hold it past the 1.5 s answer deadline).
sim p1 "/_sim/control?token_delay_ms=2500&revoke=1" -X POST >/dev/null
before=$(stat p1 unique); k0=$(stat apkolce unique)
siu 2201 >"$T/slow-token-1.hl7"; siu 2202 >"$T/slow-token-2.hl7"
gw clinic-a /hl7v2 --data-binary @"$T/slow-token-1.hl7" >/dev/null
sleep 0.3
ack=$(gw clinic-a /hl7v2 --data-binary @"$T/slow-token-2.hl7" | tr '\r' '\n' | grep '^MSA')
check "P1's token endpoint slow: AP-KOLCE still delivered within the answer ($ack)" \
  bash -c "echo '$ack' | grep -q 'apkolce=delivered' && echo '$ack' | grep -q 'p1=queued'"
check "  AP-KOLCE has both" eq "$(stat apkolce unique)" $((k0 + 2))
check "  P1 gets both once the token arrives" wait_for 10 bash -c "[ \"\$(curl -s --cacert $D/ca.pem --cert $D/operator.pem --key $D/operator.key https://localhost:$P1/_sim/stats | sed -n 's/.*\"unique\":\([0-9]*\).*/\1/p')\" = $((before + 2)) ]"
sim p1 "/_sim/control?token_delay_ms=0" -X POST >/dev/null

stop_sim apkolce
n0=$(stat p1 unique)
for i in $(seq 3001 3020); do post_fhir clinic-a $i >>"$T/down.codes"; echo >>"$T/down.codes"; done
check "AP-KOLCE down: all 20 messages accepted (202, queued)" eq "$(grep -c 202 "$T/down.codes")" 20
start_sim apkolce
k0=$(($(stat apkolce unique)))
check "AP-KOLCE back: every queued message delivered" wait_for 20 bash -c "[ \"\$(db \"select count(*) from deliveries where backend='apkolce' and state=0\")\" = 0 ]"
check "  exactly once (no repeats seen by AP-KOLCE)" eq "$(stat apkolce duplicates)" 0
check "  the backlog beyond memory_queue (5) waited in the store only and was loaded back from it" \
  wait_for 5 bash -c "grep -q 'event=backlog_spilled backend=apkolce' $LOG && grep -q 'event=backlog_back_in_memory backend=apkolce' $LOG"
check "  P1 was not held up meanwhile" eq "$(stat p1 unique)" $((n0 + 20))

mode simp fail
post_fhir clinic-a 4001 7910 >/dev/null
check "SIMP failing past max_attempts (3): dead letter" wait_for 10 bash -c "[ \"\$(db \"select count(*) from deliveries where backend='simp' and state=3\")\" = 1 ]"
check "  cergw outbox dead lists it" bash -c "$CLI outbox --data $T/gw dead | grep -q ' simp '"
mode simp ok
check "  cergw outbox retry --all-dead" bash -c "$CLI outbox --data $T/gw retry --all-dead | grep -q '1 delivery'"
check "  then delivered" wait_for 10 bash -c "[ \"\$(db \"select count(*) from deliveries where backend='simp' and state<>1\")\" = 0 ]"

mode p1 reject
rj=$(fhir 5001 >"$T/r.json"; gw clinic-a /fhir -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/r.json" -w '\n%{http_code}')
check "P1 rejects: 422, the error attributed to P1" bash -c "printf '%s' \"\$1\" | tail -1 | grep -qx 422 && printf '%s' \"\$1\" | grep -q 'p1 rejected the message'" _ "$rj"
mode p1 ok
did=$(db "select id from deliveries where backend='p1' and state=2 order by id desc limit 1")
check "  cergw outbox show / retry of a rejected delivery" bash -c "$CLI outbox --data $T/gw show $did | grep -q 'ordering key' && $CLI outbox --data $T/gw retry $did | grep -q '1 delivery'"
check "  delivered after the retry" wait_for 10 bash -c "[ \"\$(db \"select state from deliveries where id=$did\")\" = 1 ]"
show=$("$CLI" outbox --data "$T/gw" show "$did")
check "  outbox show: labelled fields and the history of attempts, the rejection kept after the successful retry" \
  has "$show" '^clinic: *000000012345' '^backend: *p1' '^--- attempts ---' '^#1 .* -> rejected, status 422' '^#2 .* -> delivered, status 20'
list=$("$CLI" outbox --data "$T/gw" list --backend p1 --clinic 000000012345 --since 1 --limit 5)
check "  outbox list: columns (clinic, operation, resource, backend, state, attempts, age) and filters" \
  bash -c 'has "$1" "^ID *MSG *CLINIC *OPERATION *RESOURCE *BACKEND *STATE *TRY *AGE" " 000000012345 " " p1 " && ! grep -q " apkolce " <<<"$1"' _ "$list"
check "  outbox retry of a delivered delivery says why nothing was queued" \
  bash -c "$CLI outbox --data $T/gw retry $did 2>&1 | grep -q 'is delivered: only rejected or dead deliveries can be retried'"

# ------------------------------------------------------ reload, metrics, audit
write_delivery false
kill -HUP "$GW_PID"
wait_for 5 grep -q 'event=reloaded' "$LOG"
k=$(stat apkolce unique)
post_fhir clinic-a 6001 >/dev/null
check "SIGHUP: the AP-KOLCE route switched off without a restart" eq "$(stat apkolce unique)" "$k"
write_delivery true
mode p1 fail
before=$(stat p1 unique)
check "a message queued for retry while P1 fails" eq "$(post_fhir clinic-a 6002)" 202
kill -HUP "$GW_PID"
sleep 0.3
mode p1 ok
check "SIGHUP with work in flight: the queued message is still delivered after the reload" \
  wait_for 10 bash -c "[ \"\$(curl -s --cacert $D/ca.pem --cert $D/operator.pem --key $D/operator.key https://localhost:$P1/_sim/stats | sed -n 's/.*\"unique\":\([0-9]*\).*/\1/p')\" = $((before + 1)) ]"
# the signing key is read again with the snapshot: after the reload, a new token is asked for with it
keys0=$(grep -c 'event=oauth_key_loaded' "$LOG")
sim p1 "/_sim/control?revoke=1" -X POST >/dev/null
before=$(stat p1 unique)
post_fhir clinic-a 6003 >/dev/null
check "SIGHUP: the private_key_jwt key is read again from the new snapshot for the next token" \
  wait_for 10 bash -c "[ \$(grep -c 'event=oauth_key_loaded' $LOG) -gt $keys0 ] && [ \"\$(grep 'event=oauth_key_loaded' $LOG | tail -1 | sed 's/.*snapshot=//')\" != \"\$(grep 'event=oauth_key_loaded' $LOG | head -1 | sed 's/.*snapshot=//')\" ]"
check "  and the message reaches P1 with the new token" wait_for 10 bash -c "[ \"\$(curl -s --cacert $D/ca.pem --cert $D/operator.pem --key $D/operator.key https://localhost:$P1/_sim/stats | sed -n 's/.*\"unique\":\([0-9]*\).*/\1/p')\" = $((before + 1)) ]"
check "metrics per backend" bash -c "curl -s --cacert $D/ca.pem --cert $D/clinic-a.pem --key $D/clinic-a.key https://localhost:$GWP/metrics | grep -q 'cergw_backend_delivered_total{backend=\"p1\"}'"
audit_joins() { # the last transaction's audit line names conn and stream; the access log has that request
  local a c st
  a=$(grep 'event=audit' "$LOG" | grep 'op=fhir.transaction' | tail -1)
  c=$(sed -n 's/.* conn=\([0-9]*\) stream=\([0-9]*\) .*/\1/p' <<<"$a"); st=$(sed -n 's/.* conn=\([0-9]*\) stream=\([0-9]*\) .*/\2/p' <<<"$a")
  [ -n "$c" ] && grep 'event=request' "$LOG" | grep "conn=$c stream=$st " | grep -q 'path="/fhir"'
}
check "audit line carries conn and stream, joining it to the access log line of its request" wait_for 3 audit_joins
# ACK control ids: the first request of two connections (each stream/ordinal 1) gets two different MSH-10s
siu 2301 >"$T/ctl1.hl7"; siu 2302 >"$T/ctl2.hl7"
c1=$(gw clinic-a /hl7v2 --http1.1 --data-binary @"$T/ctl1.hl7" | tr '\r' '\n' | grep '^MSH' | cut -d'|' -f10)
c2=$(gw clinic-a /hl7v2 --http1.1 --data-binary @"$T/ctl2.hl7" | tr '\r' '\n' | grep '^MSH' | cut -d'|' -f10)
check "ACKs on two connections have different control ids ($c1, $c2)" bash -c "[ -n '$c1' ] && [ '$c1' != '$c2' ]"
check "audit log: who, what, outcome, PESEL masked" bash -c "grep 'event=audit' $LOG | grep -q 'patient=850101\*\*\*\*\*' && ! grep 'event=audit' $LOG | grep -q 85010112345"

# ------------------------------------------- third-party clients, unchanged (issue 12)
# fhir-kit-client (FHIR REST), node-soap (the WSDL, all seven operations, SOAP 1.1 and 1.2, faults),
# node-hl7-client (SIU S12-S17 and S26 over MLLP/TLS, ACKs): each prints ok/FAIL lines, counted here
third_party() { # label, command...
  local line seen=0
  while IFS= read -r line; do
    case $line in
      "ok   - "*) ok "${line#ok   - }"; seen=$((seen + 1)) ;;
      "FAIL - "*) ko "${line#FAIL - }"; seen=$((seen + 1)) ;;
    esac
  done < <(timeout 120 "${@:2}" 2>&1)
  [ "$seen" -gt 0 ] || ko "$1: the client suite ran no check (is make deps done?)"
}
if command -v node >/dev/null && [ -d "$ROOT/tools/node/node_modules/fhir-kit-client" ]; then
  third_party fhir-kit-client node "$ROOT/tools/node/clients/fhir-kit.mjs" "$D" "https://localhost:$GWP/fhir"
  third_party node-soap node "$ROOT/tools/node/clients/node-soap.js" "$D" "https://localhost:$GWP"
  third_party node-hl7-client node "$ROOT/tools/node/clients/node-hl7.js" "$D" "$MLLP"
else
  ko "third-party clients: node tools missing: run 'make deps'"
fi
# gSOAP (Debian's gsoap): a C client generated from the WSDL the gateway serves and the XSD it imports,
# as a C or C++ clinic system would build one, calls BookAppointment over mutual TLS
if command -v wsdl2h >/dev/null && command -v soapcpp2 >/dev/null && pkg-config --exists gsoapssl; then
  G=$T/gsoap; mkdir -p "$G"
  (cd "$G" && curl -s --cacert "$D/ca.pem" --cert "$D/clinic-a.pem" --key "$D/clinic-a.key" "https://localhost:$GWP/soap?wsdl" >cergw.wsdl &&
    curl -s --cacert "$D/ca.pem" --cert "$D/clinic-a.pem" --key "$D/clinic-a.key" "https://localhost:$GWP/soap?xsd" >cergw-clinic.xsd &&
    sed -i 's|schemaLocation="[^"]*"|schemaLocation="cergw-clinic.xsd"|' cergw.wsdl &&
    wsdl2h -c -o cergw.h cergw.wsdl && soapcpp2 -c -C -L -x cergw.h &&
    cc -I. -o gsoap_book "$ROOT/tests/clients/gsoap_book.c" soapC.c soapClient.c $(pkg-config --cflags --libs gsoapssl) &&
    cat "$D/clinic-a.key" "$D/clinic-a.pem" >kc.pem) >"$T/gsoap.log" 2>&1
  check "gSOAP: wsdl2h and soapcpp2 generate a C client from the served WSDL, and it builds" test -x "$G/gsoap_book"
  r=$("$G/gsoap_book" "https://localhost:$GWP/soap" "$G/kc.pem" "$D/ca.pem" "GSOAP-$$" 777600 2>&1)
  check "gSOAP: the generated client books a visit (BookAppointment over mutual TLS): $r" has "$r" 'Status delivered' 'Deliveries 2'
else
  ko "gSOAP: wsdl2h, soapcpp2 or gsoapssl missing: run 'make deps'"
fi

# ---------------------------------------------------------- kill -9 under load
# health tells the truth: while the store cannot commit (here a trigger plays the full disk), writes are
# refused with 503 and /healthz says why; both recover by themselves when the store takes writes again
if [ "$STORE" = postgresql ]; then
  db "CREATE FUNCTION full_disk() RETURNS trigger LANGUAGE plpgsql AS \$\$ BEGIN RAISE EXCEPTION 'could not extend file: No space left on device'; END \$\$;
      CREATE TRIGGER no_messages BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION full_disk();
      CREATE TRIGGER no_updates BEFORE UPDATE ON deliveries FOR EACH ROW EXECUTE FUNCTION full_disk();" >/dev/null
else
  db "CREATE TRIGGER no_messages BEFORE INSERT ON messages BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;
      CREATE TRIGGER no_updates BEFORE UPDATE ON deliveries BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;"
fi
c=$(post_fhir clinic-a 9001)
h=$(gw clinic-a /healthz -w '\n%{http_code}')
check "a store that cannot commit: the write is refused with 503 ($c)" eq "$c" 503
check "  and /healthz says so: 503, degraded, with the reason" \
  bash -c "[ \"\$(tail -1 <<<\"\$1\")\" = 503 ] && grep -q '\"status\":\"degraded\"' <<<\"\$1\" && grep -q 'the store cannot commit' <<<\"\$1\"" _ "$h"
if [ "$STORE" = postgresql ]; then
  db "DROP TRIGGER no_messages ON messages; DROP TRIGGER no_updates ON deliveries; DROP FUNCTION full_disk();" >/dev/null
else
  db "DROP TRIGGER no_messages; DROP TRIGGER no_updates;"
fi
c=$(post_fhir clinic-a 9002)
check "  recovered by itself: the next write is accepted ($c)" bash -c "[[ $c == 20? ]]"
health_ok() { [ "$(code clinic-a /healthz)" = 200 ]; }
check "  and /healthz is 200 again" wait_for 3 health_ok
: >"$T/acked"
fhir 7000 >"$T/k-template.json"
for i in $(seq 7001 7200); do sed "s/WIZ-7000/WIZ-$i/g" "$T/k-template.json" >"$T/k-$i.json"; done
send() { # ids...: POST each with an Idempotency-Key; record the acknowledged ones
  for i in "$@"; do
    c=$(code clinic-a /fhir -X POST -H 'content-type: application/fhir+json' -H "Idempotency-Key: kill-$i" \
      --data-binary @"$T/k-$i.json" --max-time 5)
    case $c in 20[0-9]) echo "$i" >>"$T/acked" ;; esac
  done
}
# P1 answers slowly, so at the moment of the crash some messages are committed but not yet answered
sim p1 "/_sim/control?delay_ms=1000" -X POST >/dev/null
senders=()
for part in 0 1 2 3; do # four clients at once
  send $(seq $((7001 + part * 50)) $((7050 + part * 50))) &
  senders+=($!)
done
sleep 2
kill -9 "$GW_PID"
wait "$GW_PID" 2>/dev/null
wait "${senders[@]}" 2>/dev/null
GW_PID=
acked=$(wc -l <"$T/acked")
# the store keeps idempotency keys as keyed hashes: the rows of this block by the hashes of its keys
"$CLI" store hash $(for i in $(seq 7001 7200); do echo "000000012345|key|kill-$i"; done) >"$T/killhash"
killed="$(sed "s/.*/'&'/" "$T/killhash" | paste -sd,)"
stored=$(db "select count(*) from messages where idem_key in ($killed)")
sim p1 "/_sim/control?delay_ms=0" -X POST >/dev/null
start_gw || exit 1
# the clients retry everything they sent, acknowledged or not
send $(seq 7001 7200)
check "kill -9 with four clients sending: some messages were acknowledged before the crash ($acked)" test "$acked" -gt 0
check "  every acknowledged message is in the store" bash -c "for i in \$(cat $T/acked); do h=\$(sed -n \"\$((i - 7000))p\" $T/killhash); db \"select count(*) from messages where idem_key = '\$h'\" | grep -qx 1 || exit 1; done"
check "  some were committed but their answers were swallowed by the crash ($((stored - acked)))" test $((stored - acked)) -gt 0
check "  client retries did not create a second message" eq "$(db "select count(*) from messages where idem_key in ($killed)")" 200
check "  after restart every delivery reaches its backend" wait_for 30 bash -c "[ \"\$(db \"select count(*) from deliveries where state<>1 and msg_id in (select id from messages where idem_key in ($killed))\")\" = 0 ]"
p1_dl=$(db "select count(*) from deliveries where backend='p1' and state=1")
check "  P1 holds exactly one copy of each delivered message" eq "$(stat p1 unique)" "$p1_dl"

# URLs that carry a PESEL and a name: the access log writes the route's template, query values masked
code clinic-a "/fhir/Appointment?patient=85010112345&name=Kowalski" >/dev/null
code clinic-a "/fhir/Appointment/85010112345" >/dev/null
code clinic-a "/85010112345/Kowalski" >/dev/null
check "the access log has the template, not the URL's PESEL or name" \
  wait_for 3 bash -c "grep -q 'path=\"/fhir/Appointment?patient=\*&name=\*\"' $LOG && grep -q 'path=\"/fhir/Appointment/{id}\"' $LOG"

# key rotation under load: a new key appended, `cergw store rekey` re-sealing the old rows while clinics keep
# sending; the gateway restarted on the new key; nothing acknowledged lost, every message still opens
"$GW" store keygen "$T/k2.key" test-2 >/dev/null
grep '^test-2 ' "$T/k2.key" >>"$T/store.key"
u_rot=$(stat p1 unique)
( for i in $(seq 9101 9160); do [ "$(post_fhir clinic-a "$i")" = 200 ] && echo "$i"; done >"$T/rot-acked" ) &
loader=$!
rk1=$("$CLI" store --data "$T/gw" rekey 2>&1); rkrc=$?
wait "$loader"
check "rekey under load: done while 60 transactions came in ($rk1)" eq "$rkrc" 0
check "  and every one of them acknowledged" eq "$(wc -l <"$T/rot-acked")" 60
kill -TERM "$GW_PID"; wait "$GW_PID"; GW_PID=
start_gw || exit 1
c9161=$(post_fhir clinic-a 9161)
check "  restarted on the new key: new messages sealed under test-2 ($c9161)" \
  bash -c "[ $c9161 = 200 ] && \"$CLI\" store --data $T/gw status | grep -q 'messages by key:.*test-2 [0-9]'"
check "  P1 received each of the 61 once" wait_for 20 bash -c "[ \"\$(curl -s --cacert $D/ca.pem --cert $D/operator.pem --key $D/operator.key https://localhost:$P1/_sim/stats | sed -n 's/.*\"unique\":\([0-9]*\).*/\1/p')\" = $((u_rot + 61)) ]"

kill -TERM "$GW_PID"; wait "$GW_PID"; rc=$?; GW_PID=
check "the gateway stops cleanly on SIGTERM (exit 0; under ASan: no leak)" eq "$rc" 0
for r in p1 simp apkolce clinic; do
  kill -TERM "${SIM_PID[$r]}"; wait "${SIM_PID[$r]}"; rc=$?; unset "SIM_PID[$r]"
  check "simulator $r stops cleanly" eq "$rc" 0
done
grep -h 'ERROR: AddressSanitizer\|runtime error' "$LOG" "$T"/sim-*.log && ko "sanitizer reports in the logs"
# every line the gateway logged during this whole suite: no PESEL, patient name, phone or e-mail of the test data
pd=$(grep -h -o -E '8501011234[0-9]|Kowalsk[a-z]*|600100200|jan\.kowalski@example\.pl' "$LOG" | sort | uniq -c | tr '\n' ' ')
check "no PESEL, patient name, phone number or e-mail of the test data in any line of the gateway's log${pd:+ (found: $pd)}" \
  test -z "$pd"

# personal data at rest: after everything above, not one PESEL, name, phone or e-mail of the test data in
# any file under the data directory (the database, its write-ahead log and shared memory: raw bytes)
store_files() { if [ "$STORE" = postgresql ]; then find "$PG_DIR/data/base" "$PG_DIR/data/pg_wal" -type f -exec cat {} + 2>/dev/null; else cat "$T"/gw/* 2>/dev/null; fi; }
pf=$(store_files | grep -a -o -E '8501011234[0-9]|Kowalsk[a-z]*|600100200|jan\.kowalski@example\.pl' | sort | uniq -c | tr '\n' ' ')
check "no PESEL, patient name, phone number or e-mail of the test data in any file of the data directory${pf:+ (found: $pf)}" \
  test -z "$pf"
if [ "$STORE" = postgresql ]; then # the same promises, checked on the PostgreSQL store
  pst=$("$CLI" store status 2>&1)
  check "cergw store --pg status: schema, deliveries by state, every instance and the sealing key" \
    has "$pst" '^schema version: 1' 'delivered' '^instance .*: dead' '^sealing keys: *test-1 (since' 'messages by key: .*test-2 [0-9]'
  dump() { pg_dump "$PGU" --data-only -T instances | grep -v -e '^--' -e '^\\' | sha256sum; }
else
check "cergw store status reports the retention in force and when it last pruned" \
  bash -c "\"$CLI\" store --data $T/gw status | grep -Eq '^retention: +content 7 days \\(rejected: 0, 0 = kept\\), metadata 90 days; last prune 20'"
check "  yet the store is whole: cergw store status names the key and every message sealed under it" \
  bash -c "\"$CLI\" store --data $T/gw status | grep -q 'messages by key: *test-1 [0-9]' && ! \"$CLI\" store --data $T/gw status | grep -q '(clear)'"
check "  data directory 0700, database and write-ahead log 0600" \
  eq "$(command stat -c %a "$T/gw") $(command stat -c %a "$T/gw/cergw.db")" "700 600"
  dump() { sqlite3 -cmd '.timeout 5000' "$T/gw/cergw.db" .dump | sha256sum; } # the rows, whatever SQLite's scratch files do
fi
sum0=$(dump)
KID=test-2 # the key in force (rotated above)
sed "s/^$KID .*/$KID $(openssl rand -hex 32)/" "$T/store.key" >"$T/other.key" # the same ids, another key
chmod 600 "$T/other.key"
sed "s|$T/store.key|$T/other.key|" "$T/gw.json" >"$T/gw-wrong.json"
out=$(timeout 20 "$GW" serve --config "$T/gw-wrong.json" 2>&1); rc=$?
check "a wrong key under the right id: refused at start, saying so" \
  bash -c "[ $rc -ne 0 ] && grep -q \"key '$KID' in store.key_file is not the key\" <<<\"\$1\"" _ "$out"
"$GW" store keygen "$T/missing.key" test-9 >/dev/null
sed "s|$T/store.key|$T/missing.key|" "$T/gw.json" >"$T/gw-missing.json"
out=$(timeout 20 "$GW" serve --config "$T/gw-missing.json" 2>&1); rc=$?
check "a key file without the key the rows are sealed under: refused at start, naming the key id" \
  bash -c "[ $rc -ne 0 ] && grep -q \"sealed under key 'test-[12]', which store.key_file does not hold\" <<<\"\$1\"" _ "$out"
sed 's|"store": {|"store": {"seal": "off", |' "$T/gw.json" >"$T/gw-off.json"
out=$(timeout 20 "$GW" serve --config "$T/gw-off.json" 2>&1); rc=$?
check "sealing turned off over a sealed store: refused at start (never a store half sealed, half clear)" \
  bash -c "[ $rc -ne 0 ] && grep -q \"the store holds content sealed under key 'test-\" <<<\"\$1\"" _ "$out"
chmod 644 "$T/store.key"
out=$(timeout 20 "$GW" serve --config "$T/gw.json" 2>&1); rc=$?
chmod 600 "$T/store.key"
check "a key file others can read: refused at start, with the fix" bash -c "[ $rc -ne 0 ] && grep -q 'chmod 600' <<<\"\$1\"" _ "$out"
check "  and none of these changed a row of the store" eq "$(dump)" "$sum0"
found=$("$CLI" outbox --data "$T/gw" find --pesel 85010112345)
check "cergw outbox find --pesel: the messages that name the patient, through the keyed hash (none of it in clear)" \
  bash -c "grep -Eq '^[0-9]+ +20[0-9-]+T.* kept ' <<<\"\$1\" && grep -Eq '^[1-9][0-9]* messages? name this patient' <<<\"\$1\"" _ "$found"
check "  a PESEL the gateway never saw: none" bash -c "\"$CLI\" outbox --data $T/gw find --pesel 02070803628 | grep -q '^0 messages name this patient'"
# key rotation: a new key appended seals new rows; `cergw store rekey` re-seals the old ones under it; then
# the old key's line can go and everything still opens
rk=$("$CLI" store --data "$T/gw" rekey 2>&1)
check "cergw store rekey: every sealed value re-sealed under the new key (${rk})" \
  bash -c "\"$CLI\" store --data $T/gw status | grep -q 'messages by key: *test-2 [0-9]*\$' && \"$CLI\" store --data $T/gw status | grep -q 'sealing keys: *test-2 (since'"
grep -v '^test-1 ' "$T/store.key" >"$T/only2.key" && chmod 600 "$T/only2.key"
check "  the old key's line dropped: what the store holds still opens (outbox show of a delivery, under test-2 alone)" \
  bash -c "CERGW_STORE_KEY=$T/only2.key \"$CLI\" outbox --data $T/gw show 1 | grep -q -- '--- payload ---'"
pf2=$(store_files | grep -a -o -E '8501011234[0-9]|Kowalsk[a-z]*|600100200|jan\.kowalski@example\.pl' | sort | uniq -c | tr '\n' ' ')
check "  and still nothing of the test data in clear in any file${pf2:+ (found: $pf2)}" test -z "$pf2"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
