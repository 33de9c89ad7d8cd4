#!/usr/bin/env bash
# The memory attack of issue 10 (finding 3), as a measurement, not a test: CONNS HTTP/2 connections
# (curl --parallel, multiplexed) each open STREAMS streams that upload BYTES bytes of body and then
# never end the stream (the body comes from a FIFO held open). Prints the gateway's peak RSS while the
# streams hang, against its RSS before. Usage: bench/memory-attack.sh [BUILD_DIR] (default build).
# Environment: CONNS (2), STREAMS (64), BYTES (3000000), HOLD seconds (6), BASE_PORT (29640).
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
ROOT=$PWD
D=$ROOT/certs/dev
CONNS=${CONNS:-2} STREAMS=${STREAMS:-64} BYTES=${BYTES:-3000000} HOLD=${HOLD:-6}
PORT=${BASE_PORT:-29640}
T=$(mktemp -d /tmp/cergw-memattack.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT
cat >"$T/gw.json" <<EOF
{ "listen": "127.0.0.1:$PORT", "mllp_listen": "", "workers": 2, "log_level": "warn", "data_dir": "$T/data",
  "tls": {"cert": "$D/server.pem", "key": "$D/server.key", "client_ca": "$D/ca.pem", "crl": "$D/crl.pem"},
  "limits": {"max_concurrent_streams": 128, "read_timeout_ms": 600000, "idle_timeout_ms": 600000} }
EOF
"$BUILD/cergw" serve --config "$T/gw.json" >"$T/gw.log" 2>&1 &
gw=$!
pids+=("$gw")
for _ in $(seq 1 100); do grep -q event=listening "$T/gw.log" && break; sleep 0.05; done
rss() { awk '/VmRSS/{print $2}' "/proc/$gw/status"; }
rss0=$(rss)
for c in $(seq 1 "$CONNS"); do
  args=()
  for s in $(seq 1 "$STREAMS"); do
    f=$T/f-$c-$s
    mkfifo "$f"
    (head -c "$BYTES" /dev/zero; sleep $((HOLD + 5))) >"$f" &
    pids+=($!)
    args+=(-T "$f" "https://localhost:$PORT/fhir/\$validate")
  done
  curl -sS --http2 -Z --parallel-max "$STREAMS" --cacert "$D/ca.pem" --cert "$D/clinic-a.pem" --key "$D/clinic-a.key" \
    -X POST -o /dev/null "${args[@]}" >/dev/null 2>&1 &
  pids+=($!)
done
peak=$rss0
end=$(( $(date +%s) + HOLD ))
while [ "$(date +%s)" -lt "$end" ]; do
  r=$(rss)
  [ "$r" -gt "$peak" ] && peak=$r
  sleep 0.2
done
refused=$(curl -sS --cacert "$D/ca.pem" --cert "$D/clinic-a.pem" --key "$D/clinic-a.key" "https://localhost:$PORT/metrics" |
  sed -n 's/^cergw_streams_refused_total \([0-9]*\)/\1/p')
echo "RESULT build=$BUILD conns=$CONNS streams=$STREAMS bytes=$BYTES rss_before_kib=$rss0 rss_peak_kib=$peak growth_mib=$(( (peak - rss0) / 1024 )) streams_refused=${refused:-n/a}"
