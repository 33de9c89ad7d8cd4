#!/usr/bin/env bash
# Cluster tests: three gateway instances sharing one real PostgreSQL (a throwaway server from Debian's
# package, tests/lib/pg.sh), the backend simulators behind them. Load spread over the three; kill -9 of
# one mid-run (every acknowledged message delivered exactly once and in per-resource order, its
# deliveries taken over); the same idempotency key sent to two instances at once; two bookings of one
# free slot through two instances; the database crashed and restarted under the running gateways.
# Usage: cluster.sh BUILD_DIR. Prints "N passed, N failed" and the kill -9 figures; exits 1 on failure.
set -u
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
. tests/lib/pg.sh
. tests/lib/check.sh
GW=$ROOT/$BUILD/cergw
CLI=$ROOT/build/cergw
D=$ROOT/certs/dev
T=$(mktemp -d /tmp/cergw-cl.XXXXXX)
B=$(( 36000 + ($$ % 3980) )) # port bands: see tests/integration/run.sh
P1=$((B + 6)) SIMP=$((B + 7)) KOLCE=$((B + 8)) CLIN=$((B + 9))
LEASE_MS=2000
declare -A GW_PID SIM_PID
cleanup() {
  for n in "${!GW_PID[@]}"; do kill -TERM "${GW_PID[$n]}" 2>/dev/null; done
  for r in "${!SIM_PID[@]}"; do kill -TERM "${SIM_PID[$r]}" 2>/dev/null; done
  wait 2>/dev/null
  [ -n "${KEEP_LOGS:-}" ] && cat "$T"/gw-*.log >/tmp/last-cluster.log
  rm -rf "$T"
  pg_stop
}
trap cleanup EXIT

if ! pg_available; then
  echo "FAIL - PostgreSQL is not installed (Debian package postgresql): run 'make deps'"
  echo "0 passed, 1 failed"
  exit 1
fi
pg_start || { echo "FAIL - the test PostgreSQL did not start"; exit 1; }
PGU=$(pg_db cergw_cluster) || exit 1
db() { psql "$PGU" -X -q -t -A -c "$1"; }
export -f db
export PGU

