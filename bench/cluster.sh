#!/usr/bin/env bash
# make bench-cluster: the full path (HL7 v2 SIU S12 over HTTP/2 + mutual TLS -> validate, translate,
# route, commit, deliver to the P1 and AP-KOLCE simulators) on the SQLite store with one instance, then on
# one PostgreSQL with 1, 2 and 3 instances, each fed by its own loadgen (CONNS x STREAMS split between
# them). For each: delivered msg/s (every delivery of the message delivered, counted in the store), the
# worst p99 of the loadgens, gateway CPU per delivered message (all instances), the ratio to SQLite, and
# the checks that nothing acknowledged was lost or delivered twice. Not a test. Last line (keys stable):
#   sqlite_per_s=N pg1_per_s=N pg2_per_s=N pg3_per_s=N lost=N duplicated=N
# Environment: DURATION seconds per run (10), CONNS (6), STREAMS (16), BASE_PORT (29540).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
CONNS=${CONNS:-6}
STREAMS=${STREAMS:-16}
ROOT=$PWD
D=$ROOT/certs/dev
BASE=${BASE_PORT:-29540}
P1=$((BASE + 1)) KOLCE=$((BASE + 2))
. tests/lib/pg.sh
T=$(mktemp -d /tmp/cergw-bcl.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$T"
  pg_stop
}
trap cleanup EXIT
ulimit -n 8192 || true
pg_available || { echo "bench-cluster: PostgreSQL is not installed: run 'make deps'"; exit 1; }
pg_start
HZ=$(getconf CLK_TCK)
cpu_ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }

SIM_PIDS=()
for s in p1:$P1 apkolce:$KOLCE; do
  ./build/cergw sim --role "${s%%:*}" --listen "127.0.0.1:${s##*:}" --data "$T/sims" >"$T/sim-${s%%:*}.log" 2>&1 &
  pids+=($!)
  SIM_PIDS+=($!)
done
cat >"$T/delivery.json" <<EOF
{ "answer_deadline_ms": 2000,
  "client_tls": {"cert": "$D/gateway-out.pem", "key": "$D/gateway-out.key", "ca": "$D/ca.pem"},
  "defaults": {"timeout_ms": 5000, "concurrency": 256},
  "backends": {
    "p1": {"kind": "p1", "url": "https://localhost:$P1/fhir", "token_url": "https://localhost:$P1/oauth2/token"},
    "apkolce": {"kind": "apkolce", "url": "https://localhost:$KOLCE/apkolce"} },
  "routes": [
    {"name": "cer", "match": "/f:*", "backends": ["p1"]},
    {"name": "cardiology-waiting-list", "backends": ["apkolce"],
     "match": "//f:specialty/f:coding[f:code/@value >= 1100 and f:code/@value <= 1105]"} ] }
