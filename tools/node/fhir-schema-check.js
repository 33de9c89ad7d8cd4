// Validates FHIR JSON files against the official FHIR R4 JSON schema with an
// independent validator (ajv via @asymmetrik/fhir-json-schema-validator).
// Usage: node fhir-schema-check.js FILE...   Prints one line per file; exit 1 on any invalid.
'use strict';
const fs = require('fs');
const JSONSchemaValidator = require('@asymmetrik/fhir-json-schema-validator');
const v = new JSONSchemaValidator();
let bad = 0;
for (const f of process.argv.slice(2)) {
  const res = JSON.parse(fs.readFileSync(f, 'utf8'));
  const errors = v.validate(res, true);
  if (errors.length) {
    bad++;
    console.log(`${f}: INVALID ${JSON.stringify(errors.slice(0, 3))}`);
  } else {
    console.log(`${f}: valid against the FHIR R4 JSON schema`);
  }
}
process.exit(bad ? 1 : 0);