"$GW" store keygen "$T/store.key" cluster-1 >/dev/null
cat >"$T/delivery.json" <<EOF
{
  "answer_deadline_ms": 300,
  "client_tls": {"cert": "$D/gateway-out.pem", "key": "$D/gateway-out.key", "ca": "$D/ca.pem"},
  "defaults": {"timeout_ms": 5000, "max_attempts": 1000, "backoff_ms": 50, "max_backoff_ms": 400, "concurrency": 64},
  "backends": {
    "p1": {"kind": "p1", "url": "https://localhost:$P1/fhir", "token_url": "https://localhost:$P1/oauth2/token",
           "client_id": "cergw-test"},
    "simp": {"kind": "simp", "url": "https://localhost:$SIMP/simp"},
    "apkolce": {"kind": "apkolce", "url": "https://localhost:$KOLCE/apkolce"}
  },
  "routes": [
    {"name": "cer", "match": "/f:*", "backends": ["p1"]},
    {"name": "cardiology-waiting-list", "backends": ["apkolce"],
     "match": "//f:specialty/f:coding[f:code/@value >= 1100 and f:code/@value <= 1105]"}
  ],
  "clinics": {"000000012345": {"notify": "clinic-soap", "url": "https://localhost:$CLIN/clinic/000000012345"}}
}
EOF
for n in 1 2 3; do
  cat >"$T/gw-$n.json" <<EOF
{
  "listen": "127.0.0.1:$((B + n - 1))", "workers": 2, "log_level": "info", "data_dir": "$T/gw-$n",
  "console_listen": "127.0.0.1:$((B + 10 + n))", "console": {"root": "$ROOT/console"},
  "delivery": "$T/delivery.json",
  "store": {"backend": "postgresql", "postgresql": "$PGU", "instance": "node-$n", "lease_ms": $LEASE_MS,
            "key_file": "$T/store.key"},
  "tls": {"cert": "$D/server.pem", "key": "$D/server.key", "client_ca": "$D/ca.pem", "crl": "$D/crl.pem"}
}
EOF
done
port() { echo $((B + $1 - 1)); }
start_gw() { # node
  "$GW" serve --config "$T/gw-$1.json" >>"$T/gw-$1.log" 2>&1 &
  GW_PID[$1]=$!
  for _ in $(seq 1 200); do
    curl -s --max-time 1 --cacert "$D/ca.pem" --cert "$D/clinic-a.pem" --key "$D/clinic-a.key" \
      "https://localhost:$(port "$1")/healthz" >/dev/null 2>&1 && return 0
    kill -0 "${GW_PID[$1]}" 2>/dev/null || break
    sleep 0.05
  done
  echo "gateway $1 did not start:"; tail -20 "$T/gw-$1.log"; return 1
}
start_sim() { # role port
  "$GW" sim --role "$1" --listen "127.0.0.1:$2" --data "$T/sims" --gateway "https://localhost:$(port 1)" \
    >>"$T/sim-$1.log" 2>&1 &
  SIM_PID[$1]=$!
  for _ in $(seq 1 100); do
    sim_get "$2" /_sim/stats >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "simulator $1 did not start"; return 1
}
sim_get() { curl -s --max-time 10 --cacert "$D/ca.pem" --cert "$D/operator.pem" --key "$D/operator.key" "https://localhost:$1$2" "${@:3}"; }
p1_unique() { sim_get $P1 /_sim/stats | sed -n 's/.*"unique":\([0-9]*\).*/\1/p'; }
p1_delay() { sim_get $P1 "/_sim/control?delay_ms=$1" -X POST >/dev/null; }
post() { # node file [curl args]: the HTTP status
  curl -s --max-time 15 -o /dev/null -w '%{http_code}' --cacert "$D/ca.pem" --cert "$D/clinic-a.pem" \
    --key "$D/clinic-a.key" "https://localhost:$(port "$1")/fhir" -X POST -H 'content-type: application/fhir+json' \
    --data-binary @"$2" "${@:3}"
}
post_to() { # node path file: the HTTP status (a single resource)
  curl -s --max-time 15 -o /dev/null -w '%{http_code}' --cacert "$D/ca.pem" --cert "$D/clinic-a.pem" \
    --key "$D/clinic-a.key" "https://localhost:$(port "$1")$2" -X POST -H 'content-type: application/fhir+json' \
    --data-binary @"$3"
}
# a visit as a FHIR transaction Bundle (the golden SIU S12 translated), unique by |n|
siu() { sed -e "s/MSG-0001/MSG-$1/; s/WIZ-2026-0001/WIZ-$1/g; s/20261203/$(date -u -d '+5 days' +%Y%m%d)/g" tests/golden/siu/s12-cardiology.hl7; }
siu 0 >"$T/in.hl7" && "$CLI" translate --to fhir "$T/in.hl7" >"$T/template.json" || { echo "cannot translate"; exit 1; }
bundle() { sed "s/WIZ-0/WIZ-$1/g; s/MSG-0\b/MSG-$1/g" "$T/template.json" >"$T/b-$1.json"; }
APPT=$(date -u -d '+9 days' +%Y-%m-%dT10:00:00+00:00)
APPT_END=$(date -u -d '+9 days' +%Y-%m-%dT10:20:00+00:00)
SDAY=$(date -u -d '+9 days' +%Y-%m-%d)
appt() { # id status [slot]
  local sl=
  [ -n "${3:-}" ] && sl="\"slot\":[{\"identifier\":{\"value\":\"$3\"}}],"
  cat <<EOF
{"resourceType":"Appointment","status":"$2",
 "contained":[{"resourceType":"Patient","id":"p","telecom":[{"system":"phone","value":"+48600100200"}]}],
 "identifier":[{"system":"urn:oid:2.16.840.1.113883.3.4424.2.3.1.000000012345","value":"$1"}],
 "specialty":[{"coding":[{"system":"urn:oid:2.16.840.1.113883.3.4424.11.2.4","code":"1100"}]}],
 "appointmentType":{"coding":[{"code":"KONTYNUACJA"}]},$sl
 "start":"$APPT","end":"$APPT_END",
 "participant":[{"actor":{"reference":"#p","type":"Patient","identifier":{"system":"urn:oid:2.16.840.1.113883.3.4424.1.1.616","value":"85010112345"},"display":"Jan Kowalski"},"status":"accepted"}],
 "comment":"wizyta kontrolna"}
EOF
}
slot() { # id hour
  cat <<EOF
{"resourceType":"Slot","identifier":[{"system":"urn:oid:2.16.840.1.113883.3.4424.2.3.1.000000012345","value":"$1"}],
 "specialty":[{"coding":[{"system":"urn:oid:2.16.840.1.113883.3.4424.11.2.4","code":"1100"}]}],
 "schedule":{"reference":"Schedule/GRAFIK-RACE"},"status":"free",
 "start":"${SDAY}T$2:00:00+00:00","end":"${SDAY}T$2:30:00+00:00"}
EOF
}

