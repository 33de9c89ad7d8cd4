// An HL7 v2 interface engine's client against the gateway: node-hl7-client (npm), unchanged, sending
// SIU S12, S13, S14, S15, S16, S17 and S26 over MLLP on TLS with the clinic's certificate, and reading
// the ACK of each (MSA-1, MSA-2 echoing MSH-10); a bad PESEL gets AE with its ERR.
// Usage: node node-hl7.js CERT_DIR MLLP_PORT. Prints ok/FAIL lines.
'use strict';
const fs = require('fs');
const { Client, Message } = require('node-hl7-client');

const [dir, port] = process.argv.slice(2);
let pass = 0, fail = 0;
const check = (name, cond, why) => {
  if (cond) { pass++; console.log(`ok   - node-hl7-client: ${name}`); } else { fail++; console.log(`FAIL - node-hl7-client: ${name}${why ? ': ' + why : ''}`); }
};
const run = Date.now() % 100000;
const dtm = (d, hh) => new Date(Date.now() + d * 86400000).toISOString().slice(0, 10).replace(/-/g, '') + hh + '0000+0100';
const OID = '2.16.840.1.113883.3.4424.2.3.1.000000012345';
function siu(ev, ctrl, appt, status, hh, pesel = '85010112345') {
  return [
    `MSH|^~\\&|GABINET|PORADNIA^2.16.840.1.113883.3.4424.2.3.1^ISO|CERGW|CER|${dtm(0, '12')}||SIU^${ev}^SIU_S12|${ctrl}|P|2.5.1`,
    `SCH|${appt}^GABINET^${OID}||||||FOLLOWUP^Wizyta kontrolna^HL70276|||20|min|^^20^${dtm(9, hh)}^${dtm(9, hh).replace(/00\+/, '20+')}||||||||||||||${status}`,
    `TQ1|1||||||${dtm(9, hh)}|${dtm(9, hh).replace(/0000\+/, '2000+')}`,
    `PID|1||${pesel}^^^MZ&2.16.840.1.113883.3.4424.1.1.616&ISO^NNPOL||Kowalski^Jan||19850101|M|||||^PRN^CP^^^^600100200`,
    'RGS|1',
    `AIS|1||1100^Poradnia kardiologiczna^2.16.840.1.113883.3.4424.11.2.4|${dtm(9, hh)}|||20|min`,
  ].join('\r');
}
const acks = new Map();
const waiters = new Map();
const client = new Client({ host: '127.0.0.1', tls: { cert: fs.readFileSync(`${dir}/clinic-a.pem`), key: fs.readFileSync(`${dir}/clinic-a.key`),
  ca: fs.readFileSync(`${dir}/ca.pem`), servername: 'localhost' } });
const conn = client.createConnection({ port: Number(port), waitAck: true }, async (res) => {
  const m = res.getMessage();
  const id = m.get('MSA.2').toString();
  acks.set(id, m);
  if (waiters.has(id)) waiters.get(id)(m);
});
const send = (text, ctrl) => new Promise((resolve) => {
  const t = setTimeout(() => resolve(null), 10000);
  waiters.set(ctrl, (m) => { clearTimeout(t); resolve(m); });
  conn.sendMessage(new Message({ text })).catch(() => resolve(null));
});
(async () => {
  const steps = [
    ['S12', 'A', 'Booked', '08'], ['S13', 'A', 'Booked', '09'], ['S14', 'A', 'Booked', '09'], ['S15', 'A', 'Cancelled', '09'],
    ['S12', 'B', 'Booked', '10'], ['S26', 'B', 'Noshow', '10'],
    ['S12', 'C', 'Booked', '11'], ['S17', 'C', 'Deleted', '11'],
    ['S12', 'D', 'Booked', '12'], ['S16', 'D', 'Cancelled', '12'],
  ];
  let k = 0;
  for (const [ev, a, status, hh] of steps) {
    const ctrl = `NH${run}-${++k}`;
    const ack = await send(siu(ev, ctrl, `NH${run}-${a}`, status, hh), ctrl);
    const code = ack ? ack.get('MSA.1').toString() : 'none';
    check(`SIU^${ev} (${status}) over MLLP/TLS: ACK AA, MSA-2 ${ctrl}`, code === 'AA', ack ? `${code} ${ack.get('MSA.3').toString()} ${ack.get('ERR').toString()}` : 'no ACK');
  }
  const ctrl = `NH${run}-bad`;
  const ack = await send(siu('S12', ctrl, `NH${run}-E`, 'Booked', '13', '85010112346'), ctrl);
  check('a wrong PESEL: ACK AE with an ERR naming cer.pesel at PID-3', ack && ack.get('MSA.1').toString() === 'AE' && ack.toString().includes('cer.pesel') && ack.toString().includes('PID^1^3'),
    ack ? ack.toString().replace(/\r/g, ' | ').slice(0, 300) : 'no ACK');
  console.log(`${pass} passed, ${fail} failed`);
  try { await conn.close(); } catch (e) { /* closing */ }
  process.exit(fail ? 1 : 0);
})();
