#!/usr/bin/env bash
# Calibrates the project's loadgen against h2load: both drive the same
# nghttpd (no client authentication, which h2load cannot do) with the same
# connections, streams and request count, interleaved. If they agree, the
# loadgen figures in bench-transport can be trusted.
set -euo pipefail
cd "$(dirname "$0")/.."
D=$PWD/certs/dev
ROUNDS=${ROUNDS:-3}
N=${N:-300000}
CONNS=${CONNS:-16}
STREAMS=${STREAMS:-32}
PORT=${PORT:-28445}
T=$(mktemp -d /tmp/cergw-cal.XXXXXX)
mkdir -p "$T/www"; head -c 57 /dev/zero | tr '\0' x >"$T/www/healthz"
nghttpd -n 2 -d "$T/www" "$PORT" "$D/server.key" "$D/server.pem" >/dev/null 2>&1 &
NP=$!
trap 'kill $NP 2>/dev/null; wait 2>/dev/null; rm -rf "$T"' EXIT
sleep 0.5
lg_sum=0; h2_sum=0
for r in $(seq 1 "$ROUNDS"); do
  lg=$(./build/loadgen --port "$PORT" -c "$CONNS" -m "$STREAMS" -n "$N" --path /healthz | sed -nE 's/^RESULT rps=([0-9]+).*/\1/p')
  h2=$(h2load -c "$CONNS" -m "$STREAMS" -n "$N" "https://127.0.0.1:$PORT/healthz" 2>/dev/null | sed -nE 's/^finished in .* ([0-9.]+) req\/s.*/\1/p' | cut -d. -f1)
  echo "round $r: loadgen $lg req/s, h2load $h2 req/s"
  lg_sum=$((lg_sum + lg)); h2_sum=$((h2_sum + h2))
done
echo "calibration: loadgen $((lg_sum / ROUNDS)) req/s, h2load $((h2_sum / ROUNDS)) req/s, ratio $(awk -v a="$lg_sum" -v b="$h2_sum" 'BEGIN{printf "%.3f", a/b}')"