start_sim p1 $P1 || exit 1
start_sim simp $SIMP || exit 1
start_sim apkolce $KOLCE || exit 1
start_sim clinic $CLIN || exit 1
# ------------------------------------------------------------ moving from SQLite
# a single gateway on its SQLite file accepts ten visits while P1 is down, and stops with them queued;
# `cergw store copy` moves its store into the (empty) PostgreSQL database; the cluster then sends them
sed -e "s|\"listen\": \"127.0.0.1:$B\"|\"listen\": \"127.0.0.1:$((B + 3))\"|" -e 's|"store": {"backend": "postgresql", "postgresql": "[^"]*", "instance": "node-1", "lease_ms": [0-9]*,|"store": {|' \
  -e "s|$T/gw-1\"|$T/sq\"|" "$T/gw-1.json" >"$T/gw-sq.json"
sim_get $P1 "/_sim/control?mode=fail" -X POST >/dev/null
"$GW" serve --config "$T/gw-sq.json" >>"$T/gw-sq.log" 2>&1 &
sq_pid=$!
sq_acked=0
for _ in $(seq 1 100); do curl -s --max-time 1 --cacert "$D/ca.pem" --cert "$D/clinic-a.pem" --key "$D/clinic-a.key" "https://localhost:$((B + 3))/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
for i in $(seq 9001 9010); do
  bundle "$i"
  c=$(curl -s --max-time 15 -o /dev/null -w '%{http_code}' --cacert "$D/ca.pem" --cert "$D/clinic-a.pem" --key "$D/clinic-a.key" \
    "https://localhost:$((B + 3))/fhir" -X POST -H 'content-type: application/fhir+json' --data-binary @"$T/b-$i.json")
  case $c in 20[02]) sq_acked=$((sq_acked + 1)) ;; esac
done
kill -TERM "$sq_pid"; wait "$sq_pid"
sim_get $P1 "/_sim/control?mode=ok" -X POST >/dev/null
u_copy=$(p1_unique)
copied=$("$CLI" store --data "$T/sq" --pg "$PGU" --key "$T/store.key" copy 2>&1)
check "cergw store copy: a SQLite store with 10 visits queued for P1 moved into PostgreSQL ($sq_acked acknowledged)" \
  has "$copied" 'messages 10,' '^10 deliveries still to send'
check "  the copy refuses a database that is not empty" \
  bash -c "! \"$CLI\" store --data $T/sq --pg \"$PGU\" --key $T/store.key copy 2>&1 | grep -q '^copied'"
for n in 1 2 3; do start_gw $n || exit 1; done
check "  the cluster claims the copied deliveries and P1 receives the 10" \
  wait_for 20 bash -c "[ \"\$(curl -s --cacert $D/ca.pem --cert $D/operator.pem --key $D/operator.key https://localhost:$P1/_sim/stats | sed -n 's/.*\"unique\":\([0-9]*\).*/\1/p')\" = $((u_copy + 10)) ]"
check "  and the copied content opens under the same key (outbox show of a copied delivery)" \
  bash -c "\"$CLI\" outbox --pg \"$PGU\" --key $T/store.key show 1 | grep -q 'WIZ-9001'"

# ------------------------------------------------------------------ load spread
u0=$(p1_unique)
pids=()
for n in 1 2 3; do
  ( for i in $(seq $((n * 100 + 1)) $((n * 100 + 20))); do bundle "$i"; post "$n" "$T/b-$i.json"; echo; done >"$T/spread-$n" ) &
  pids+=($!)
