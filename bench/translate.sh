#!/usr/bin/env bash
# make bench-translate: messages per second on ONE core (taskset -c 0) for
#   1. SIU -> FHIR, validated (ER7 parse, XSLT mapping, FHIR model check, CeR rules); xsltproc
#      cannot run siu-to-fhir.xsl since it calls the gateway's extension functions (cg:*), so
#      libxslt's own cost is measured in process (4.);
#   2. FHIR JSON validation (JSON -> canonical XML with the model, CeR rules)
#      beside @medplum/core's validateResource on the same resources (Node, one thread).
#   3. SOAP -> FHIR, validated (XSD, XSLT, model, rules) beside xsltproc with the same stylesheet.
#   4. libxslt's own floor, in process (bench_translate xslt-floor): siu-to-fhir.xsl beside a
#      stylesheet that writes the same Bundle literally (no logic) and a trivial one.
# Runs interleaved rounds and prints the ratios; the last line sums up.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-4}
T=$(mktemp -d /tmp/cergw-bt.XXXXXX)
trap 'rm -rf "$T"' EXIT
CORPUS=../shared/corpus
PIN="taskset -c 0"
command -v taskset >/dev/null || PIN=""

siu=tests/golden/siu/s12-cardiology.hl7
siu_now=2026-11-22T08:00:00+01:00
copies=2000
soapf=tests/golden/soap/book-cardiology.xml
for _ in $(seq 1 $copies); do echo "$soapf"; done >"$T/slist"