EOF
DAY=$(date -u -d '+5 days' +%Y%m%d)
LG() { # port: loadgen against that instance
  ./build/loadgen --port "$1" --cert "$D/clinic-a.pem" --key "$D/clinic-a.key" --cacert "$D/ca.pem" "${@:2}"
}
store_conf() { # kind db instance
  if [ "$1" = sqlite ]; then echo '{}'; else echo "{\"backend\": \"postgresql\", \"postgresql\": \"$2\", \"instance\": \"$3\"}"; fi
}
GWS=()
start_gw() { # n kind db: instance n on port BASE+10+n
  local port=$((BASE + 10 + $1))
  cat >"$T/gw-$1.json" <<EOF
{ "listen": "127.0.0.1:$port", "mllp_listen": "", "workers": 2, "log_level": "warn",
  "data_dir": "$T/gw-$1-$2", "delivery": "$T/delivery.json", "store": $(store_conf "$2" "${3:-}" "bench-$1"),
  "tls": { "cert": "$D/server.pem", "key": "$D/server.key", "client_ca": "$D/ca.pem", "crl": "$D/crl.pem" },
  "limits": { "max_connections": 20000, "idle_timeout_ms": 600000 } }
EOF
  ./build/cergw serve --config "$T/gw-$1.json" >"$T/gw-$1.log" 2>&1 &
  GWS+=($!)
  pids+=($!)
  for _ in $(seq 1 100); do grep -q event=listening "$T/gw-$1.log" && break; sleep 0.05; done
  sed -e "s/MSG-0001/MSG-$1SEQ0000000/; s/WIZ-2026-0001/WIZ-$1SEQ0000000/g; s/20261203/$DAY/g" \
    tests/golden/siu/s12-cardiology.hl7 >"$T/s12-$1.hl7"
  sed -e "s/MSG-$1SEQ/MSG-W$1SEQ/; s/WIZ-$1SEQ/WIZ-W$1SEQ/g" "$T/s12-$1.hl7" >"$T/warm-$1.hl7" # ids of their own
  LG "$port" -c 1 -m 4 -n 100 --path /hl7v2 --data "$T/warm-$1.hl7" >/dev/null # warm: token, connections
}
stop_gws() { for p in "${GWS[@]}"; do kill -TERM "$p"; wait "$p" 2>/dev/null || true; done; GWS=(); }
# q KIND DB SQL: one value from the store of this run
q() { if [ "$1" = sqlite ]; then sqlite3 -cmd '.timeout 10000' "$T/gw-1-sqlite/cergw.db" "$3"; else psql "$2" -X -q -t -A -c "$3"; fi; }
LOST=0 DUP=0
# run NAME KIND INSTANCES: one measured run; sets per_s
run() {
  local name=$1 kind=$2 n=$3 db=
  [ "$kind" = pg ] && db=$(pg_db "bench_$name")
  for i in $(seq 1 "$n"); do start_gw "$i" "$([ "$kind" = pg ] && echo pg || echo sqlite)" "$db"; done
  local k=$([ "$kind" = pg ] && echo pg || echo sqlite)
  local m0 d0 u0 g0 t0 t1 t2
  m0=$(q "$k" "$db" "select count(*) from messages")
  u0=$(curl -s --cacert "$D/ca.pem" --cert "$D/operator.pem" --key "$D/operator.key" "https://localhost:$P1/_sim/stats" | sed -n 's/.*"unique":\([0-9]*\).*/\1/p')
  d0=$(q "$k" "$db" "select count(*) from deliveries where backend = 'p1' and state = 1")
  g0=$(cpu_ticks "${GWS[@]}")
  local dbp=() b0=0 b1=0
  [ "$kind" = pg ] && mapfile -t dbp < <(pgrep -f "postgres: cergw bench_$name " || true)
  [ ${#dbp[@]} -gt 0 ] && b0=$(cpu_ticks "${dbp[@]}")
  t0=$(date +%s.%N)
  local lgp=() c=$(( (CONNS + n - 1) / n ))
  for i in $(seq 1 "$n"); do
    LG $((BASE + 10 + i)) -c "$c" -m "$STREAMS" -D "$DURATION" --path /hl7v2 --data "$T/s12-$i.hl7" >"$T/lg-$i.out" &
    lgp+=($!)
  done
  wait "${lgp[@]}"
  t1=$(date +%s.%N)
  for _ in $(seq 1 600); do
    [ "$(q "$k" "$db" "select count(*) from deliveries where state in (0, 4)")" = 0 ] && break
    sleep 0.1
  done
  t2=$(date +%s.%N)
  local g1 m1 d1 u1 acked ok p99
  g1=$(cpu_ticks "${GWS[@]}")
  [ ${#dbp[@]} -gt 0 ] && b1=$(cpu_ticks "${dbp[@]}")
  m1=$(q "$k" "$db" "select count(*) from messages")
  d1=$(q "$k" "$db" "select count(*) from messages m where not exists (select 1 from deliveries d where d.msg_id = m.id and d.state <> 1)")
  local p1d
  p1d=$(( $(q "$k" "$db" "select count(*) from deliveries where backend = 'p1' and state = 1") - d0 ))
  u1=$(curl -s --cacert "$D/ca.pem" --cert "$D/operator.pem" --key "$D/operator.key" "https://localhost:$P1/_sim/stats" | sed -n 's/.*"unique":\([0-9]*\).*/\1/p')
  acked=$(cat "$T"/lg-*.out | sed -n 's/.*2xx=\([0-9]*\).*/\1/p' | paste -sd+ | bc)
  p99=$(cat "$T"/lg-*.out | sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p' | sort -g | tail -1)
  local stored=$((m1 - m0))
  # acknowledged (2xx) but not stored: lost; P1 holding more than one copy of a delivery: duplicated
  [ "$acked" -gt "$stored" ] && LOST=$((LOST + acked - stored))
  [ $((u1 - u0)) -ne "$p1d" ] && DUP=$((DUP + (u1 - u0 > p1d ? u1 - u0 - p1d : 0)))
  per_s=$(awk -v n="$d1" -v a="$t0" -v b="$t2" 'BEGIN{printf "%.0f", n/(b-a)}')
  local cpu
  cpu=$(awk -v t=$((g1 - g0)) -v n="$d1" -v hz="$HZ" 'BEGIN{printf "%.0f", n ? t / hz / n * 1e6 : 0}')
  echo "$name: $n instance(s) on $k: acknowledged $acked, stored $stored, delivered $d1 = $per_s msg/s" \
    "(backlog drained $(awk -v a="$t1" -v b="$t2" 'BEGIN{printf "%.1f", b-a}')s after the load), worst p99 $p99 ms," \
    "gateway CPU $cpu us per delivered message, PostgreSQL backends' CPU" \
    "$(awk -v t=$((b1 - b0)) -v n="$d1" -v hz="$HZ" 'BEGIN{printf "%.0f", n ? t / hz / n * 1e6 : 0}') us, P1 copies $((u1 - u0)) of $p1d deliveries"
  eval "${name}_cpu=$cpu ${name}_p99=$p99"
  stop_gws
}
echo "# cergw cluster: SQLite (one instance) vs PostgreSQL with 1, 2 and 3 instances; ${CONNS} conns x ${STREAMS} streams in all, ${DURATION}s each"
run sqlite sqlite 1; sqlite_per_s=$per_s
run pg1 pg 1; pg1_per_s=$per_s
run pg2 pg 2; pg2_per_s=$per_s
run pg3 pg 3; pg3_per_s=$per_s
for r in pg1 pg2 pg3; do
  v=${r}_per_s c=${r}_cpu
  echo "ratio to SQLite: $r $(awk -v a="${!v}" -v b="$sqlite_per_s" 'BEGIN{printf "%.2f", a/b}') x the throughput, $(awk -v a="${!c}" -v b="$sqlite_cpu" 'BEGIN{printf "%.2f", a/b}') x the gateway CPU per message"
done
echo "PostgreSQL commits: $(psql "$PG_URL" -X -q -t -A -c "select sum(xact_commit) from pg_stat_database where datname like 'bench_%'") transactions in the three PostgreSQL runs"
echo "sqlite_per_s=$sqlite_per_s pg1_per_s=$pg1_per_s pg2_per_s=$pg2_per_s pg3_per_s=$pg3_per_s lost=$LOST duplicated=$DUP"
