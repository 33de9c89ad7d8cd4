// A standard FHIR client against the gateway: fhir-kit-client (npm), unchanged, over mutual TLS
// (Node's fetch with an undici dispatcher holding the clinic's certificate). Covers what the
// CapabilityStatement promises: capabilities, create, read, vread, update with If-Match (and a
// stale one refused), conditional create, history, search with paging, transaction and batch.
// Usage: node fhir-kit.mjs CERT_DIR BASE_URL (https://localhost:PORT/fhir). Prints ok/FAIL lines.
import { Agent, setGlobalDispatcher } from 'undici';
import fs from 'fs';
import { Client, RESPONSE_KEY } from 'fhir-kit-client';

const [dir, base] = process.argv.slice(2);
setGlobalDispatcher(new Agent({ connect: { cert: fs.readFileSync(`${dir}/clinic-a.pem`),
  key: fs.readFileSync(`${dir}/clinic-a.key`), ca: fs.readFileSync(`${dir}/ca.pem`) } }));
const client = new Client({ baseUrl: base });
let pass = 0, fail = 0;
const check = (name, cond, why) => {
  if (cond) { pass++; console.log(`ok   - fhir-kit-client: ${name}`); } else { fail++; console.log(`FAIL - fhir-kit-client: ${name}${why ? ': ' + why : ''}`); }
};
const header = (r, h) => (r && r[RESPONSE_KEY] && r[RESPONSE_KEY].headers ? r[RESPONSE_KEY].headers.get(h) : null);
const run = Date.now() % 100000;
const SYS = 'urn:oid:2.16.840.1.113883.3.4424.2.3.1.000000012345';
const day = new Date(Date.now() + 12 * 86400000).toISOString().slice(0, 10);
const slot = (id, hh) => ({ resourceType: 'Slot', identifier: [{ system: SYS, value: id }],
  specialty: [{ coding: [{ system: 'urn:oid:2.16.840.1.113883.3.4424.11.2.4', code: '1100' }] }],
  schedule: { reference: `Schedule/FKC-${run}` }, status: 'free',
  start: `${day}T${hh}:00:00+00:00`, end: `${day}T${hh}:20:00+00:00` });
const guard = async (name, f) => { try { await f(); } catch (e) { check(name, false, `${e.message} ${JSON.stringify(e.response && e.response.data || '').slice(0, 300)}`); } };

await guard('capabilities', async () => {
  const cs = await client.capabilityStatement();
  const appt = cs.rest[0].resource.find((r) => r.type === 'Appointment');
  check('capabilities: FHIR 4.0.1, Appointment read, vread, search and versioned update',
    cs.fhirVersion === '4.0.1' && ['read', 'vread', 'search-type', 'update'].every((c) => appt.interaction.some((i) => i.code === c)) && appt.versioning === 'versioned-update');
});
const id = `FKC-${run}-1`;
await guard('create', async () => {
  const r = await client.create({ resourceType: 'Slot', body: slot(id, '07') });
  check('create: 201 with a Location of the new version', /\/Slot\/FKC-[0-9]+-1\/_history\/1$/.test(header(r, 'location') || ''), header(r, 'location'));
});
await guard('read', async () => {
  const s = await client.read({ resourceType: 'Slot', id });
  check('read: the slot, versionId 1, its delivery state in meta', s.id === id && s.meta.versionId === '1' && JSON.stringify(s.meta).includes('delivery'), JSON.stringify(s.meta));
});
await guard('update with If-Match', async () => {
  const body = { ...slot(id, '07'), id, comment: 'drugi gabinet' };
  const r = await client.update({ resourceType: 'Slot', id, body, options: { headers: { 'If-Match': 'W/"1"' } } });
  check('update with If-Match of version 1: version 2', header(r, 'etag') === 'W/"2"', header(r, 'etag'));
});
await guard('stale If-Match', async () => {
  let status = 0;
  try { await client.update({ resourceType: 'Slot', id, body: { ...slot(id, '07'), id }, options: { headers: { 'If-Match': 'W/"1"' } } }); } catch (e) { status = e.response && e.response.status; }
  check('update with a stale If-Match: 412', status === 412, `status ${status}`);
});
await guard('vread', async () => {
  const v1 = await client.vread({ resourceType: 'Slot', id, version: '1' });
  const v2 = await client.vread({ resourceType: 'Slot', id, version: '2' });
  check('vread: version 1 without the comment, version 2 with it', !v1.comment && v2.comment === 'drugi gabinet');
});
await guard('history', async () => {
  const h = await client.history({ resourceType: 'Slot', id });
  check('history: a history Bundle of 2 versions', h.type === 'history' && h.total === 2, `${h.type} ${h.total}`);
});
await guard('conditional create', async () => {
  const r = await client.create({ resourceType: 'Slot', body: slot(id, '07'), options: { headers: { 'If-None-Exist': `identifier=${SYS}|${id}` } } });
  check('conditional create matching it: nothing new, its location', (header(r, 'location') || '').includes(`/Slot/${id}`), header(r, 'location'));
});
await guard('transaction', async () => {
  const entry = ['08', '09', '10'].map((hh, k) => ({ resource: slot(`FKC-${run}-T${k}`, hh), request: { method: 'PUT', url: `Slot?identifier=${SYS}|FKC-${run}-T${k}` } }));
  const r = await client.transaction({ body: { resourceType: 'Bundle', type: 'transaction', entry } });
  check('transaction: a transaction-response, one entry each, with locations', r.type === 'transaction-response' && r.entry.length === 3 && r.entry.every((e) => /_history\/1$/.test(e.response.location)));
});
await guard('batch', async () => {
  const entry = ['11', '12'].map((hh, k) => ({ resource: slot(`FKC-${run}-B${k}`, hh), request: { method: 'POST', url: 'Slot' } }));
  const r = await client.batch({ body: { resourceType: 'Bundle', type: 'batch', entry } });
  check('batch: a batch-response', r.type === 'batch-response' && r.entry.length === 2);
});
await guard('search with paging', async () => {
  const p1 = await client.search({ resourceType: 'Slot', searchParams: { schedule: `FKC-${run}`, _count: 2 } });
  const p2 = await client.nextPage({ bundle: p1 });
  const ids = [...p1.entry, ...p2.entry].map((e) => e.resource.id);
  check('search by schedule, 2 a page: 6 in all, the next page by its link, no repeats', p1.total === 6 && p1.entry.length === 2 && p2.entry.length === 2 && new Set(ids).size === 4, `${p1.total} ${ids}`);
  const byId = await client.search({ resourceType: 'Slot', searchParams: { identifier: `${SYS}|${id}` } });
  check('search by identifier system|value: the one slot', byId.total === 1 && byId.entry[0].resource.id === id);
});
await guard('not found', async () => {
  let status = 0, oo = null;
  try { await client.read({ resourceType: 'Appointment', id: 'NIE-MA' }); } catch (e) { status = e.response.status; oo = e.response.data; }
  check('read of an unknown id: 404 with an OperationOutcome', status === 404 && oo && oo.resourceType === 'OperationOutcome', `${status}`);
});
console.log(`${pass} passed, ${fail} failed`);
process.exit(fail ? 1 : 0);
