// The sample practice behind a running `ccm-gateway serve`, and Chromium looking at it: shared by the
// browser test (page.test.mjs) and scripts/screenshot.
//
// The practice is prepared exactly as the service tests prepare it: the loopback FHIR test server
// (tests/server/server.mjs) loaded with the samples, `ccm-gateway sync --once` into a state file, then
// `ccm-gateway serve` on 127.0.0.1 and a free port (its "listening" log line says which). Everything
// listens on 127.0.0.1 only, and every process started here ends with stop().
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

export const SOURCE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CHROMIUM = process.env.CCM_CHROMIUM || '/usr/bin/chromium';
export const MONTH = '2026-10';
const SAMPLES = ['samples/synthea-10pt', 'samples/synthea-g10-2pt', 'samples/activity'];

export class SetupError extends Error {}

// Fails with what to run when a prerequisite is missing (never a silent skip).
export function checkPrerequisites(binary) {
  if (!fs.existsSync(CHROMIUM)) {
    throw new SetupError(`${CHROMIUM} not found: the browser test needs Debian's chromium. Run scripts/setup ` +
      '(it installs it), or set CCM_CHROMIUM to a Chromium binary.');
  }
  for (const dir of ['tests/browser', 'tests/server']) {
    if (!fs.existsSync(path.join(SOURCE_DIR, dir, 'node_modules'))) {
      throw new SetupError(`${dir}/node_modules is missing: run ${dir}/install.sh (scripts/test does).`);
    }
  }
  if (!binary || !fs.existsSync(binary)) throw new SetupError(`the gateway binary ${binary} does not exist: build it first`);
}

// Resolves with the first line `stream` writes that `accept` takes (its parsed value), or rejects after
// `ms` (with what the stream said) or when the process ends first.
function awaitLine(child, stream, accept, ms, what) {
  return new Promise((resolve, reject) => {
    const seen = [];
    const rl = readline.createInterface({ input: stream });
    const timer = setTimeout(() => done(new Error(`${what}: nothing after ${ms} ms; it said:\n${seen.join('\n')}`)), ms);
    const onExit = (code) => done(new Error(`${what} exited (${code}) before it was ready; it said:\n${seen.join('\n')}`));
    function done(error, value) {
      clearTimeout(timer);
      child.off('exit', onExit);
      rl.removeAllListeners('line');
      if (error) reject(error); else resolve(value);
    }
    child.on('exit', onExit);
    rl.on('line', (line) => {
      seen.push(line);
      const value = accept(line);
      if (value !== undefined) done(null, value);
    });
  });
}

// The practice: FHIR server, synced state file, and the gateway serving it.
export async function startPractice({ binary, log = () => {} }) {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ccm-browser-'));
  const children = [];
  // Should this process die before stop(), its children die with it (the FHIR server would go when
  // its stdin closed, the gateway would not).
  const killAll = () => { for (const child of children) child.kill('SIGKILL'); };
  process.once('exit', killAll);
  const stop = async () => {
    process.off('exit', killAll);
    for (const child of children.reverse()) {
      if (child.exitCode === null && child.signalCode === null) {
        const ended = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await Promise.race([ended, new Promise((resolve) => setTimeout(resolve, 10_000))]);
      }
    }
    fs.rmSync(work, { recursive: true, force: true });
  };
  try {
    // The loopback FHIR server: it exits when its stdin closes, so it never outlives this process.
    const fhir = spawn(process.execPath, [path.join(SOURCE_DIR, 'tests/server/server.mjs'), '--port', '0',
      ...SAMPLES.flatMap((s) => ['--load', path.join(SOURCE_DIR, s)])], { stdio: ['pipe', 'pipe', 'inherit'] });
    children.push(fhir);
    const { base } = await awaitLine(fhir, fhir.stdout, (l) => { try { return JSON.parse(l); } catch { return undefined; } },
      60_000, 'the test FHIR server');
    log(`FHIR server ${base}`);

    // A token of this run only; the config holds its hash (server.tokens).
    const token = crypto.randomBytes(24).toString('hex');
    const config = {
      practice: { timeZone: 'America/Chicago', billingPractitioners: ['9999999991'] },
      billing: { feeScheduleYear: 2025 },
      sources: [{ name: 'ehr', baseUrl: base, pageSize: 25 }],
      state: { path: 'state.db' },
      server: {
        address: '127.0.0.1', port: 0,
        tokens: [{ sha256: crypto.createHash('sha256').update(token).digest('hex'), name: 'care-team' }],
      },
    };
    const configPath = path.join(work, 'config.json');
    fs.writeFileSync(configPath, JSON.stringify(config, null, 2));
    const sync = spawnSync(binary, ['sync', '--once', '--month', MONTH, '--config', configPath,
      '--report', path.join(work, 'report.ndjson')], { encoding: 'utf8', timeout: 120_000 });
    if (sync.status !== 0) throw new Error(`ccm-gateway sync failed (${sync.status}):\n${sync.stderr}`);
    log('synced the sample practice');

    const gateway = spawn(binary, ['serve', '--config', configPath], { stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(gateway);
    const port = await awaitLine(gateway, gateway.stderr, (l) => {
      try {
        const e = JSON.parse(l);
        return e.event === 'listening' ? e.port : undefined;
      } catch { return undefined; }
    }, 30_000, 'ccm-gateway serve');
    // Keep reading its log (a full pipe would block it); kept for a failure message.
    const serveLog = [];
    readline.createInterface({ input: gateway.stderr }).on('line', (l) => { serveLog.push(l); });
    const origin = `http://127.0.0.1:${port}`;
    log(`gateway ${origin}`);
    return { origin, token, work, serveLog, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

// The API as a client with the bearer token sees it.
export async function apiJson(practice, pathAndQuery) {
  const r = await fetch(practice.origin + pathAndQuery, { headers: { Authorization: `Bearer ${practice.token}` } });
  if (!r.ok) throw new Error(`GET ${pathAndQuery}: HTTP ${r.status}: ${await r.text()}`);
  return r.json();
}

export async function launchBrowser() {
  const { default: puppeteer } = await import('puppeteer-core');
  const args = ['--no-first-run', '--no-default-browser-check', '--disable-gpu', '--disable-dev-shm-usage',
    '--disable-extensions', '--disable-background-networking', '--disable-sync', '--metrics-recording-only',
    '--disable-component-update', '--force-color-profile=srgb', '--font-render-hinting=none'];
  // Chromium's sandbox needs an unprivileged user; as root (CI, containers) it refuses to start without this.
  if (typeof process.getuid === 'function' && process.getuid() === 0) args.push('--no-sandbox');
  return puppeteer.launch({ executablePath: CHROMIUM, headless: true, args, defaultViewport: { width: 1280, height: 900 } });
}

// Signs in through the page's form and waits for the month to be shown.
export async function signIn(page, token, month, timeout = 30_000) {
  await page.waitForSelector('#login-form', { visible: true, timeout });
  await page.type('#token', token);
  await Promise.all([
    page.waitForSelector(`body[data-loaded="${month}"]`, { timeout }),
    page.click('#login-form button[type=submit]'),
  ]);
}
