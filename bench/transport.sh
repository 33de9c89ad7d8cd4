#!/usr/bin/env bash
# make bench-transport: the gateway's cheapest request path (GET /healthz over
# HTTP/2 + mutual TLS) against nghttpd --verify-client serving a static body
# of the same size, with the same certificates, the same load generator and
# the same load, run interleaved. Also: TLS handshakes per second with client
# certificates (openssl s_time) and resident memory per idle connection.
# Not a test: it prints figures; the last line is the request-rate ratio.
#
# Environment: ROUNDS (default 3), DURATION seconds per run (default 5),
# CONNS (16), STREAMS (32), IDLE_CONNS (1000).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
D=$ROOT/certs/dev
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-16}
STREAMS=${STREAMS:-32}
IDLE_CONNS=${IDLE_CONNS:-1000}
GW_PORT=${GW_PORT:-28443}
NG_PORT=${NG_PORT:-28444}
T=$(mktemp -d /tmp/cergw-bench.XXXXXX)
ulimit -n 8192 || true
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT

cat >"$T/gw.json" <<EOF
{ "listen": "127.0.0.1:$GW_PORT", "workers": 2, "log_level": "info",
  "tls": { "cert": "$D/server.pem", "key": "$D/server.key", "client_ca": "$D/ca.pem", "crl": "$D/crl.pem" },
  "limits": { "max_connections": 20000, "idle_timeout_ms": 600000 } }
EOF
./build/cergw serve --config "$T/gw.json" >"$T/gw.log" 2>&1 &
GW_PID=$!; pids+=("$GW_PID")
for _ in $(seq 1 100); do grep -q event=listening "$T/gw.log" && break; sleep 0.05; done

# a static body of exactly the size /healthz answers with
size=$(curl -sS --cacert "$D/ca.pem" --cert "$D/clinic-a.pem" --key "$D/clinic-a.key" -o /dev/null -w '%{size_download}' "https://localhost:$GW_PORT/healthz")
mkdir -p "$T/www"
head -c "$size" /dev/zero | tr '\0' 'x' >"$T/www/healthz"
nghttpd --verify-client -n 2 -d "$T/www" "$NG_PORT" "$D/server.key" "$D/server.pem" >/dev/null 2>&1 &
NG_PID=$!; pids+=("$NG_PID")
sleep 0.5

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

# run NAME PORT PID -> prints "rps cpu_s" and records
run_load() {
  local port=$1 pid=$2 c0 c1 out
  c0=$(cpu_ticks "$pid")
  out=$(./build/loadgen --port "$port" --cert "$D/clinic-a.pem" --key "$D/clinic-a.key" --cacert "$D/ca.pem" \
    -c "$CONNS" -m "$STREAMS" -D "$DURATION" --path /healthz | tail -1)
  c1=$(cpu_ticks "$pid")
  echo "$out cpu_s=$(awk -v a="$c0" -v b="$c1" -v hz="$HZ" 'BEGIN{printf "%.2f", (b-a)/hz}')"
}

echo "# request rate: GET /healthz (${size}-byte body), h2 + client certificate, $CONNS connections x $STREAMS streams, ${DURATION}s per run, $ROUNDS interleaved rounds"
gw_total=0; ng_total=0; gw_cpu=0; ng_cpu=0
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then order="gw ng"; else order="ng gw"; fi
  for who in $order; do
    if [ "$who" = gw ]; then line=$(run_load "$GW_PORT" "$GW_PID"); else line=$(run_load "$NG_PORT" "$NG_PID"); fi
    rps=$(sed -E 's/.*rps=([0-9]+).*/\1/' <<<"$line"); cpu=$(sed -E 's/.*cpu_s=([0-9.]+).*/\1/' <<<"$line")
    printf 'round %d %-8s %s\n' "$r" "$([ "$who" = gw ] && echo cergw || echo nghttpd)" "$line"
    if [ "$who" = gw ]; then gw_total=$((gw_total + rps)); gw_cpu=$(awk -v a="$gw_cpu" -v b="$cpu" 'BEGIN{print a+b}');
    else ng_total=$((ng_total + rps)); ng_cpu=$(awk -v a="$ng_cpu" -v b="$cpu" 'BEGIN{print a+b}'); fi
  done
done
gw_rps=$((gw_total / ROUNDS)); ng_rps=$((ng_total / ROUNDS))
gw_eff=$(awk -v r="$gw_total" -v d="$DURATION" -v c="$gw_cpu" 'BEGIN{printf "%.0f", r*d/c}')
ng_eff=$(awk -v r="$ng_total" -v d="$DURATION" -v c="$ng_cpu" 'BEGIN{printf "%.0f", r*d/c}')
echo "cergw:   $gw_rps requests/s (mean), $gw_eff requests per server CPU-second"
echo "nghttpd: $ng_rps requests/s (mean), $ng_eff requests per server CPU-second"
echo "efficiency ratio (requests per CPU-second, cergw/nghttpd): $(awk -v a="$gw_eff" -v b="$ng_eff" 'BEGIN{printf "%.3f", a/b}')"

echo "# TLS handshakes with a client certificate (openssl s_time -new, ${DURATION}s each, interleaved)"
hs() {
  openssl s_time -connect "127.0.0.1:$1" -cert "$D/clinic-a.pem" -key "$D/clinic-a.key" -CAfile "$D/ca.pem" \
    -new -time "$DURATION" 2>/dev/null | awk '/connections in [0-9.]+ real seconds/ {printf "%.0f", $1/$4}'
}
gw_hs=0; ng_hs=0
for r in $(seq 1 "$ROUNDS"); do
  a=$(hs "$GW_PORT"); b=$(hs "$NG_PORT")
  echo "round $r cergw $a/s nghttpd $b/s"
  gw_hs=$((gw_hs + a)); ng_hs=$((ng_hs + b))
done
echo "handshakes/s: cergw $((gw_hs / ROUNDS)) nghttpd $((ng_hs / ROUNDS)) ratio $(awk -v a="$gw_hs" -v b="$ng_hs" 'BEGIN{printf "%.3f", a/b}')"

echo "# resident memory with $IDLE_CONNS idle HTTP/2 connections (settings exchanged, no requests)"
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
idle_mem() { # port pid name
  local before after
  before=$(rss "$2")
  ./build/loadgen --port "$1" --cert "$D/clinic-a.pem" --key "$D/clinic-a.key" --cacert "$D/ca.pem" \
    -c "$IDLE_CONNS" --idle 8 >"$T/idle.out" 2>&1 &
  local lp=$!
  for _ in $(seq 1 300); do grep -q IDLE "$T/idle.out" && break; sleep 0.05; done
  sleep 1
  after=$(rss "$2")
  echo "$3: $(cat "$T/idle.out" | head -1), RSS before ${before} KiB after ${after} KiB: $(( (after - before) * 1024 / IDLE_CONNS / 1024 )).$(( ((after - before) * 1024 / IDLE_CONNS % 1024) * 10 / 1024 )) KiB per connection"
  wait $lp || true
}
idle_mem "$GW_PORT" "$GW_PID" cergw
idle_mem "$NG_PORT" "$NG_PID" nghttpd

echo "transport: cergw $gw_rps req/s, nghttpd $ng_rps req/s, ratio $(awk -v a="$gw_rps" -v b="$ng_rps" 'BEGIN{printf "%.3f", a/b}')"