done
wait "${pids[@]}"
check "load spread: 60 transactions over three instances, each acknowledged" \
  eq "$(cat "$T"/spread-* | grep -c '^20[02]$')" 60
check "  each instance owns and delivered its share (deliveries by owner: $(db "select string_agg(owner || '=' || n, ' ' order by owner) from (select owner, count(*) n from deliveries group by owner) x"))" \
  eq "$(db "select count(distinct owner) from deliveries where state = 1")" 3
check "  P1 received each once" wait_for 20 bash -c "[ \"\$(curl -s --cacert $D/ca.pem --cert $D/operator.pem --key $D/operator.key https://localhost:$P1/_sim/stats | sed -n 's/.*\"unique\":\([0-9]*\).*/\1/p')\" = $((u0 + 60)) ]"

# ------------------------------------------------- the same key at two instances
u0=$(p1_unique)
for k in $(seq 1 10); do
  bundle $((500 + k))
  post 1 "$T/b-$((500 + k)).json" -H "Idempotency-Key: race-$k" >"$T/ik-$k-1" & p1=$!
  post 2 "$T/b-$((500 + k)).json" -H "Idempotency-Key: race-$k" >"$T/ik-$k-2" & p2=$!
  wait $p1 $p2
done
both=$(for f in "$T"/ik-*; do cat "$f"; echo; done | grep -c '^20[02]$')
check "the same Idempotency-Key sent to two instances at once (10 keys): every answer an acknowledgment ($both of 20)" eq "$both" 20
keys=$("$CLI" store --key "$T/store.key" hash $(for k in $(seq 1 10); do echo "000000012345|key|race-$k"; done) | sed "s/.*/'&'/" | paste -sd,)
check "  one message per key in the store" eq "$(db "select count(*) from messages where idem_key in ($keys)")" 10
check "  and one delivery each to P1" wait_for 20 bash -c "[ \"\$(curl -s --cacert $D/ca.pem --cert $D/operator.pem --key $D/operator.key https://localhost:$P1/_sim/stats | sed -n 's/.*\"unique\":\([0-9]*\).*/\1/p')\" = $((u0 + 10)) ]"

# ------------------------------------------------------- two bookings, one slot
booked=0
a0=$(db "select count(*) from appointments")
for k in $(seq 1 8); do
  slot "SR-$k" $((7 + k)) >"$T/slot-$k.json"
  c=$(post_to 1 /fhir/Slot "$T/slot-$k.json")
  case $c in 20[12]) ;; *) echo "    slot SR-$k: $c" ;; esac
  appt "RACE-$k-A" booked "SR-$k" >"$T/ra-$k.json"
  appt "RACE-$k-B" booked "SR-$k" >"$T/rb-$k.json"
  post_to 2 /fhir/Appointment "$T/ra-$k.json" >"$T/race-$k-a" & p1=$!
  post_to 3 /fhir/Appointment "$T/rb-$k.json" >"$T/race-$k-b" & p2=$!
  wait $p1 $p2
  a=$(cat "$T/race-$k-a") b=$(cat "$T/race-$k-b")
  case "$a/$b" in 20[12]/422 | 422/20[12]) booked=$((booked + 1)) ;; *) echo "    slot SR-$k: $a/$b" ;; esac
done
check "two bookings of the same free slot through two instances at once (8 slots): exactly one booked each time" eq "$booked" 8
check "  the store holds one appointment per slot" eq "$(( $(db "select count(*) from appointments") - a0 ))" 8

