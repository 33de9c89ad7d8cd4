# Sourced by bench/full.sh and bench/threads.sh: starts the P1 (OAuth2), SIMP and AP-KOLCE
# simulators and a gateway with a store in a temporary directory, on ports BASE..BASE+3,
# and writes the S12 message loadgen numbers (MSH-10 and the appointment id per request).
# Sets: ROOT D T GWP P1 SIMP KOLCE GW_PID SIM_PIDS pids LG; the caller's EXIT trap is set
# here (everything started is stopped, the directory removed).
# Environment: BASE_PORT (29440), LOGLEVEL (info).
ROOT=$PWD
D=$ROOT/certs/dev
BASE=${BASE_PORT:-29440}
GWP=$BASE P1=$((BASE + 1)) SIMP=$((BASE + 2)) KOLCE=$((BASE + 3))
T=$(mktemp -d /tmp/cergw-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT
ulimit -n 8192 || true

SIM_PIDS=()
for s in p1:$P1 simp:$SIMP apkolce:$KOLCE; do
  ./build/cergw sim --role "${s%%:*}" --listen "127.0.0.1:${s##*:}" --data "$T/sims" >"$T/sim-${s%%:*}.log" 2>&1 &
  pids+=($!)
  SIM_PIDS+=($!)
done
cat >"$T/delivery.json" <<EOF2
{ "answer_deadline_ms": 2000,
  "client_tls": {"cert": "$D/gateway-out.pem", "key": "$D/gateway-out.key", "ca": "$D/ca.pem"},
  "defaults": {"timeout_ms": 5000, "concurrency": 256},
  "backends": {
    "p1": {"kind": "p1", "url": "https://localhost:$P1/fhir", "token_url": "https://localhost:$P1/oauth2/token"},
    "simp": {"kind": "simp", "url": "https://localhost:$SIMP/simp"},
    "apkolce": {"kind": "apkolce", "url": "https://localhost:$KOLCE/apkolce"} },
  "routes": [
    {"name": "cer", "match": "/f:*", "backends": ["p1"]},
    {"name": "cardiology-waiting-list", "backends": ["apkolce"],
     "match": "//f:specialty/f:coding[f:code/@value >= 1100 and f:code/@value <= 1105]"},
    {"name": "screening", "backends": ["simp"],
     "match": "//f:specialty/f:coding[f:code/@value = '7910' or f:code/@value = '7912']"} ] }
EOF2
cat >"$T/gw.json" <<EOF2
{ "listen": "127.0.0.1:$GWP", "mllp_listen": "", "workers": 2, "log_level": "${LOGLEVEL:-info}",
  "data_dir": "$T/gw", "delivery": "$T/delivery.json", "store": {"retention": {"check_ms": 200}},
  "tls": { "cert": "$D/server.pem", "key": "$D/server.key", "client_ca": "$D/ca.pem", "crl": "$D/crl.pem" },
  "limits": { "max_connections": 20000, "idle_timeout_ms": 600000 } }
EOF2
./build/cergw serve --config "$T/gw.json" >"$T/gw.log" 2>&1 &
GW_PID=$!
pids+=("$GW_PID")
for _ in $(seq 1 100); do grep -q event=listening "$T/gw.log" && break; sleep 0.05; done
sleep 0.5

DAY=$(date -u -d '+5 days' +%Y%m%d)
sed -e "s/MSG-0001/MSG-SEQ0000000/; s/WIZ-2026-0001/WIZ-SEQ0000000/g; s/20261203/$DAY/g" \
  tests/golden/siu/s12-cardiology.hl7 >"$T/s12.hl7"
LG="./build/loadgen --port $GWP --cert $D/clinic-a.pem --key $D/clinic-a.key --cacert $D/ca.pem"
