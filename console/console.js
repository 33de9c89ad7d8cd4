/* cergw console: plain JavaScript, no build step, no network but the gateway's own API. */
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem('cergw-token') || '';
  let hl7Fields = {};
  let lastText = '';
  let lastIssues = [];

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    return e;
  }

  async function api(path, opts) {
    opts = opts || {};
    opts.headers = Object.assign({}, opts.headers || {});
    if (token) opts.headers.authorization = 'Bearer ' + token;
    const r = await fetch('/console/api/' + path, opts);
    if (r.status === 401) {
      showLogin();
      throw new Error('sign in first');
    }
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.error || ('HTTP ' + r.status));
    return body;
  }

  function showLogin() {
    $('login').hidden = false;
    document.querySelector('main').hidden = true;
  }

  async function whoami() {
    try {
      const w = await api('whoami');
      $('who').textContent = w.who + ' · cergw ' + w.version;
      $('login').hidden = true;
      document.querySelector('main').hidden = false;
    } catch (e) { /* showLogin did it */ }
  }

  $('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    token = $('token').value.trim();
    sessionStorage.setItem('cergw-token', token);
    $('login-error').textContent = '';
    await whoami();
    if (!$('login').hidden) $('login-error').textContent = 'The token was not accepted.';
  });

  /* ---- pages ---- */
  const timers = {};
  function show(page) {
    for (const t of document.querySelectorAll('.tab')) t.setAttribute('aria-selected', String(t.dataset.page === page));
    for (const p of ['playground', 'outbox', 'health']) $(p).hidden = p !== page;
    for (const k of Object.keys(timers)) { clearInterval(timers[k]); delete timers[k]; }
    if (page === 'outbox') { loadOutbox(); timers.o = setInterval(loadOutbox, 5000); }
    if (page === 'health') { loadHealth(); timers.h = setInterval(loadHealth, 5000); }
    location.hash = page;
  }
  for (const t of document.querySelectorAll('.tab')) t.addEventListener('click', () => show(t.dataset.page));

  /* ---- playground ---- */
  const input = $('pg-input');
  input.addEventListener('dragover', (ev) => { ev.preventDefault(); input.classList.add('drop'); });
  input.addEventListener('dragleave', () => input.classList.remove('drop'));
  input.addEventListener('drop', async (ev) => {
    ev.preventDefault();
    input.classList.remove('drop');
    const f = ev.dataTransfer.files[0];
    if (f) input.value = await f.text();
  });
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); validate(); }
  });
  for (const evn of ['keyup', 'click', 'select', 'input']) input.addEventListener(evn, cursorHelp);

  function isHl7(text) { return /^\s*MSH/.test(text); }

  /* "PID-3.1 Patient Identifier List" for the HL7 position at the cursor */
  function hl7At(text, pos) {
    const start = text.lastIndexOf('\n', pos - 1) + 1;
    const line = text.slice(start, pos);
    const seg = text.slice(start, start + 3);
    if (!/^[A-Z][A-Z0-9]{2}$/.test(seg)) return '';
    const fieldSep = seg === 'MSH' ? text[start + 3] || '|' : '|';
    const parts = line.split(fieldSep);
    let field = parts.length - 1;
    if (seg === 'MSH') field += 1; /* MSH-1 is the separator itself */
    const comp = (parts[parts.length - 1].split('~').pop().split('^').length);
    const names = hl7Fields[seg] || [];
    return field > 0 ? `${seg}-${field}${comp > 1 ? '.' + comp : ''}${names[field - 1] ? ' ' + names[field - 1] : ''}` : seg;
  }

  function cursorHelp() {
    const t = input.value;
    if (!isHl7(t)) { $('pg-cursor').textContent = ''; return; }
    const at = hl7At(t, input.selectionStart);
    $('pg-cursor').textContent = at ? 'At the cursor: ' + at : '';
  }

  /* where an issue points: {line, col} (1-based), from its line and column or its HL7 location */
  function place(text, it) {
    if (it.line > 0) return { line: it.line, col: it.col };
    const m = /^([A-Z][A-Z0-9]{2})-(\d+)(?:\.(\d+))?/.exec(it.location || '');
    if (!m || !isHl7(text)) return null;
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      if (!lines[i].startsWith(m[1])) continue;
      const sep = m[1] === 'MSH' ? lines[i][3] : '|';
      let n = +m[2] - (m[1] === 'MSH' ? 1 : 0), col = 3;
      for (let f = 0; f < n && col >= 0; f++) col = lines[i].indexOf(sep, col + (f ? 1 : 0));
      if (col < 0) return { line: i + 1, col: 0 };
      col += 1;
      if (m[3]) for (let c = 1; c < +m[3]; c++) { const k = lines[i].indexOf('^', col); if (k < 0) break; col = k + 1; }
      return { line: i + 1, col: col + 1 };
    }
    return null;
  }

  function renderSource(text, issues) {
    const src = $('pg-source');
    src.textContent = '';
    const marks = {};
    for (const it of issues) {
      const p = place(text, it);
      if (p) (marks[p.line] = marks[p.line] || []).push(p.col);
    }
    const lines = text.split('\n');
    const hl7 = isHl7(text);
    lines.slice(0, 2000).forEach((ln, i) => {
      const row = el('span', { id: 'src-line-' + (i + 1), class: marks[i + 1] ? 'hit' : '' }, el('span', { class: 'ln' }, i + 1));
      if (hl7 && /^[A-Z][A-Z0-9]{2}/.test(ln)) {
        const seg = ln.slice(0, 3), sep = seg === 'MSH' ? ln[3] || '|' : '|';
        const parts = ln.split(sep);
        const cols = (marks[i + 1] || []).filter((c) => c > 0);
        let at = 0; /* 0-based offset of the field in the line */
        parts.forEach((p, f) => {
          if (f) { row.append(sep); at += 1; }
          const n = seg === 'MSH' ? f + 1 : f;
          const names = hl7Fields[seg] || [];
          const marked = cols.some((c) => c - 1 >= at && c - 1 <= at + p.length);
          const attrs = {};
          if (f && names[n - 1]) attrs.title = `${seg}-${n} ${names[n - 1]}`;
          if (marked && f) attrs.class = 'at';
          row.append(Object.keys(attrs).length ? el('span', attrs, p) : p);
          at += p.length;
        });
      } else {
        const cols = (marks[i + 1] || []).filter((c) => c > 0);
        if (cols.length) {
          const c = Math.min(...cols) - 1;
          row.append(ln.slice(0, c), el('span', { class: 'at' }, ln.slice(c, c + 1) || ' '), ln.slice(c + 1));
        } else {
          row.append(ln);
        }
      }
      src.append(row, '\n');
    });
  }

  function select(it) {
    const p = place(lastText, it);
    if (!p) return;
    const lines = input.value.split('\n');
    let off = 0;
    for (let i = 0; i < p.line - 1 && i < lines.length; i++) off += lines[i].length + 1;
    off += Math.max(0, (p.col || 1) - 1);
    input.focus();
    input.setSelectionRange(off, Math.min(off + 1, input.value.length));
    const row = $('src-line-' + p.line);
    if (row) row.scrollIntoView({ block: 'nearest' });
    cursorHelp();
  }

  function figure(title, ok, text, error) {
    return el('figure', { 'data-test': 'translation-' + title.toLowerCase().replace(/[^a-z0-9]+/g, '-') },
      el('figcaption', {}, title), ok ? el('pre', {}, text) : el('p', { class: 'na' }, error || 'not available'));
  }

  async function validate() {
    let text = input.value;
    if (isHl7(text)) text = text.replace(/\r?\n/g, '\r'); /* ER7 segments end in CR */
    lastText = input.value;
    const now = $('pg-now').value ? '?now=' + encodeURIComponent(new Date($('pg-now').value + 'Z').toISOString().replace('.000Z', 'Z')) : '';
    $('pg-summary').textContent = 'Checking…';
    $('pg-summary').className = 'summary';
    const t0 = performance.now();
    let r;
    try {
      r = await api('check' + now, { method: 'POST', body: text, headers: { 'content-type': 'text/plain' } });
    } catch (e) {
      $('pg-summary').textContent = 'Failed: ' + e.message;
      return;
    }
    lastIssues = r.issues;
    const ol = $('pg-diagnostics');
    ol.textContent = '';
    for (const it of r.issues) {
      const where = [it.location, it.line ? `line ${it.line}${it.col ? ', column ' + it.col : ''}` : ''].filter(Boolean).join(' · ');
      const li = el('li', { class: it.severity, tabindex: '0', 'data-rule': it.rule, 'data-location': it.location || '' },
        el('strong', {}, it.severity), ' ', el('code', {}, it.rule), ' ', it.en,
        where ? el('span', { class: 'where' }, ' [' + where + ']') : '',
        el('span', { class: 'pl', lang: 'pl' }, it.pl));
      li.addEventListener('click', () => select(it));
      li.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') select(it); });
      ol.append(li);
    }
    if (!r.issues.length) ol.append(el('li', { class: 'ok' }, 'No issues.'));
    renderSource(input.value, r.issues);
    const tr = $('pg-translations');
    tr.textContent = '';
    const names = { 'fhir-json': 'FHIR JSON', 'fhir-xml': 'FHIR XML', hl7v2: 'HL7 v2 SIU', soap: 'SOAP' };
    for (const k of Object.keys(names)) {
      const x = r.translations[k] || { ok: false, error: 'the message did not reach FHIR' };
      tr.append(figure(names[k], x.ok, x.text, x.error));
    }
    $('pg-route').textContent = r.route.payloads.length
      ? 'Routed to ' + r.route.payloads.map((p) => p.backend).join(', ') + (r.route.why ? ' (' + r.route.why + ')' : '')
      : (r.route.why || 'Routed nowhere');
    const pl = $('pg-payloads');
    pl.textContent = '';
    for (const p of r.route.payloads)
      pl.append(figure(`${p.backend} (${p.kind}, ${p.content_type || '-'})`, !p.error, p.body, p.error));
    const ms = Math.round(performance.now() - t0);
    $('pg-summary').textContent = `${r.dialect}: ${r.valid ? 'valid' : 'not valid'}, ${r.issues.length} diagnostic(s); ` +
      `checked in ${ms} ms (gateway ${Math.round(r.elapsed_us / 1000)} ms), now = ${r.now}`;
    $('pg-summary').className = 'summary ' + (r.valid ? 'valid' : 'invalid');
    $('pg-summary').dataset.ms = String(ms);
  }
  $('pg-validate').addEventListener('click', validate);

  /* ---- outbox ---- */
  const fmt = (ms) => (ms ? new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '-');
  function query() {
    const q = new URLSearchParams();
    for (const [k, id] of [['state', 'ob-state'], ['backend', 'ob-backend'], ['clinic', 'ob-clinic'], ['op', 'ob-op'], ['since_min', 'ob-since'], ['q', 'ob-q']])
      if ($(id).value) q.set(k, $(id).value);
    return q.toString();
  }
  async function loadOutbox() {
    let r;
    try { r = await api('outbox?' + query()); } catch (e) { $('ob-counts').textContent = e.message; return; }
    const c = $('ob-counts');
    c.textContent = '';
    for (const [k, v] of Object.entries(r.counts)) c.append(el('span', { class: 'state-' + k, 'data-state': k }, `${k}: ${v}`));
    const tb = $('ob-rows');
    tb.textContent = '';
    for (const d of r.rows) {
      const tr = el('tr', { tabindex: '0', 'data-id': d.id },
        el('td', {}, d.id), el('td', {}, d.msg), el('td', {}, d.clinic), el('td', {}, d.op), el('td', {}, d.resource),
        el('td', {}, d.backend), el('td', { class: 'state-' + d.state }, d.state), el('td', {}, d.attempts),
        el('td', {}, fmt(d.created_ms)), el('td', {}, d.last_status ? d.last_status + ' ' + d.last_error : d.last_error));
      tr.addEventListener('click', () => showDelivery(d.id));
      tr.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') showDelivery(d.id); });
      tb.append(tr);
    }
  }
  $('ob-filter').addEventListener('submit', (ev) => { ev.preventDefault(); loadOutbox(); });

  async function act(id, action) {
    const what = { retry: 'Queue delivery ' + id + ' for another attempt?', dead: 'Mark delivery ' + id + ' dead (no further attempts)?', purge: 'Purge the message of delivery ' + id + ' (its content and finished deliveries)?' }[action];
    if (!confirm(what)) return;
    const out = $('ob-detail');
    try {
      const r = await api(`outbox/${id}/${action}`, { method: 'POST' });
      out.prepend(el('p', { class: 'ok', role: 'status' }, r.outcome));
    } catch (e) {
      out.prepend(el('p', { class: 'error', role: 'alert' }, e.message));
    }
    loadOutbox();
  }

  async function showDelivery(id) {
    const out = $('ob-detail');
    out.hidden = false;
    out.textContent = 'Loading delivery ' + id + '…'; /* the previous delivery's buttons go at once */
    let d;
    try { d = await api('outbox/' + id); } catch (e) { out.hidden = false; out.textContent = e.message; return; }
    out.hidden = false;
    out.textContent = '';
    out.append(el('h3', {}, `Delivery ${d.id} of message ${d.msg}: ${d.backend}, ${d.state}`),
      el('p', {}, `Clinic ${d.clinic} · ${d.op} · ${d.resource} · ordering key ${d.ordering_key} · Idempotency-Key ${d.idempotency_key} · path ${d.path || '/'}`),
      el('div', { class: 'row' },
        el('button', { type: 'button', 'data-test': 'retry-button', onclick: () => act(d.id, 'retry') }, 'Retry'),
        el('button', { type: 'button', class: 'secondary', 'data-test': 'dead-button', onclick: () => act(d.id, 'dead') }, 'Mark dead'),
        el('button', { type: 'button', class: 'secondary', 'data-test': 'purge-button', onclick: () => act(d.id, 'purge') }, 'Purge')),
      el('h4', {}, 'Attempts'));
    const att = el('ol', { 'data-test': 'attempts' });
    for (const a of d.attempts_history) att.append(el('li', {}, `${fmt(a.at_ms)}: ${a.state}, status ${a.status}${a.answer ? ' — ' + a.answer : ''}`));
    if (!d.attempts_history.length) att.append(el('li', {}, 'not attempted yet'));
    /* the message's other deliveries: each backend's payload */
    const sib = el('div', { 'data-test': 'message-deliveries' });
    try {
      const all = await api('outbox?msg=' + d.msg);
      for (const o of all.rows.filter((x) => x.id !== d.id)) {
        const od = await api('outbox/' + o.id);
        sib.append(el('h4', {}, `Payload sent to ${od.backend} (${od.content_type}) — delivery ${od.id}, ${od.state}`), el('pre', {}, od.payload || '(pruned)'));
      }
    } catch (e) { sib.append(el('p', { class: 'error' }, e.message)); }
    out.append(att, el('h4', {}, 'Payload sent to ' + d.backend + ' (' + d.content_type + ')'), el('pre', {}, d.payload || '(pruned)'), sib,
      el('h4', {}, 'Canonical form (FHIR XML)'), el('pre', {}, d.canonical || '(pruned)'),
      el('h4', {}, 'Original'), el('pre', {}, (d.original || '(pruned)').replace(/\r(?!\n)/g, '\n')));
    out.focus();
  }

  /* ---- health ---- */
  function chart(h) {
    const W = 1100, Hh = 180, P = 30;
    const qs = Object.entries(h.queues);
    const n = Math.max(1, ...qs.map(([, v]) => v.delivered.length));
    const max = Math.max(1, ...qs.flatMap(([, v]) => v.delivered));
    const colors = ['#0b4f8a', '#1b5e20', '#a4161a', '#7a4b00', '#5b2a86', '#00695c'];
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('width', W); svg.setAttribute('height', Hh + 40); svg.setAttribute('viewBox', `0 0 ${W} ${Hh + 40}`);
    const text = (x, y, s, c) => { const t = document.createElementNS(ns, 'text'); t.setAttribute('x', x); t.setAttribute('y', y); t.setAttribute('font-size', '11'); t.setAttribute('fill', c || '#1a1a1a'); t.textContent = s; svg.append(t); };
    text(2, 12, String(max)); text(2, Hh, '0');
    qs.forEach(([name, v], i) => {
      const pts = v.delivered.map((y, k) => `${P + (k * (W - P - 10)) / Math.max(1, n - 1)},${Hh - (y / max) * (Hh - 10)}`).join(' ');
      const pl = document.createElementNS(ns, 'polyline');
      pl.setAttribute('points', pts); pl.setAttribute('fill', 'none'); pl.setAttribute('stroke', colors[i % colors.length]); pl.setAttribute('stroke-width', '2');
      svg.append(pl);
      text(P + i * 160, Hh + 30, '■ ' + name, colors[i % colors.length]);
    });
    return svg;
  }
  async function loadHealth() {
    let r;
    try { r = await api('health'); } catch (e) { $('h-config').textContent = e.message; return; }
    const tb = $('h-rows');
    tb.textContent = '';
    for (const b of r.backends)
      tb.append(el('tr', { 'data-backend': b.name }, el('td', {}, b.name), el('td', { class: b.breaker === 'open' ? 'state-dead' : 'state-delivered' }, b.breaker),
        el('td', {}, b.queued), el('td', {}, b.in_flight), el('td', {}, b.delivered), el('td', {}, b.failed_attempts), el('td', {}, b.dead),
        el('td', {}, b.hour_delivered ? `${b.p50_ms} / ${b.p95_ms} / ${b.p99_ms} ms (${b.hour_delivered})` : '-'),
        el('td', {}, b.last_error ? fmt(b.last_error_ms) + ' ' + b.last_error : '')));
    const c = $('h-chart');
    c.textContent = '';
    c.append(chart(r.history));
    $('h-config').textContent = JSON.stringify(r.configuration, null, 2);
  }

  fetch('hl7-fields.json').then((r) => r.json()).then((j) => { hl7Fields = j; }).catch(() => {});
  whoami().then(() => show((location.hash || '#playground').slice(1)));
})();
