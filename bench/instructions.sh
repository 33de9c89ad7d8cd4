#!/usr/bin/env bash
# Instructions per message (callgrind), the figure of record for the translation path: it does not
# move with a busy neighbour. SIU -> FHIR validated and rendered as FHIR JSON, over the SIU samples of
# the shared corpus (checked as of 2021-09-20) and the golden SIU files (as of 2026-11-22); then FHIR
# JSON validation over the golden FHIR outputs. Each set runs twice under callgrind, 1 round and
# 1 + EXTRA rounds: the difference over EXTRA x messages is the cost of one message, start-up excluded.
# The inclusive cost of the phases (ER7 parse, XSLT mapping, FHIR model / JSON, CeR rules, profile XSD,
# freeing) is taken the same way from callgrind_annotate.
# Prints one line per set and, last, "RESULT siu_instr_per_msg=N fhir_instr_per_msg=N".
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRA=${EXTRA:-5}
T=$(mktemp -d /tmp/cergw-instr.XXXXXX)
trap 'rm -rf "$T"' EXIT
command -v valgrind >/dev/null || { echo "valgrind missing: run 'make deps'"; exit 2; }

# run NAME NOW ROUNDS FILE...: callgrind output in $T/NAME-ROUNDS.out, total Ir on stdout
run() {
  local name=$1 now=$2 rounds=$3; shift 3
  NOW=$now valgrind --tool=callgrind --callgrind-out-file="$T/$name-$rounds.out" \
    ./build/bench_translate count "$rounds" "$@" >/dev/null 2>"$T/$name-$rounds.err"
  sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$T/$name-$rounds.err"
}
# phase NAME ROUNDS FUNCTION: its inclusive Ir in that run
phase() {
  callgrind_annotate --inclusive=yes --threshold=100 "$T/$1-$2.out" 2>/dev/null |
    awk -v f="$3" '$0 ~ ("[ :]" f " ") || $0 ~ ("[ :]" f "$") { gsub(",", "", $1); print $1; exit }'
}
# measure NAME NOW FILE...: per-message Ir and the phases
measure() {
  local name=$1 now=$2; shift 2
  local n=$# a b
  a=$(run "$name" "$now" 1 "$@")
  b=$(run "$name" "$now" $((1 + EXTRA)) "$@")
  local per=$(((b - a) / (EXTRA * n)))
  local line="$name: $per instructions per message ($n messages)"
  for f in gw_hl7_parse gw_xform_apply gw_fhir_json_to_xml gw_fhir_xml_to_json gw_rules_check xmlSchemaValidateOneElement xmlFreeDoc; do
    local pa pb
    pa=$(phase "$name" 1 "$f"); pb=$(phase "$name" $((1 + EXTRA)) "$f")
    [ -n "$pa" ] && [ -n "$pb" ] && line="$line; $f $(((pb - pa) / (EXTRA * n)))"
  done
  echo "$line" >&2
  echo "$per"
}

siu_files=(tests/golden/siu/s12-cardiology.hl7 tests/golden/siu/s15-cancel.hl7 tests/golden/siu/s12-invalid.hl7)
total=0; count=0
g=$(measure siu-golden 2026-11-22T08:00:00+01:00 "${siu_files[@]}")
total=$((g * ${#siu_files[@]})); count=${#siu_files[@]}
if [ -d ../shared/corpus/hl7v2-siu ]; then
  corpus=(../shared/corpus/hl7v2-siu/SIU-*.hl7)
  c=$(measure siu-corpus 2021-09-20T00:00:00Z "${corpus[@]}")
  total=$((total + c * ${#corpus[@]})); count=$((count + ${#corpus[@]}))
else
  echo "(shared corpus absent: the golden SIU files only)" >&2
fi
f=$(measure fhir-json 2026-11-22T08:00:00+01:00 tests/golden/siu/*.fhir.json tests/golden/soap/*.fhir.json)
echo "RESULT siu_instr_per_msg=$((total / count)) fhir_instr_per_msg=$f"