# ------------------------------------------------------------- kill -9 mid-run
# P1 answers slowly, so each instance has deliveries queued and in flight when node 2 dies. Each client
# sends to its own instance; the clients of node 2 then resend what was not answered to node 1, as a
# clinic's system behind a load balancer would. Pairs booking -> cancellation of one appointment go to
# two different instances (the cancellation once its booking was acknowledged).
p1_delay 3000
u0=$(p1_unique)
p1_rows0=$(db "select count(*) from deliveries where backend = 'p1'")
: >"$T/acked"
send() { # node ids...: each transaction with an Idempotency-Key; the acknowledged ones recorded
  local n=$1; shift
  for i in "$@"; do
    bundle "$i"
    c=$(post "$n" "$T/b-$i.json" -H "Idempotency-Key: k9-$i" --max-time 5)
    case $c in 20[0-9]) echo "$i" >>"$T/acked" ;; *) echo "$i" >>"$T/unanswered-$n" ;; esac
  done
}
pairs() { # node-booking node-cancel ids...
  local nb=$1 nc=$2; shift 2
  for i in "$@"; do
    appt "ORD-$i" booked >"$T/ob-$i.json"; appt "ORD-$i" cancelled >"$T/oc-$i.json"
    case $(post_to "$nb" /fhir/Appointment "$T/ob-$i.json") in 20[12]) echo "$i" >>"$T/pairs-booked" ;; esac
    post_to "$nc" /fhir/Appointment "$T/oc-$i.json" >/dev/null
  done
}
send 1 $(seq 1001 1080) & c1=$!
send 2 $(seq 2001 2080) & c2=$!
send 3 $(seq 3001 3080) & c3=$!
pairs 2 3 $(seq 1 12) & c4=$!
sleep 3
pending=$(db "select count(*) from deliveries where owner = 'node-2' and state in (0, 4)")
db "select id from deliveries where owner = 'node-2' and state in (0, 4)" >"$T/dead-owned"
kill -9 "${GW_PID[2]}"
t_kill=$(date +%s%N)
p1_delay 0 # P1 quick again: what follows measures the takeover, not P1
wait "${GW_PID[2]}" 2>/dev/null
unset "GW_PID[2]"
wait $c1 $c2 $c3 $c4 2>/dev/null
[ -f "$T/unanswered-2" ] && send 1 $(cat "$T/unanswered-2")
resumed=
for _ in $(seq 1 600); do
  left=$(db "select count(*) from deliveries where id in (select unnest(string_to_array('$(paste -sd, "$T/dead-owned")', ',')::bigint[])) and state <> 1")
  if [ -s "$T/dead-owned" ] && [ "$left" = 0 ]; then resumed=$(( ($(date +%s%N) - t_kill) / 1000000 )); break; fi
  [ -s "$T/dead-owned" ] || break
  sleep 0.1
done
acked=$(sort -u "$T/acked" | wc -l)
# when the survivors took node 2's deliveries: the first takeover logged after the kill
t_take=$(grep -h 'event=deliveries_taken_over' "$T/gw-1.log" "$T/gw-3.log" | sed -n 's/^ts=\([^ ]*\) .*/\1/p' | sort | head -1)
taken=$([ -n "$t_take" ] && echo $(( $(date -d "$t_take" +%s%3N) - t_kill / 1000000 )))
check "kill -9 of node 2 with $pending deliveries of its own pending: some messages acknowledged ($acked)" test "$acked" -gt 100
check "  node 2's pending deliveries taken over ${taken:-never} ms after the kill (lease ${LEASE_MS} ms), all delivered after ${resumed:-never} ms" \
  test -n "$resumed" -a -n "$taken"
check "  the others logged the takeover" bash -c "grep -q 'event=instance_declared_dead instance=node-2' $T/gw-1.log $T/gw-3.log && grep -q 'event=deliveries_taken_over' $T/gw-1.log $T/gw-3.log"
hashes=$("$CLI" store --key "$T/store.key" hash $(sort -u "$T/acked" | sed 's/.*/000000012345|key|k9-&/') | sed "s/.*/'&'/" | paste -sd,)
stored=$(db "select count(*) from messages where idem_key in ($hashes)")
check "  lost: 0 (every acknowledged message is in the store: $stored of $acked)" eq "$stored" "$acked"
check "  every one of them delivered to P1" wait_for 30 bash -c "[ \"\$(db \"select count(*) from deliveries where backend = 'p1' and state <> 1 and msg_id in (select id from messages where idem_key in ($hashes))\")\" = 0 ]"
check "  nothing left pending" wait_for 30 bash -c "[ \"\$(db \"select count(*) from deliveries where state in (0, 3, 4)\")\" = 0 ]"
# a cancellation sent to node 3 whose booking node 2 never committed (it died first) names an appointment
# CeR does not know: P1 rejects it. Any other rejection would be a cancellation that overtook its booking.
rej=$(db "select count(*) from deliveries where state = 2")
check "  the $rej rejected are cancellations whose booking never reached the store (none overtook its booking)" \
  eq "$(db "select count(*) from deliveries d where d.state = 2 and exists (select 1 from deliveries e where e.rkey = d.rkey and e.backend = d.backend and e.id < d.id)")" 0
