// The console driven in a real browser: Debian's Chromium through playwright-core (tools/node), client
// certificates presented by Playwright for the console's origin. Run by tests/integration/console.sh, which
// starts the gateway, its console and the simulators and passes where they are in the environment.
// Prints "ok - ..." / "FAIL - ..." lines and "N passed, N failed"; exits 1 on any failure.
import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const require = createRequire(path.join(process.env.ROOT, 'tools/node/package.json'));
const { chromium } = require('playwright-core');

const E = process.env;
const ORIGIN = `https://localhost:${E.CONSOLE_PORT}`;
const D = path.join(E.ROOT, 'certs/dev');
let pass = 0;
let fail = 0;
const ok = (name) => { pass++; console.log(`ok   - ${name}`); };
const ko = (name, why) => { fail++; console.log(`FAIL - ${name}${why ? ': ' + why : ''}`); };
async function check(name, fn) {
  try {
    const r = await fn();
    if (r === false) ko(name); else ok(typeof r === 'string' ? `${name} (${r})` : name);
  } catch (e) {
    ko(name, String(e.message || e).split('\n')[0]);
  }
}

const browser = await chromium.launch({ executablePath: E.CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
const context = (cert) => browser.newContext({
  ignoreHTTPSErrors: true, // the development CA is not the browser's
  viewport: { width: 1280, height: 800 },
  clientCertificates: cert ? [{ origin: ORIGIN, certPath: path.join(D, cert + '.pem'), keyPath: path.join(D, cert + '.key') }] : [],
});
const shots = E.SHOTS || '';
// the gateway's log as the workers flush it (they write in batches): polled until |re| shows or 15 s pass
async function logHas(re) {
  for (let i = 0; i < 150; i++) {
    if (re.test(fs.readFileSync(E.GW_LOG, 'utf8'))) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}
async function shot(page, name) {
  if (!shots) return;
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(shots, name + '.png') });
}

// ---- a clinic certificate does not reach the console, nor does a browser without certificate or token
await check('a clinic certificate is refused: 403, not the console', async () => {
  const ctx = await context('clinic-a');
  const page = await ctx.newPage();
  const resp = await page.goto(ORIGIN + '/console/');
  const body = await page.textContent('body');
  await ctx.close();
  if (resp.status() !== 403 || !/for operators/.test(body)) throw new Error(`status ${resp.status()}: ${body.slice(0, 120)}`);
  return 'HTTP 403';
});
await check('without a certificate: the sign-in form; a wrong token refused, the right one lets in', async () => {
  const ctx = await context(null);
  const page = await ctx.newPage();
  await page.goto(ORIGIN + '/console/');
  await page.waitForSelector('#login:not([hidden])');
  await page.fill('#token', 'not-the-token-at-all');
  await page.click('#login-form button');
  await page.waitForFunction(() => document.getElementById('login-error').textContent.length > 0);
  await page.fill('#token', fs.readFileSync(path.join(D, 'console.token'), 'utf8').trim());
  await page.click('#login-form button');
  await page.waitForFunction(() => document.getElementById('who').textContent.startsWith('token'));
  await ctx.close();
});

const ctx = await context('operator');
const page = await ctx.newPage();
page.on('dialog', (d) => d.accept()); // the confirmations of retry and purge
await page.goto(ORIGIN + '/console/');
await page.waitForFunction(() => document.getElementById('who').textContent.startsWith('operator:'));

// ---- playground
const siu = fs.readFileSync(path.join(E.ROOT, 'tests/golden/siu/s12-cardiology.hl7'), 'utf8');
async function paste(text) {
  await page.click('.tab[data-page="playground"]');
  await page.fill('[data-test="playground-input"]', text);
  await page.click('[data-test="validate-button"]');
  await page.waitForFunction(() => /valid|Failed/.test(document.getElementById('pg-summary').textContent) && !/Checking/.test(document.getElementById('pg-summary').textContent));
}
await check('an invalid SIU (PESEL check digit): the PID-3 diagnostic listed, its field highlighted in the source', async () => {
  await paste(siu.replace('85010112345', '85010112346').replace(/\r/g, '\n'));
  const li = page.locator('[data-test="diagnostics"] li[data-rule="cer.pesel"]');
  await li.waitFor();
  const loc = await li.getAttribute('data-location');
  if (!/^PID-3/.test(loc)) throw new Error('location ' + loc);
  const text = await li.textContent();
  if (!/PESEL 85010112346 is not valid/.test(text) || !/PESEL/.test(await li.locator('.pl').textContent())) throw new Error(text);
  const hit = await page.locator('#pg-source .hit').allTextContents();
  if (!hit.some((l) => /^\d+PID\|/.test(l))) throw new Error('highlighted lines: ' + hit.join(' / '));
  const field = await page.locator('#pg-source .hit', { hasText: 'PID|' }).locator('.at').first().textContent();
  if (!/^85010112346/.test(field)) throw new Error('marked field: ' + field);
  await li.click(); // the cursor goes to the field; the HL7 position under it is named
  const cur = await page.textContent('#pg-cursor');
  if (!/PID-3(\.1)? Patient Identifier List/.test(cur)) throw new Error('cursor help: ' + cur);
  const title = await page.locator('#pg-source span[title^="PID-3 "]').first().getAttribute('title');
  if (title !== 'PID-3 Patient Identifier List') throw new Error('field help: ' + title);
  await shot(page, 'playground');
  return `${loc}, "${cur.trim()}"`;
});
await check('a valid SOAP booking: valid, the four translations, the route and each backend\'s payload', async () => {
  const soap = fs.readFileSync(path.join(E.ROOT, 'tests/golden/soap/book-cardiology.xml'), 'utf8');
  await page.fill('#pg-now', '2026-12-01T08:00:00');
  await paste(soap);
  const sum = await page.textContent('#pg-summary');
  if (!/^soap: valid/.test(sum)) throw new Error(sum);
  for (const t of ['fhir-json', 'fhir-xml', 'hl7-v2-siu', 'soap']) {
    const pre = page.locator(`[data-test="translation-${t}"] pre`);
    if ((await pre.count()) !== 1) throw new Error('no translation ' + t);
    const txt = await pre.textContent();
    const want = { 'fhir-json': /"resourceType": "Bundle"/, 'fhir-xml': /<Bundle xmlns="http:\/\/hl7.org\/fhir">/, 'hl7-v2-siu': /^MSH\|/, soap: /BookAppointmentRequest/ }[t];
    if (!want.test(txt)) throw new Error(`${t}: ${txt.slice(0, 80)}`);
  }
  const route = await page.textContent('#pg-route');
  if (!/p1/.test(route) || !/apkolce/.test(route)) throw new Error(route);
  await page.fill('#pg-now', '');
  return route;
});
await check('paste to diagnostics for a 100 KB FHIR Bundle, measured in the browser', async () => {
  const entry = (i) => ({ resource: { resourceType: 'Slot', identifier: [{ system: 'urn:oid:2.16.840.1.113883.3.4424.2.3.1.000000012345', value: 'S-' + i }], specialty: [{ coding: [{ system: 'urn:oid:2.16.840.1.113883.3.4424.11.2.4', code: '1100' }] }], schedule: { reference: 'Schedule/G-1' }, status: 'free', start: `2027-01-${String(1 + (i % 28)).padStart(2, '0')}T${String(7 + (i % 10)).padStart(2, '0')}:00:00+01:00`, end: `2027-01-${String(1 + (i % 28)).padStart(2, '0')}T${String(7 + (i % 10)).padStart(2, '0')}:20:00+01:00` }, request: { method: 'POST', url: 'Slot' } });
  const entries = [];
  let text = '';
  for (let i = 0; text.length < 100 * 1024; i++) { entries.push(entry(i)); text = JSON.stringify({ resourceType: 'Bundle', type: 'batch', entry: entries }, null, 1); }
  await page.click('.tab[data-page="playground"]');
  const ms = await page.evaluate(async (t) => {
    const input = document.querySelector('[data-test="playground-input"]');
    const t0 = performance.now();
    input.value = t;
    input.dispatchEvent(new Event('input'));
    document.querySelector('[data-test="validate-button"]').click();
    await new Promise((resolve) => {
      const tick = () => (/ms \(gateway/.test(document.getElementById('pg-summary').textContent) ? resolve() : setTimeout(tick, 5));
      tick();
    });
    return Math.round(performance.now() - t0);
  }, text);
  const n = await page.locator('[data-test="diagnostics"] li').count();
  fs.writeFileSync(path.join(E.OUT, 'paste-100k-ms'), String(ms));
  return `${(text.length / 1024).toFixed(0)} KB, ${entries.length} entries: ${ms} ms from paste to diagnostics (${n} listed)`;
});

// ---- outbox: a message sent through the gateway, found by its MSH-10, its attempts shown
await check('a message sent through the gateway is found in the outbox by its MSH-10, with its attempts', async () => {
  await page.click('.tab[data-page="outbox"]');
  await page.fill('[data-test="outbox-search"]', E.MSH10);
  await page.click('#ob-filter button');
  const row = page.locator(`[data-test="outbox-table"] tbody tr:has(td:text-is("p1"))`).first();
  await row.waitFor({ timeout: 10000 });
  await row.click();
  await page.waitForSelector('[data-test="attempts"] li');
  const att = await page.textContent('[data-test="attempts"]');
  if (!/delivered, status 20\d/.test(att)) throw new Error(att);
  await page.waitForSelector('[data-test="message-deliveries"] h4');
  const sib = await page.textContent('[data-test="message-deliveries"]');
  if (!/Payload sent to apkolce/.test(sib)) throw new Error('the other backend\'s payload: ' + sib.slice(0, 80));
  const counts = await page.textContent('[data-test="outbox-counts"]');
  if (!/delivered: [1-9]/.test(counts)) throw new Error(counts);
  await shot(page, 'outbox');
  return att.trim().slice(0, 60);
});
await check('a dead delivery retried from the console (confirmed, audited) is delivered', async () => {
  await page.fill('[data-test="outbox-search"]', '');
  await page.selectOption('#ob-state', 'dead');
  await page.click('#ob-filter button');
  const row = page.locator('[data-test="outbox-table"] tbody tr:has(td.state-dead)').first(); /* the filtered table */
  await row.waitFor({ timeout: 10000 });
  const id = await row.getAttribute('data-id');
  await row.click();
  await page.waitForFunction((i) => document.querySelector('#ob-detail h3')?.textContent.startsWith(`Delivery ${i} `), id, { timeout: 15000 })
    .catch(async () => { throw new Error(`delivery ${id} not shown: ${(await page.textContent('#ob-detail')).slice(0, 200)}`); });
  await page.click('[data-test="retry-button"]');
  await page.waitForSelector('#ob-detail .ok');
  execFileSync('curl', ['-s', '--cacert', path.join(D, 'ca.pem'), '--cert', path.join(D, 'operator.pem'), '--key', path.join(D, 'operator.key'), '-X', 'POST', `https://localhost:${E.SIMP_PORT}/_sim/control?mode=ok`]);
  await page.selectOption('#ob-state', '');
  for (let i = 0; i < 100; i++) {
    await page.click('#ob-filter button');
    await page.waitForTimeout(200);
    const st = await page.locator(`[data-test="outbox-table"] tbody tr[data-id="${id}"] td:nth-child(7)`).textContent().catch(() => '');
    if (st === 'delivered') {
      if (!(await logHas(new RegExp(`event=console_audit who="operator:cergw operator \\(dev\\)" action=retry delivery=${id} outcome=done`)))) throw new Error('no audit line; the console_audit lines: ' + fs.readFileSync(E.GW_LOG, 'utf8').split('\n').filter((l) => /console_audit/.test(l)).map((l) => l.replace(/^ts=\S+ /, '')).join(' | '));
      return `delivery ${id}`;
    }
  }
  throw new Error('not delivered after the retry');
});

await check('a delivery being retried, marked dead from the console: never attempted again, P1 never gets it', async () => {
  const curl = (args) => execFileSync('curl', ['-s', '--cacert', path.join(D, 'ca.pem'), ...args]).toString();
  const op = ['--cert', path.join(D, 'operator.pem'), '--key', path.join(D, 'operator.key')];
  const p1 = (q) => curl([...op, '-X', 'POST', `https://localhost:${E.P1_PORT}/_sim/control?${q}`]);
  const unique = () => +/"unique":(\d+)/.exec(curl([...op, `https://localhost:${E.P1_PORT}/_sim/stats`]))[1];
  p1('mode=fail');
  const msg = siu.replace('MSG-0001', 'MSG-DEAD-' + process.pid).replace(/WIZ-2026-0001/g, 'WIZ-D-' + process.pid).replace(/20261203/g, E.DAY);
  fs.writeFileSync(path.join(E.OUT, 'dead.hl7'), msg);
  curl(['--cert', path.join(D, 'clinic-a.pem'), '--key', path.join(D, 'clinic-a.key'), '-H', 'content-type: application/hl7-v2', '--data-binary', '@' + path.join(E.OUT, 'dead.hl7'), `https://localhost:${E.GW_PORT}/hl7v2`]);
  const before = unique();
  await page.click('.tab[data-page="outbox"]');
  await page.selectOption('#ob-state', 'queued');
  await page.fill('[data-test="outbox-search"]', 'MSG-DEAD-' + process.pid);
  await page.click('#ob-filter button');
  const row = page.locator('[data-test="outbox-table"] tbody tr:has(td:text-is("p1")):has(td.state-queued)').first();
  await row.waitFor({ timeout: 10000 });
  const id = await row.getAttribute('data-id');
  await row.click();
  await page.waitForFunction((i) => document.querySelector('#ob-detail h3')?.textContent.startsWith(`Delivery ${i} `), id, { timeout: 15000 })
    .catch(async () => { throw new Error(`delivery ${id} not shown: ${(await page.textContent('#ob-detail')).slice(0, 200)}`); });
  await page.click('[data-test="dead-button"]');
  await page.waitForSelector('#ob-detail .ok');
  await page.waitForTimeout(1500); /* its next attempt time passes: the dispatcher drops it instead */
  p1('mode=ok');
  await page.waitForTimeout(1500);
  await page.selectOption('#ob-state', '');
  await page.click('#ob-filter button');
  await page.waitForTimeout(300);
  const st = await page.locator(`[data-test="outbox-table"] tbody tr[data-id="${id}"] td:nth-child(7)`).textContent();
  if (st !== 'dead') throw new Error('state ' + st);
  if (unique() !== before) throw new Error('P1 received it');
  if (!(await logHas(/event=delivery_dead delivery=\d+ .*marked dead by an operator/))) throw new Error('the dispatcher did not drop it');
  await page.selectOption('#ob-state', '');
  await page.fill('[data-test="outbox-search"]', '');
  return `delivery ${id}`;
});

// ---- health
await check('health: each backend with its breaker, queue and latency percentiles; the configuration in force', async () => {
  await page.click('.tab[data-page="health"]');
  await page.waitForSelector('[data-test="health-table"] tr[data-backend="p1"]');
  const p1 = await page.textContent('[data-test="health-table"] tr[data-backend="p1"]');
  if (!/closed/.test(p1) || !/ms \(\d+\)/.test(p1)) throw new Error(p1);
  const conf = await page.textContent('#h-config');
  if (!/"routes"/.test(conf) || !/cardiology-waiting-list/.test(conf)) throw new Error(conf.slice(0, 100));
  if ((await page.locator('#h-chart svg polyline').count()) < 1) throw new Error('no chart');
  await shot(page, 'health');
  return p1.replace(/\s+/g, ' ').slice(0, 70);
});

// ---- keyboard: the playground reached and used without a mouse
await check('keyboard only: Tab to the input, type, Ctrl+Enter validates', async () => {
  await page.click('.tab[data-page="playground"]');
  await page.focus('.tab[data-page="playground"]');
  for (let i = 0; i < 6 && !(await page.evaluate(() => document.activeElement.id === 'pg-input')); i++) await page.keyboard.press('Tab');
  if (!(await page.evaluate(() => document.activeElement.id === 'pg-input'))) throw new Error('Tab did not reach the input');
  await page.keyboard.press('Control+A');
  await page.keyboard.type('{"resourceType":"Slot"}');
  await page.keyboard.press('Control+Enter');
  await page.waitForFunction(() => /fhir-json: not valid/.test(document.getElementById('pg-summary').textContent));
});

await ctx.close();
await browser.close();
console.log(`${pass} passed, ${fail} failed`);
process.exit(fail ? 1 : 0);
