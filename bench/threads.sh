#!/bin/bash
# CPU per message and per gateway thread (workers, store writer, dispatcher) for N
# HL7 SIU S12 messages through the full path with the simulators. Not a test.
# Usage: bench/threads.sh   (N=3000, LOGLEVEL=info)
set -euo pipefail
cd "$(dirname "$0")/.."
D=$PWD/certs/dev; T=$(mktemp -d)
for s in p1:29541 apkolce:29543 simp:29542; do ./build/cergw sim --role ${s%%:*} --listen 127.0.0.1:${s##*:} --data $T/sims >/dev/null 2>&1 & done
sed -e 's/29441/29541/g; s/29442/29542/g; s/29443/29543/g' > $T/delivery.json <<EOF2
{ "answer_deadline_ms": 2000,
  "client_tls": {"cert": "$D/gateway-out.pem", "key": "$D/gateway-out.key", "ca": "$D/ca.pem"},
  "defaults": {"timeout_ms": 5000, "concurrency": 256},
  "backends": {
    "p1": {"kind": "p1", "url": "https://localhost:29441/fhir", "token_url": "https://localhost:29441/oauth2/token"},
    "simp": {"kind": "simp", "url": "https://localhost:29442/simp"},
    "apkolce": {"kind": "apkolce", "url": "https://localhost:29443/apkolce"} },
  "routes": [ {"name": "cer", "match": "/f:*", "backends": ["p1"]},
    {"name": "c", "backends": ["apkolce"], "match": "//f:specialty/f:coding[f:code/@value >= 1100 and f:code/@value <= 1105]"} ] }
EOF2
cat > $T/gw.json <<EOF2
{ "listen": "127.0.0.1:29540", "mllp_listen": "", "workers": 2, "log_level": "${LOGLEVEL:-info}", "data_dir": "$T/gw", "delivery": "$T/delivery.json",
  "tls": { "cert": "$D/server.pem", "key": "$D/server.key", "client_ca": "$D/ca.pem", "crl": "$D/crl.pem" } }
EOF2
./build/cergw serve --config $T/gw.json > $T/gw.log 2>&1 & GP=$!
sleep 1
DAY=$(date -u -d '+5 days' +%Y%m%d)
sed -e "s/MSG-0001/MSG-SEQ0000000/; s/WIZ-2026-0001/WIZ-SEQ0000000/g; s/20261203/$DAY/g" tests/golden/siu/s12-cardiology.hl7 > $T/s12.hl7
LG="./build/loadgen --port 29540 --cert $D/clinic-a.pem --key $D/clinic-a.key --cacert $D/ca.pem"
$LG -c 2 -m 4 -n 200 --path /hl7v2 --data $T/s12.hl7 > /dev/null
snap() { for t in /proc/$GP/task/*; do echo "$(basename $t) $(awk '{print $14+$15}' $t/stat)"; done; }
snap > $T/a
$LG -c 8 -m 32 -n ${N:-3000} --path /hl7v2 --data $T/s12.hl7 | tail -1
sleep 2
snap > $T/b
# threads in creation order: main, store writer, dispatcher, then one worker per core
join <(sort -n $T/a) <(sort -n $T/b) | sort -n | awk -v n=${N:-3000} '
  { d = $3 - $2; tot += d; name = NR == 1 ? "main" : NR == 2 ? "store writer" : NR == 3 ? "dispatcher" : "worker " (NR - 3);
    printf "%-13s %5d ticks = %5.0f us/msg\n", name, d, d * 10000 / n }
  END { printf "%-13s %5d ticks = %5.0f us/msg\n", "gateway", tot, tot * 10000 / n }'
kill $GP; pkill -f "data $T/sims"; wait 2>/dev/null; rm -rf $T