p1_new=$(( $(db "select count(*) from deliveries where backend = 'p1' and state = 1") - p1_rows0 ))
p1_got=$(( $(p1_unique) - u0 ))
resent=$(sim_get $P1 /_sim/stats | sed -n 's/.*"duplicates":\([0-9]*\).*/\1/p')
check "  P1 holds one copy of each of the $p1_new deliveries made since ($p1_got; attempts it recognised as repeats by their Idempotency-Key: $resent)" \
  eq "$p1_got" "$p1_new"
dupkeys=$(db "select count(*) - count(distinct idem_key) from messages where idem_key is not null")
check "  no idempotency key stored twice" eq "$dupkeys" 0
# order: P1's simulator records each key the first time it sees it, in order (sim-p1.keys)
out_of_order=0
npairs=0
for i in $(cat "$T/pairs-booked" 2>/dev/null); do
  kb=$(db "select d.ikey from deliveries d join messages m on m.id = d.msg_id where d.backend = 'p1' and m.rtype = 'Appointment' and d.rkey like '%ORD-$i' order by d.id limit 1")
  kc=$(db "select d.ikey from deliveries d join messages m on m.id = d.msg_id where d.backend = 'p1' and m.rtype = 'Appointment' and d.rkey like '%ORD-$i' order by d.id desc limit 1")
  lb=$(grep -n -F "$kb" "$T/sims/sim-p1.keys" | head -1 | cut -d: -f1)
  lc=$(grep -n -F "$kc" "$T/sims/sim-p1.keys" | head -1 | cut -d: -f1)
  npairs=$((npairs + 1))
  if [ -z "$lb" ] || [ -z "$lc" ] || [ "$kb" = "$kc" ] || [ "$lb" -ge "$lc" ]; then out_of_order=$((out_of_order + 1)); echo "    ORD-$i: booking at line ${lb:-?}, cancellation at ${lc:-?}"; fi
done
check "  out of order: 0 ($npairs booking/cancellation pairs, each pair sent to two instances, node 2 taking bookings)" \
  bash -c "[ $npairs -gt 5 ] && [ $out_of_order = 0 ]"
echo "KILL9 messages=$acked lost=$((acked - stored)) duplicated=$((p1_got - p1_new + dupkeys)) out_of_order=$out_of_order taken_over_ms=${taken:-none} all_delivered_ms=${resumed:-none} lease_ms=$LEASE_MS pending_at_kill=$pending backend_repeats=$resent"

# ------------------------------------------------------ the database restarted
start_gw 2 || exit 1
u0=$(p1_unique)
bundle 4001
c_before=$(post 1 "$T/b-4001.json")
pg_crash
bundle 4002
c_down=$(post 1 "$T/b-4002.json")
check "the database down: a write is refused with 503 ($c_down; before: $c_before)" eq "$c_down/$c_before" "503/200"
health_down() { # node: /healthz answers 503 naming the store
  local h
  h=$(curl -s --max-time 10 -w '\n%{http_code}' --cacert "$D/ca.pem" --cert "$D/clinic-a.pem" --key "$D/clinic-a.key" "https://localhost:$(port "$1")/healthz")
  [ "$(tail -1 <<<"$h")" = 503 ] && grep -q 'store' <<<"$h"
}
both_down() { wait_for 5 health_down 1 && wait_for 5 health_down 3; }
check "  /healthz says the store is the problem, on the instance that wrote and on one that did not" both_down
pg_restart || { ko "the database did not start again"; }
up() { bundle 4003; [ "$(post 3 "$T/b-4003.json" -H 'Idempotency-Key: after-restart')" = 200 ]; }
check "  the database back: writes accepted again, the gateways not restarted" wait_for 30 up
check "  nothing acknowledged lost: P1 received the message before the crash and the one after" \
  wait_for 30 bash -c "[ \"\$(curl -s --cacert $D/ca.pem --cert $D/operator.pem --key $D/operator.key https://localhost:$P1/_sim/stats | sed -n 's/.*\"unique\":\([0-9]*\).*/\1/p')\" -ge $((u0 + 2)) ]"
