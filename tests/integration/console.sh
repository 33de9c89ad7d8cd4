#!/usr/bin/env bash
# The operators' console in a real browser: the gateway with its console listener, the P1, SIMP and
# AP-KOLCE simulators, a message sent through the gateway and a dead delivery made on purpose; then
# tests/console/console.mjs drives Debian's Chromium through playwright-core (tools/node).
# Usage: console.sh BUILD_DIR [SCREENSHOT_DIR]. Prints "N passed, N failed"; exits 1 on failure.
set -u
BUILD=${1:-build}
SHOTS=${2:-}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
GW=$ROOT/$BUILD/cergw
D=$ROOT/certs/dev
T=$(mktemp -d /tmp/cergw-console.XXXXXX)
B=$(( 40000 + ($$ % 3990) )) # port bands: see tests/integration/run.sh
GWP=$B CP=$((B + 1)) P1=$((B + 2)) SIMP=$((B + 3)) KOLCE=$((B + 4))
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$T"
}
[ -n "${KEEP:-}" ] || trap cleanup EXIT
fail_out() { echo "FAIL - $1"; echo "0 passed, 1 failed"; exit 1; }
CHROMIUM=$(command -v chromium || true)
[ -n "$CHROMIUM" ] || fail_out "Chromium is not installed (Debian package chromium): run 'make deps'"
[ -f tools/node/node_modules/playwright-core/package.json ] || fail_out "playwright-core is not installed in tools/node: run 'make deps'"

for s in p1:$P1 simp:$SIMP apkolce:$KOLCE; do
  "$GW" sim --role "${s%%:*}" --listen "127.0.0.1:${s##*:}" --data "$T/sims" >>"$T/sim-${s%%:*}.log" 2>&1 &
  pids+=($!)
done
cat >"$T/delivery.json" <<EOF
{ "answer_deadline_ms": 1500,
  "client_tls": {"cert": "$D/gateway-out.pem", "key": "$D/gateway-out.key", "ca": "$D/ca.pem"},
  "defaults": {"timeout_ms": 3000, "backoff_ms": 50, "max_backoff_ms": 200},
  "backends": {
    "p1": {"kind": "p1", "url": "https://localhost:$P1/fhir", "token_url": "https://localhost:$P1/oauth2/token", "client_id": "cergw-test"},
    "simp": {"kind": "simp", "url": "https://localhost:$SIMP/simp", "max_attempts": 2},
    "apkolce": {"kind": "apkolce", "url": "https://localhost:$KOLCE/apkolce"} },
  "routes": [
    {"name": "cer", "match": "/f:*", "backends": ["p1"]},
    {"name": "cardiology-waiting-list", "backends": ["apkolce"],
     "match": "//f:specialty/f:coding[f:code/@value >= 1100 and f:code/@value <= 1105]"},
    {"name": "screening", "backends": ["simp"],
     "match": "//f:specialty/f:coding[f:code/@value = '7910' or f:code/@value = '7912']"} ] }
EOF
"$GW" store keygen "$T/store.key" console-1 >/dev/null
cat >"$T/gw.json" <<EOF
{ "listen": "127.0.0.1:$GWP", "mllp_listen": "", "workers": 2, "data_dir": "$T/gw", "delivery": "$T/delivery.json",
  "console_listen": "127.0.0.1:$CP", "console": {"token_file": "$D/console.token", "root": "$ROOT/console"},
  "store": {"key_file": "$T/store.key"},
  "tls": {"cert": "$D/server.pem", "key": "$D/server.key", "client_ca": "$D/ca.pem", "crl": "$D/crl.pem"} }
EOF
"$GW" serve --config "$T/gw.json" >>"$T/gw.log" 2>&1 &
GW_PID=$!
pids+=($GW_PID)
for _ in $(seq 1 200); do
  curl -s --max-time 1 --cacert "$D/ca.pem" --cert "$D/clinic-a.pem" --key "$D/clinic-a.key" "https://localhost:$GWP/healthz" >/dev/null 2>&1 && break
  sleep 0.05
done
C=(curl -s --max-time 15 --cacert "$D/ca.pem")
clinic() { "${C[@]}" --cert "$D/clinic-a.pem" --key "$D/clinic-a.key" "https://localhost:$GWP$1" "${@:2}"; }
sim() { "${C[@]}" --cert "$D/operator.pem" --key "$D/operator.key" "https://localhost:$1$2" "${@:3}"; }
for _ in $(seq 1 100); do sim $SIMP /_sim/stats >/dev/null 2>&1 && sim $P1 /_sim/stats >/dev/null 2>&1 && break; sleep 0.05; done

# a visit through the gateway (found in the outbox by its MSH-10), and a screening visit whose SIMP delivery
# dies (SIMP failing, max_attempts 2) for the console to retry
DAY=$(date -u -d '+5 days' +%Y%m%d)
MSH10=MSG-CONSOLE-$$
sed -e "s/MSG-0001/$MSH10/; s/WIZ-2026-0001/WIZ-C-$$/g; s/20261203/$DAY/g" tests/golden/siu/s12-cardiology.hl7 >"$T/s12.hl7"
ack=$(clinic /hl7v2 -H 'content-type: application/hl7-v2' --data-binary @"$T/s12.hl7")
grep -q 'MSA|AA' <<<"$ack" || fail_out "the visit was not accepted: ${ack:0:200}"
sim $SIMP "/_sim/control?mode=fail" -X POST >/dev/null
sed -e "s/MSG-0001/MSG-SCR-$$/; s/WIZ-2026-0001/WIZ-S-$$/g; s/20261203/$DAY/g; s/1100^Poradnia kardiologiczna/7910^Poradnia/" \
  tests/golden/siu/s12-cardiology.hl7 >"$T/s12-scr.hl7"
clinic /hl7v2 -H 'content-type: application/hl7-v2' --data-binary @"$T/s12-scr.hl7" >/dev/null
for _ in $(seq 1 100); do
  "${C[@]}" --cert "$D/operator.pem" --key "$D/operator.key" "https://localhost:$CP/console/api/outbox?state=dead" | grep -q '"backend":"simp"' && break
  sleep 0.1
done

mkdir -p "$T/out"
[ -n "$SHOTS" ] && mkdir -p "$SHOTS"
ROOT=$ROOT CONSOLE_PORT=$CP SIMP_PORT=$SIMP P1_PORT=$P1 GW_PORT=$GWP DAY=$DAY MSH10=$MSH10 GW_LOG=$T/gw.log OUT=$T/out SHOTS=$SHOTS CHROMIUM=$CHROMIUM \
  node tests/console/console.mjs
rc=$?
[ -f "$T/out/paste-100k-ms" ] && echo "CONSOLE paste_100k_ms=$(cat "$T/out/paste-100k-ms")"
kill -TERM "$GW_PID"; wait "$GW_PID"; grc=$?
if [ "$grc" = 0 ]; then echo "ok   - the gateway with its console stops cleanly on SIGTERM (exit 0; under ASan: no leak)"
else echo "FAIL - the gateway with its console stops cleanly on SIGTERM: exit $grc"; rc=1; fi
grep -h 'ERROR: AddressSanitizer\|runtime error\|LeakSanitizer' "$T/gw.log" && { echo "FAIL - sanitizer reports in the gateway's log"; rc=1; }
exit $rc
