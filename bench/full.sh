#!/usr/bin/env bash
# make bench: the full path against the transport baseline, side by side in
# one invocation. Full path = HL7 v2 SIU S12 over HTTP/2 + mutual TLS ->
# parse, validate (CeR rules), translate (siu-to-fhir.xsl), route, render for
# each backend (fhir-to-p1.xsl + FHIR JSON, fhir-to-apkolce.xsl), commit to
# SQLite (WAL, synchronous=FULL, group commit), answer after the backends
# answered (or at the deadline), fan out over HTTP/2 + mutual TLS to the
# P1 (with OAuth2) and AP-KOLCE simulators. Every message is different
# (loadgen numbers MSH-10 and the appointment id). The same visit as a FHIR
# JSON transaction Bundle (POST /fhir) runs too, for the dialect that skips
# the SIU mapping.
# Baseline = GET /healthz on the same gateway, same connections and streams.
# Then the cost of sealing the store at rest: the same S12 load alternating between this gateway and a
# second one with store.seal "off" (seal_cpu_ratio). Not a test. Last line: RESULT with the figures.
#
# Environment: DURATION seconds per run (10), CONNS (8), STREAMS (32),
# LIGHT_CONNS (1), LIGHT_STREAMS (4) for the latency run at lower load,
# SOAK seconds (0 = off; 300 for the memory-flat check, RSS sampled every 10 s); BASE_PORT.
# The simulators and the gateway are started by bench/fullpath.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
CONNS=${CONNS:-8}
STREAMS=${STREAMS:-32}
LIGHT_CONNS=${LIGHT_CONNS:-1}
LIGHT_STREAMS=${LIGHT_STREAMS:-4}
SOAK=${SOAK:-0}
. bench/fullpath.sh
HZ=$(getconf CLK_TCK)
cpu_ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
# thread_ticks PID: "name ticks" per thread (the gateway names its threads: cergw-worker1.., cergw-store,
# cergw-dispatch; the main thread is cergw), user + system
thread_ticks() { local t; for t in /proc/"$1"/task/*; do echo "$(tr ' ' _ <"$t/comm") $(awk '{print $14 + $15}' "$t/stat")"; done | sort; }
# per_thread BEFORE AFTER N: CPU microseconds per message of each thread between the two snapshots
per_thread() {
  join -a 2 -e 0 -o 0,1.2,2.2 <(echo "$1") <(echo "$2") |
    awk -v n="$3" -v hz="$HZ" '{ d = $3 - $2; printf "%s%s=%.0f", (NR > 1 ? " " : ""), $1, n ? d / hz / n * 1e6 : 0 }'
}
rss_kib() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
db() { sqlite3 -cmd '.timeout 10000' "$T/gw/cergw.db" "$1"; }
delivered_msgs() {
  db "select count(*) from messages m where not exists (select 1 from deliveries d where d.msg_id = m.id and d.state <> 1)"
}

echo "# cergw full path vs transport baseline on the same gateway; $CONNS conns x $STREAMS streams, ${DURATION}s each"
# warm up: OAuth token, connections to the backends, page cache
$LG -c 2 -m 4 -n 200 --path /hl7v2 --data "$T/s12.hl7" >/dev/null
rss0=$(rss_kib "$GW_PID")

base=$($LG -c "$CONNS" -m "$STREAMS" -D "$DURATION" --path /healthz | tail -1)
echo "baseline  GET /healthz:           $base"

# full NAME PATH BODY: one full-path run; sets acc_rate del_rate res
full() {
  local m0 d0 t0 t1 t2 m1 d1 acc del
  m0=$(db "select count(*) from messages")
  d0=$(delivered_msgs)
  local g0 s0 g1 s1
  g0=$(cpu_ticks "$GW_PID")
  s0=$(cpu_ticks "${SIM_PIDS[@]}")
  local th0 th1
  th0=$(thread_ticks "$GW_PID")
  t0=$(date +%s.%N)
  res=$($LG -c "$CONNS" -m "$STREAMS" -D "$DURATION" --path "$2" --data "$3" | tail -1)
  t1=$(date +%s.%N)
  # wait until the backlog is delivered (bounded), then count
  for _ in $(seq 1 600); do
    [ "$(db "select count(*) from deliveries where state = 0")" = 0 ] && break
    sleep 0.1
  done
  t2=$(date +%s.%N)
  g1=$(cpu_ticks "$GW_PID")
  s1=$(cpu_ticks "${SIM_PIDS[@]}")
  th1=$(thread_ticks "$GW_PID")
  m1=$(db "select count(*) from messages")
  d1=$(delivered_msgs)
  acc=$((m1 - m0))
  del=$((d1 - d0))
  acc_rate=$(awk -v n="$acc" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", n/(b-a)}')
  del_rate=$(awk -v n="$del" -v a="$t0" -v b="$t2" 'BEGIN{printf "%.0f", n/(b-a)}')
  echo "$1:"
  echo "  loadgen:                       $res"
  echo "  accepted (committed):          $acc in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')s = $acc_rate msg/s"
  echo "  delivered to every backend:    $del = $del_rate msg/s (backlog drained $(awk -v a="$t1" -v b="$t2" 'BEGIN{printf "%.1f", b-a}')s after the load)"
  cpu_us=$(awk -v t=$((g1 - g0)) -v n="$del" -v hz="$HZ" 'BEGIN{printf "%.0f", n ? t / hz / n * 1e6 : 0}')
  threads=$(per_thread "$th0" "$th1" "$del")
  echo "  gateway CPU per message by thread (us): $threads"
  echo "  CPU per message:               gateway $cpu_us us, simulators $(awk -v t=$((s1 - s0)) -v n="$del" -v hz="$HZ" 'BEGIN{printf "%.0f", t / hz / n * 1e6}') us (the rest of the 2 cores: load generator, kernel, other tenants)"
}
"$ROOT/build/cergw" translate --to fhir "$T/s12.hl7" >"$T/s12.json"
full "full path, FHIR JSON transaction (POST /fhir)" /fhir "$T/s12.json"
fhir_acc=$acc_rate fhir_del=$del_rate fhir_cpu=$cpu_us fhir_threads=$threads
full "full path, HL7 v2 SIU S12 (POST /hl7v2)" /hl7v2 "$T/s12.hl7"
full_res=$res s12_cpu=$cpu_us s12_threads=$threads
echo "gateway -> backend TLS connections open: P1 $(ss -Htn state established "( dport = :$P1 )" | wc -l), AP-KOLCE $(ss -Htn state established "( dport = :$KOLCE )" | wc -l) (HTTP/2, every delivery multiplexed on them)"
echo "deliveries in total: $(db "select count(*) from deliveries where state = 1"); P1 simulator: $(curl -s --cacert "$D/ca.pem" --cert "$D/operator.pem" --key "$D/operator.key" "https://localhost:$P1/_sim/stats")"

light=$($LG -c "$LIGHT_CONNS" -m "$LIGHT_STREAMS" -D "$DURATION" --path /hl7v2 --data "$T/s12.hl7" | tail -1)
echo "lighter load ($LIGHT_CONNS conn x $LIGHT_STREAMS streams): $light"
# pruning under load (retention): every message so far aged by 100 days behind the gateway's back, so the
# writer prunes them in 64-message steps (every 200 ms here) while the same lighter load runs; then the
# same load again with nothing left to prune. The writes' p99 of the two, side by side.
aged=$(db "select count(*) from messages")
db "update messages set received_ms = received_ms - 8640000000" >/dev/null
p0=$(grep -c event=store_pruned "$T/gw.log" || true)
prune_run=$($LG -c "$LIGHT_CONNS" -m "$LIGHT_STREAMS" -D "$DURATION" --path /hl7v2 --data "$T/s12.hl7" | tail -1)
p1=$(grep -c event=store_pruned "$T/gw.log" || true)
left=$(db "select count(*) from messages where length(original) > 0 and received_ms < $(($(date +%s) * 1000 - 86400000))")
for _ in $(seq 1 600); do [ "$(db "select count(*) from messages where length(original) > 0 and received_ms < $(($(date +%s) * 1000 - 86400000))")" = 0 ] && break; sleep 0.2; done
quiet_run=$($LG -c "$LIGHT_CONNS" -m "$LIGHT_STREAMS" -D "$DURATION" --path /hl7v2 --data "$T/s12.hl7" | tail -1)
echo "pruning under the lighter load ($aged messages aged, $((p1 - p0)) prune steps during the run, $left left after it): $prune_run"
echo "the same load with nothing to prune: $quiet_run"
prune_p99=$(sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p' <<<"$prune_run")
quiet_p99=$(sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p' <<<"$quiet_run")

if [ "$SOAK" -gt 0 ]; then
  echo "# soak: ${SOAK}s at the lighter load, gateway RSS every 10 s (KiB)"
  end=$(( $(date +%s) + SOAK ))
  $LG -c "$LIGHT_CONNS" -m "$LIGHT_STREAMS" -D "$SOAK" --path /hl7v2 --data "$T/s12.hl7" >"$T/soak.out" &
  lp=$!
  while [ "$(date +%s)" -lt "$end" ]; do printf '%s ' "$(rss_kib "$GW_PID")"; sleep 10; done
  wait $lp; echo; tail -1 "$T/soak.out"
fi
echo "gateway CPU per delivered message by thread (us): S12 [$s12_threads] FHIR [$fhir_threads]"
# sealing's cost (personal data at rest): the same S12 load, alternating (ABAB), on this gateway (content
# sealed, AES-256-GCM) and on a second one whose store keeps it in clear (store.seal "off")
GW2P=$((BASE + 4))
sed -e "s/127.0.0.1:$GWP/127.0.0.1:$GW2P/" -e "s|\"$T/gw\"|\"$T/gw2\"|" -e 's|"store": {|"store": {"seal": "off", |' \
  "$T/gw.json" >"$T/gw2.json"
./build/cergw serve --config "$T/gw2.json" >"$T/gw2.log" 2>&1 &
GW2_PID=$!
pids+=("$GW2_PID")
for _ in $(seq 1 100); do grep -q event=listening "$T/gw2.log" && break; sleep 0.05; done
LG2="./build/loadgen --port $GW2P --cert $D/clinic-a.pem --key $D/clinic-a.key --cacert $D/ca.pem"
$LG2 -c 2 -m 4 -n 200 --path /hl7v2 --data "$T/s12.hl7" >/dev/null
# seal_run PID DBDIR LOADGEN...: CPU microseconds per delivered message of one S12 run
seal_run() {
  local pid=$1 dbf=$2/cergw.db; shift 2
  local g0 d0 g1 d1
  g0=$(cpu_ticks "$pid"); d0=$(sqlite3 -cmd '.timeout 10000' "$dbf" "select count(*) from deliveries where state = 1")
  "$@" -c "$CONNS" -m "$STREAMS" -D "$DURATION" --path /hl7v2 --data "$T/s12.hl7" >/dev/null
  for _ in $(seq 1 600); do
    [ "$(sqlite3 -cmd '.timeout 10000' "$dbf" "select count(*) from deliveries where state = 0")" = 0 ] && break
    sleep 0.1
  done
  g1=$(cpu_ticks "$pid"); d1=$(sqlite3 -cmd '.timeout 10000' "$dbf" "select count(*) from deliveries where state = 1")
  awk -v t=$((g1 - g0)) -v n=$(((d1 - d0) / 2)) -v hz="$HZ" 'BEGIN{printf "%.0f", n ? t / hz / n * 1e6 : 0}'
}
sealed=() clear=()
for r in 1 2; do
  sealed+=("$(seal_run "$GW_PID" "$T/gw" $LG)")
  clear+=("$(seal_run "$GW2_PID" "$T/gw2" $LG2)")
done
seal_ratio=$(awk -v a="${sealed[0]}" -v b="${sealed[1]}" -v c="${clear[0]}" -v d="${clear[1]}" 'BEGIN{printf "%.3f", (a + b) / (c + d)}')
echo "sealing at rest, S12, gateway CPU per delivered message: sealed ${sealed[*]} us, in clear ${clear[*]} us: ratio $seal_ratio (target <= 1.05)"
rss1=$(rss_kib "$GW_PID")
echo "gateway RSS: ${rss0} KiB after warm-up, ${rss1} KiB at the end"
b_rps=$(sed -n 's/.*rps=\([0-9]*\).*/\1/p' <<<"$base")
echo "RESULT gw_cpu_us_per_s12=$s12_cpu gw_cpu_us_per_fhir=$fhir_cpu seal_cpu_ratio=$seal_ratio hl7_accepted_per_s=$acc_rate hl7_delivered_per_s=$del_rate fhir_delivered_per_s=$fhir_del $(sed -n 's/.*\(p50_ms=[0-9.]*\) \(p99_ms=[0-9.]*\).*/\1 \2/p' <<<"$full_res") light_$(sed -n 's/.*\(p99_ms=[0-9.]*\).*/\1/p' <<<"$light") prune_p99_ms=$prune_p99 noprune_p99_ms=$quiet_p99 baseline_rps=$b_rps ratio_delivered_to_baseline=$(awk -v a="$del_rate" -v b="$b_rps" 'BEGIN{printf "%.3f", a/b}')"