if [ -d "$CORPUS/fhir-r4-examples" ]; then
  fhir=$(ls "$CORPUS"/fhir-r4-examples/*-*.json); fhir_now=2013-12-01T00:00:00Z
else
  fhir=$(ls tests/golden/siu/*.fhir.json); fhir_now=$siu_now
  echo "(shared corpus absent: FHIR validation uses the golden outputs)"
fi

# the peer (issue 13): the same validated SIU -> FHIR work in Node (Medplum's HL7 parser, a JavaScript
# mapping of the same fields, @medplum/core validateResource), on the same messages as ours
peer_files=(tests/golden/siu/s12-cardiology.hl7 tests/golden/siu/s15-cancel.hl7)
[ -d "$CORPUS/hl7v2-siu" ] && peer_files+=("$CORPUS"/hl7v2-siu/SIU-*.hl7)
pe_ours=0; pe_node=0

echo "# one core, ${SECS}s per run, $ROUNDS interleaved rounds"
s_ours=0; f_ours=0; f_med=0; p_ours=0; p_xslt=0; x_triv=0; x_lit=0; x_map=0
for r in $(seq 1 "$ROUNDS"); do
  a=$(NOW=$siu_now $PIN ./build/bench_translate check "$SECS" "$siu" | sed -E 's/.*msgs_per_s=([0-9]+).*/\1/')
  c=$(NOW=$fhir_now $PIN ./build/bench_translate check "$SECS" $fhir | sed -E 's/.*msgs_per_s=([0-9]+).*/\1/')
  d=$($PIN node tools/node/medplum-bench.js "$SECS" $fhir 2>/dev/null | sed -E 's/.*resources_per_s=([0-9]+).*/\1/')
  p=$(NOW=$siu_now $PIN ./build/bench_translate check "$SECS" "$soapf" | sed -E 's/.*msgs_per_s=([0-9]+).*/\1/')
  start=$(date +%s%N)
  $PIN xsltproc mappings/soap-to-fhir.xsl $(cat "$T/slist") >/dev/null
  q=$(( copies * 1000000000 / ($(date +%s%N) - start) ))
  fl=$($PIN ./build/bench_translate xslt-floor "$SECS" tests/golden/siu/s12-cardiology.hl7)
  xt=$(sed -E 's/.*trivial_per_s=([0-9]+).*/\1/' <<<"$fl"); xl=$(sed -E 's/.*literal_per_s=([0-9]+).*/\1/' <<<"$fl")
  xm=$(sed -E 's/.*mapping_per_s=([0-9]+).*/\1/' <<<"$fl")
  x_triv=$((x_triv + xt)); x_lit=$((x_lit + xl)); x_map=$((x_map + xm))
  echo "round $r: libxslt in process: trivial stylesheet $xt/s | the same Bundle written literally $xl/s | siu-to-fhir.xsl $xm/s"
  echo "round $r: SIU->FHIR validated $a/s | FHIR JSON validation $c/s | medplum validateResource $d/s | SOAP->FHIR validated $p/s | xsltproc $q/s"
  po=$(NOW=$siu_now $PIN ./build/bench_translate check "$SECS" "${peer_files[@]}" | sed -E 's/.*msgs_per_s=([0-9]+).*/\1/')
  pn=$($PIN node tools/node/siu-peer.js "$SECS" "${peer_files[@]}" | sed -E 's/.*msgs_per_s=([0-9]+).*/\1/')
  echo "round $r: SIU->FHIR validated, ${#peer_files[@]} messages: cergw $po/s | Node peer (Medplum parse + JS mapping + validateResource) $pn/s"
  pe_ours=$((pe_ours + po)); pe_node=$((pe_node + pn))
  s_ours=$((s_ours + a)); f_ours=$((f_ours + c)); f_med=$((f_med + d)); p_ours=$((p_ours + p)); p_xslt=$((p_xslt + q))
done
echo "SOAP->FHIR validated: $((p_ours / ROUNDS)) msg/s; xsltproc alone: $((p_xslt / ROUNDS)) msg/s; ratio $(awk -v a=$p_ours -v b=$p_xslt 'BEGIN{printf "%.2f", a/b}')"
echo "libxslt alone, one core: a stylesheet writing the S12 Bundle literally (no XPath, no logic) $((x_lit / ROUNDS))/s, a trivial one $((x_triv / ROUNDS))/s, siu-to-fhir.xsl $((x_map / ROUNDS))/s"
echo "SIU->FHIR validated: $((s_ours / ROUNDS)) msg/s; siu-to-fhir.xsl alone in libxslt: $((x_map / ROUNDS)) msg/s"
echo "FHIR JSON validation: $((f_ours / ROUNDS)) res/s vs medplum $((f_med / ROUNDS)) res/s: $(awk -v a=$f_ours -v b=$f_med 'BEGIN{printf "%.2f", a/b}')x (target 5x)"
echo "translate: siu_fhir=$((s_ours / ROUNDS))/s libxslt_mapping=$((x_map / ROUNDS))/s libxslt_literal_floor=$((x_lit / ROUNDS))/s soap_fhir=$((p_ours / ROUNDS))/s fhir_validate=$((f_ours / ROUNDS))/s medplum=$((f_med / ROUNDS))/s ratio_vs_medplum=$(awk -v a=$f_ours -v b=$f_med 'BEGIN{printf "%.2f", a/b}')"
echo "SIU->FHIR validated beside the Node peer: cergw $((pe_ours / ROUNDS))/s, peer $((pe_node / ROUNDS))/s: $(awk -v a=$pe_ours -v b=$pe_node 'BEGIN{printf "%.2f", a/b}')x (target 1.8x)"
# the figure of record: instructions per message under callgrind
instr=$(./bench/instructions.sh | tail -1)
echo "RESULT siu_instr_per_msg=$(sed -E 's/.*siu_instr_per_msg=([0-9]+).*/\1/' <<<"$instr") siu_peer_ratio=$(awk -v a=$pe_ours -v b=$pe_node 'BEGIN{printf "%.2f", a/b}') fhir_validation_ratio=$(awk -v a=$f_ours -v b=$f_med 'BEGIN{printf "%.2f", a/b}') fhir_instr_per_msg=$(sed -E 's/.*fhir_instr_per_msg=([0-9]+).*/\1/' <<<"$instr")"