healthy() { curl -s --max-time 5 --cacert "$D/ca.pem" --cert "$D/clinic-a.pem" --key "$D/clinic-a.key" "https://localhost:$(port 3)/healthz" | grep -q '"status":"ok","store":"postgresql"'; }
check "  /healthz back to ok by itself, naming the store" wait_for 10 healthy
check "  and no instance declared another dead over the outage" \
  eq "$(db "select count(*) from instances where dead and id in ('node-1', 'node-3')")" 0
metrics=$(curl -s --cacert "$D/ca.pem" --cert "$D/operator.pem" --key "$D/operator.key" "https://localhost:$(port 1)/metrics")
check "metrics: claims, lease takeovers, serialization retries" \
  bash -c "grep -q '^cergw_store_claims_total ' <<<\"\$1\" && grep -q '^cergw_store_lease_takeovers_total ' <<<\"\$1\" && grep -q '^cergw_store_serialization_retries_total ' <<<\"\$1\"" _ "$metrics"

# the console's outbox and health on the PostgreSQL store (the browser tests run it on SQLite)
con() { curl -s --max-time 10 --cacert "$D/ca.pem" --cert "$D/operator.pem" --key "$D/operator.key" "https://localhost:$((B + 13))/console/api/$1" "${@:2}"; }
found=$(con 'outbox?q=race-3')
check "console on PostgreSQL: an Idempotency-Key found through the keyed hashes (race-3: one message, its deliveries)" \
  bash -c "grep -q '\"backend\":\"p1\"' <<<\"\$1\" && [ \$(grep -o '\"msg\":[0-9]*' <<<\"\$1\" | sort -u | wc -l) = 1 ]" _ "$found"
did=$(grep -o '"id":[0-9]*' <<<"$found" | head -1 | cut -d: -f2)
shown=$(con "outbox/$did")
check "  a delivery shown with its content opened and its attempts" \
  bash -c "grep -q 'WIZ-503' <<<\"\$1\" && grep -q '\"attempts_history\":\[{' <<<\"\$1\"" _ "$shown"
check "  marking a delivered delivery dead is refused (409), retrying it too" \
  bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' --cacert $D/ca.pem --cert $D/operator.pem --key $D/operator.key -X POST https://localhost:$((B + 13))/console/api/outbox/$did/dead)\" = 409 ] && [ \"\$(curl -s -o /dev/null -w '%{http_code}' --cacert $D/ca.pem --cert $D/operator.pem --key $D/operator.key -X POST https://localhost:$((B + 13))/console/api/outbox/$did/retry)\" = 409 ]"
check "  health: latency percentiles over the hour from the store" bash -c "grep -Eq '\"name\":\"p1\".*\"p99_ms\":[0-9]+' <<<\"\$1\"" _ "$(con health)"
dbefore=$(db "select count(*) from deliveries")
pur=$("$CLI" outbox --pg "$PGU" purge --older-than 0 2>&1)
check "cergw outbox --pg purge: finished deliveries removed, messages a resource version or a slot still names kept ($pur)" \
  bash -c "grep -Eq '^purged [0-9]+ messages and [1-9][0-9]* finished deliveries' <<<\"\$1\" && [ \"\$(db 'select count(*) from deliveries')\" -lt $dbefore ] && [ \"\$(db 'select count(*) from messages')\" -gt 0 ]" _ "$pur"
for n in 1 2 3; do
  kill -TERM "${GW_PID[$n]}"; wait "${GW_PID[$n]}"; rc=$?; unset "GW_PID[$n]"
  check "instance $n stops cleanly on SIGTERM (exit 0; under ASan: no leak)" eq "$rc" 0
done
grep -h 'ERROR: AddressSanitizer\|runtime error' "$T"/gw-*.log && ko "sanitizer reports in the logs"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
