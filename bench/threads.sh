#!/bin/bash
# CPU per message and per gateway thread (workers, store writer, dispatcher) for N
# HL7 SIU S12 messages through the full path with the simulators. Not a test.
# Usage: bench/threads.sh   (N=3000, LOGLEVEL=info; set-up shared with make bench: bench/fullpath.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_PORT=${BASE_PORT:-29540}
. bench/fullpath.sh
GP=$GW_PID
$LG -c 2 -m 4 -n 200 --path /hl7v2 --data $T/s12.hl7 > /dev/null
snap() { for t in /proc/$GP/task/*; do echo "$(tr ' ' _ <$t/comm) $(awk '{print $14+$15}' $t/stat)"; done | sort; }
snap > $T/a
$LG -c 8 -m 32 -n ${N:-3000} --path /hl7v2 --data $T/s12.hl7 | tail -1
sleep 2
snap > $T/b
# the gateway names its threads: cergw (main), cergw-worker1.., cergw-store, cergw-dispatch
join $T/a $T/b | awk -v n=${N:-3000} '
  { d = $3 - $2; tot += d; printf "%-15s %5d ticks = %5.0f us/msg\n", $1, d, d * 10000 / n }
  END { printf "%-15s %5d ticks = %5.0f us/msg\n", "gateway", tot, tot * 10000 / n }'
