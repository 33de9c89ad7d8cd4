#!/usr/bin/env bash
# `make run`: the four backend simulators (P1 with its OAuth token endpoint,
# SIMP, AP-KOLCE, a clinic notification endpoint) in the background, then the
# gateway in the foreground on the embedded defaults (HTTPS 127.0.0.1:8443,
# MLLP/TLS 127.0.0.1:2575, store in data/) and the console on 127.0.0.1:8444. Ctrl-C stops everything.
set -u
cd "$(dirname "$0")/.."
GW=./build/cergw
mkdir -p data && chmod 700 data && { chmod 600 data/cergw.db* 2>/dev/null || true; } # the store holds personal data: its directory and files for this user only
pids=()
stop() { kill -TERM "${pids[@]}" 2>/dev/null; wait 2>/dev/null; }
trap stop EXIT INT TERM
for s in p1:9441 simp:9442 apkolce:9443 clinic:9444; do
  extra=()
  [ "${s%%:*}" = clinic ] && extra=(--mllp 127.0.0.1:9445) # clinic 000000011111 takes notifications over MLLP/TLS
  "$GW" sim --role "${s%%:*}" --listen "127.0.0.1:${s##*:}" --data data "${extra[@]}" >>"data/sim-${s%%:*}.log" 2>&1 &
  pids+=($!)
  echo "simulator ${s%%:*} on https://127.0.0.1:${s##*:}${extra[1]:+ and mllp://${extra[1]}} (log: data/sim-${s%%:*}.log)"
done
echo "gateway on https://127.0.0.1:8443 and MLLP/TLS 127.0.0.1:2575; try:"
echo "  curl --cert certs/dev/clinic-a.pem --key certs/dev/clinic-a.key --cacert certs/dev/ca.pem \\"
echo "       https://localhost:8443/hl7v2 --data-binary @tests/golden/siu/s12-cardiology.hl7"
# the embedded defaults, plus the operators' console on 127.0.0.1:8444 (docs/console.md)
cat >data/dev.json <<'EOF'
{ "console_listen": "127.0.0.1:8444", "console": {"token_file": "../certs/dev/console.token", "root": "../console"} }
EOF
echo "console on https://127.0.0.1:8444/console/ (import certs/dev/operator.p12, password cergw, or give the token in certs/dev/console.token)"
"$GW" serve --config data/dev.json &
gw=$!
pids+=($gw)
wait "$gw"
