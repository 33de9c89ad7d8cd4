// A SOAP toolkit against the gateway: node-soap (npm), unchanged. It reads the WSDL and the schema it
// imports over mutual TLS, and calls all seven operations of the clinic port with SOAP 1.1 and with
// SOAP 1.2 (each on one keep-alive agent), and sees a refusal as a SOAP Fault.
// Usage: node node-soap.js CERT_DIR BASE_URL (https://localhost:PORT). Prints ok/FAIL lines.
'use strict';
const fs = require('fs');
const https = require('https');
const soap = require('soap');

const [dir, base] = process.argv.slice(2);
const tls = { cert: fs.readFileSync(`${dir}/clinic-a.pem`), key: fs.readFileSync(`${dir}/clinic-a.key`), ca: fs.readFileSync(`${dir}/ca.pem`) };
let pass = 0, fail = 0;
const check = (name, cond, why) => {
  if (cond) { pass++; console.log(`ok   - node-soap: ${name}`); } else { fail++; console.log(`FAIL - node-soap: ${name}${why ? ': ' + why : ''}`); }
};
const run = Date.now() % 100000;
const day = (d) => new Date(Date.now() + d * 86400000).toISOString().slice(0, 10);
const clinic = { Rpwdl: '000000012345', Specialty: '1100' };

async function suite(version) {
  const agent = new https.Agent({ ...tls, keepAlive: true, maxSockets: 1 });
  const client = await soap.createClientAsync(`${base}/soap?wsdl`, { wsdl_options: { httpsAgent: agent }, forceSoap12Headers: version === 12 });
  client.setSecurity(new soap.ClientSSLSecurity(tls.key, tls.cert, tls.ca, { keepAlive: true }));
  const v = `SOAP 1.${version === 12 ? 2 : 1}`;
  const call = async (op, args) => {
    try { const [res] = await client[`${op}Async`](args, { httpsAgent: agent }); return { res }; } catch (e) { return { err: e }; }
  };
  const ok = (r) => r.res && ['delivered', 'queued'].includes(r.res.Status);
  const sid = `NS${version}-${run}`;
  let r = await call('PublishSchedule', { Clinic: clinic, ScheduleId: `GR-${sid}`, Practitioner: { Npwz: '1234567', Name: 'dr Anna Nowak' },
    Place: 'Gabinet 3', HorizonStart: `${day(1)}T00:00:00+01:00`, HorizonEnd: `${day(40)}T00:00:00+01:00` });
  check(`${v} PublishSchedule: accepted`, ok(r), r.err && r.err.message);
  r = await call('PublishSlots', { Clinic: clinic, ScheduleId: `GR-${sid}`, Slot: [
    { Id: `S1-${sid}`, Start: `${day(10)}T08:00:00+01:00`, End: `${day(10)}T08:20:00+01:00`, Status: 'free', VisitKind: 'followup' },
    { Id: `S2-${sid}`, Start: `${day(10)}T08:20:00+01:00`, End: `${day(10)}T08:40:00+01:00`, Status: 'free', VisitKind: 'followup' }] });
  check(`${v} PublishSlots: accepted`, ok(r), r.err && r.err.message);
  r = await call('BookAppointment', { Clinic: clinic, AppointmentId: `W-${sid}`, SlotId: `S1-${sid}`, Start: `${day(10)}T08:00:00+01:00`,
    End: `${day(10)}T08:20:00+01:00`, VisitKind: 'followup',
    Patient: { Pesel: '85010112345', GivenName: 'Jan', FamilyName: 'Kowalski', Contact: { Phone: '+48600100200' } } });
  check(`${v} BookAppointment: accepted, a Delivery per backend`, ok(r) && r.res.Delivery, r.err && r.err.message);
  r = await call('RescheduleAppointment', { Clinic: clinic, AppointmentId: `W-${sid}`, SlotId: `S2-${sid}`,
    Start: `${day(10)}T08:20:00+01:00`, End: `${day(10)}T08:40:00+01:00` });
  check(`${v} RescheduleAppointment: accepted`, ok(r), r.err && r.err.message);
  r = await call('GetAppointmentStatus', { Clinic: clinic, AppointmentId: `W-${sid}` });
  check(`${v} GetAppointmentStatus: the status last accepted`, r.res && /^booked/.test(r.res.Status), r.err ? r.err.message : JSON.stringify(r.res));
  r = await call('CancelAppointment', { Clinic: clinic, AppointmentId: `W-${sid}`, Reason: 'pacjent odwołał' });
  check(`${v} CancelAppointment: accepted`, ok(r), r.err && r.err.message);
  r = await call('ValidateMessage', { BookAppointmentRequest: { Clinic: clinic, AppointmentId: `V-${sid}`, Start: `${day(10)}T09:00:00+01:00`,
    End: `${day(10)}T09:20:00+01:00`, VisitKind: 'followup', Patient: { Pesel: '85010112346', GivenName: 'Jan', FamilyName: 'Kowalski', Contact: { Phone: '+48600100200' } } } });
  check(`${v} ValidateMessage of a booking with a wrong PESEL: Valid false, the issue named`,
    r.res && String(r.res.Valid) === 'false' && JSON.stringify(r.res).includes('cer.pesel'), r.err ? r.err.message : JSON.stringify(r.res).slice(0, 300));
  r = await call('BookAppointment', { Clinic: clinic, AppointmentId: `X-${sid}`, Start: `${day(10)}T09:00:00+01:00`,
    End: `${day(10)}T09:20:00+01:00`, VisitKind: 'followup', Patient: { Pesel: '85010112346', GivenName: 'Jan', FamilyName: 'Kowalski', Contact: { Phone: '+48600100200' } } });
  const fault = r.err && (r.err.root && r.err.root.Envelope && r.err.root.Envelope.Body && r.err.root.Envelope.Body.Fault);
  check(`${v} a booking with a wrong PESEL: a SOAP Fault naming cer.pesel`, fault && JSON.stringify(fault).includes('cer.pesel'),
    r.err ? r.err.message.slice(0, 200) : 'no fault');
  agent.destroy();
}

(async () => {
  try { await suite(11); } catch (e) { check('SOAP 1.1 suite ran', false, e.message); }
  try { await suite(12); } catch (e) { check('SOAP 1.2 suite ran', false, e.message); }
  console.log(`${pass} passed, ${fail} failed`);
  process.exit(fail ? 1 : 0);
})();
