#!/usr/bin/env node
// The care team's page in headless Chromium (issue 16): the sample practice served by
// `ccm-gateway serve`, signed in through the page's form; the worklist rows and the funnel shown
// are the API's for the same month; no console error and no request leaves the gateway's origin;
// the patient view opens from the keyboard and shows the evidence of $ccm-status.
//
//   node tests/browser/page.test.mjs --binary build/ccm-gateway --out build/tests/browser
//                                    [--docs-screenshot docs/images/worklist.png]
//
// Run by ctest as `browser` (tests/CMakeLists.txt). Screenshots go to --out (test artifacts, not
// committed); scripts/screenshot passes --docs-screenshot for the one in docs/worklist.md.
// Exit status 0 when every check held, 1 otherwise (each failure printed), 2 when it cannot run.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { apiJson, checkPrerequisites, launchBrowser, MONTH, SetupError, signIn, startPractice } from './harness.mjs';

const REASON_ORDER = ['near-threshold', 'eligible-no-consent', 'consented-no-active-care-plan',
  'care-plan-incomplete', 'care-plan-review-due', 'blocked'];
const TIMEOUT = 30_000;

function parseArgs(argv) {
  const out = { binary: '', out: '', docsScreenshot: '' };
  for (let i = 0; i < argv.length; i++) {
    const value = argv[i + 1];
    if (argv[i] === '--binary') out.binary = value;
    else if (argv[i] === '--out') out.out = value;
    else if (argv[i] === '--docs-screenshot') out.docsScreenshot = value;
    else { console.error(`unknown argument ${argv[i]}`); process.exit(2); }
    i++;
  }
  if (!out.binary || !out.out) {
    console.error('usage: page.test.mjs --binary BUILD/ccm-gateway --out DIR [--docs-screenshot PNG]');
    process.exit(2);
  }
  return out;
}

const started = Date.now();
const timings = [];
function mark(what) {
  timings.push(`${what}: ${((Date.now() - started) / 1000).toFixed(2)} s`);
}

const failures = [];
// A named check: its failure is recorded and the test goes on, so one run shows every problem.
async function check(name, fn) {
  try {
    await fn();
    console.log(`ok   ${name}`);
  } catch (e) {
    failures.push(name);
    console.log(`FAIL ${name}\n     ${String(e.message || e).split('\n').join('\n     ')}`);
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  checkPrerequisites(args.binary);
  fs.mkdirSync(args.out, { recursive: true });
  const practice = await startPractice({ binary: args.binary, log: (m) => console.log(`# ${m}`) });
  mark('practice synced and served');
  let browser;
  let docsPicture;
  try {
    browser = await launchBrowser();
    mark('chromium started');
    const page = await browser.newPage();
    const origin = practice.origin;

    // No request may leave the gateway's origin: each one is checked, and any other is aborted.
    const foreign = [];
    await page.setRequestInterception(true);
    page.on('request', (request) => {
      const url = request.url();
      if (url.startsWith(`${origin}/`) || url === origin || url.startsWith('data:')) {
        request.continue();
      } else {
        foreign.push(url);
        request.abort('blockedbyclient');
      }
    });
    // Console errors and uncaught exceptions; the deliberate wrong sign-in below answers 401, which
    // Chromium logs as a failed resource: that one is expected and allowed while `allow401` holds.
    const consoleErrors = [];
    let allow401 = false;
    page.on('console', (message) => {
      if (message.type() !== 'error') return;
      const where = message.location() && message.location().url;
      if (allow401 && where && where.endsWith('/$login') && message.text().includes('401')) return;
      consoleErrors.push(`${message.text()} (${where || 'no location'})`);
    });
    page.on('pageerror', (error) => consoleErrors.push(`uncaught: ${error.message}`));
    // A request of the page that got no answer. (Chromium reports a 204 answer -- POST /$logout --
    // as net::ERR_ABORTED after its response arrived: an answer is an answer.)
    page.on('requestfailed', (request) => {
      if (foreign.includes(request.url()) || request.response()) return;
      consoleErrors.push(`request failed: ${request.url()} ${request.failure()?.errorText}`);
    });

    const response = await page.goto(`${origin}/?month=${MONTH}`, { waitUntil: 'networkidle0', timeout: TIMEOUT });
    mark('page loaded');
    await check('GET / is the page, with its security headers', async () => {
      assert.equal(response.status(), 200);
      const headers = response.headers();
      assert.match(headers['content-security-policy'] || '', /default-src 'self'/);
      assert.equal(headers['x-content-type-options'], 'nosniff');
    });
    await check('signed out: the login form shows and no patient data is on the page', async () => {
      await page.waitForSelector('#login-form', { visible: true, timeout: TIMEOUT });
      assert.equal(await page.$eval('#app-view', (e) => e.hidden), true);
      const text = await page.$eval('body', (e) => e.innerText);
      assert.doesNotMatch(text, /Patient\//);
    });

    await check('a wrong token is refused with a clear message', async () => {
      allow401 = true;
      await page.type('#token', 'not-the-token');
      await page.click('#login-form button[type=submit]');
      await page.waitForSelector('#login-error:not([hidden])', { timeout: TIMEOUT });
      const message = await page.$eval('#login-error', (e) => e.textContent);
      assert.match(message, /not accepted/);
      assert.equal(await page.$eval('#token', (e) => e.value), '', 'the field is cleared');
      allow401 = false;
    });

    await signIn(page, practice.token, MONTH, TIMEOUT);
    await page.waitForNetworkIdle({ idleTime: 200, timeout: TIMEOUT });
    mark('signed in and the month shown');

    const [worklist, program, names] = await Promise.all([
      apiJson(practice, `/$ccm-worklist?month=${MONTH}`),
      apiJson(practice, `/$ccm-program?month=${MONTH}`),
      apiJson(practice, `/$ccm-patients?month=${MONTH}`),
    ]);

    await check('the session cookie is HttpOnly (the page script cannot read it)', async () => {
      const cookies = await page.cookies();
      const session = cookies.find((c) => c.name === 'ccm_session');
      assert.ok(session, 'a ccm_session cookie');
      assert.equal(session.httpOnly, true);
      assert.equal(session.sameSite, 'Strict');
      assert.equal(await page.evaluate(() => document.cookie.includes('ccm_session')), false);
    });

    await check('the worklist rows are the API\'s items, grouped by reason, in its order', async () => {
      const shown = await page.$$eval('#worklist tbody tr[data-patient]',
        (rows) => rows.map((r) => `${r.dataset.reason} ${r.dataset.patient}`));
      const expected = REASON_ORDER.flatMap((reason) =>
        worklist.items.filter((i) => i.reason === reason).map((i) => `${i.reason} ${i.patient}`));
      assert.ok(expected.length > 0, 'the sample practice has work in the month');
      assert.deepEqual(shown, expected);
    });

    await check('each row names its patient (from $ccm-patients) and says what is worth', async () => {
      const byRef = new Map(names.patients.map((p) => [p.patient, p.name]));
      const rows = await page.$$eval('#worklist tbody tr[data-patient]', (trs) => trs.map((r) => ({
        patient: r.dataset.patient,
        name: r.querySelector('button[data-patient]').textContent,
        worth: r.querySelector('td.num').textContent,
      })));
      rows.forEach((r, i) => {
        assert.equal(r.name, byRef.get(r.patient) || r.patient, `row ${i}`);
        assert.match(r.worth, /^\d[\d,]*\.\d\d USD$/, `row ${i}`);
      });
    });

    await check('near-threshold rows have a progress bar toward the next code', async () => {
      const near = worklist.items.filter((i) => i.reason === 'near-threshold');
      const bars = await page.$$eval('table[data-reason="near-threshold"] tbody tr svg[role=img]',
        (svgs) => svgs.map((s) => s.getAttribute('aria-label')));
      assert.equal(bars.length, near.length);
      near.forEach((item, i) => assert.match(bars[i], new RegExp(`toward ${item.nextCode}$`)));
    });

    await check('the funnel shows the API\'s counts', async () => {
      const shown = await page.$$eval('#funnel-table tbody tr[data-stage]',
        (rows) => rows.map((r) => [r.dataset.stage, Number(r.querySelector('td.count').textContent)]));
      assert.deepEqual(shown, program.funnel.map((f) => [f.stage, f.count]));
      const bars = await page.$$eval('#funnel svg rect.stage', (rects) => rects.length);
      assert.equal(bars, program.funnel.length, 'one SVG bar per stage');
    });

    await check('the totals show the API\'s money and days left', async () => {
      const totals = await page.$$eval('#totals [data-key]', (divs) =>
        Object.fromEntries(divs.map((d) => [d.dataset.key, d.querySelector('dd').textContent])));
      const amount = (s) => Number(s.replace(/,/g, '').split(' ')[0]);
      assert.equal(amount(totals.billed), Number(program.revenue.billed), totals.billed);
      assert.equal(amount(totals['at-stake']), Number(program.revenue.atStake), totals['at-stake']);
      assert.equal(Number(totals.population), program.funnel[0].count);
      assert.equal(totals['days-left'], worklist.open ? String(worklist.daysLeft) : 'closed');
    });

    await check('the downloads link the billing summary as CSV and FHIR (_format)', async () => {
      const links = await page.$$eval('#downloads a', (as) => as.map((a) => a.getAttribute('href')));
      assert.deepEqual(links, [`/$ccm-billing-summary?month=${MONTH}&_format=csv`,
        `/$ccm-billing-summary?month=${MONTH}&_format=json`]);
      // Fetched as the browser would (its cookie, no token): an attachment of the right type.
      const got = await page.evaluate(async (href) => {
        const r = await fetch(href);
        return { status: r.status, type: r.headers.get('content-type'), disposition: r.headers.get('content-disposition'), head: (await r.text()).slice(0, 40) };
      }, links[0]);
      assert.equal(got.status, 200, JSON.stringify(got));
      assert.equal(got.type, 'text/csv; charset=utf-8');
      assert.match(got.disposition, /^attachment; filename="ccm-billing-summary-2026-10\.csv"$/);
      assert.match(got.head, /^action,patient,month/);
    });

    await page.screenshot({ path: path.join(args.out, 'page.png'), fullPage: true });
    if (args.docsScreenshot) {
      // The documentation's picture: the totals, charts and the first worklist groups. Written at
      // the end, and only when every check passed.
      docsPicture = await page.screenshot({ clip: { x: 0, y: 0, width: 1280, height: 1560 }, captureBeyondViewport: true });
    }
    mark('screenshots of the page');

    await check('the patient view opens from the keyboard with the evidence of $ccm-status', async () => {
      // The first row whose record has care-management encounters (the evidence of its minutes).
      const candidates = worklist.items.filter((i) => i.reason === 'near-threshold').concat(worklist.items);
      let chosen;
      let status;
      for (const item of candidates) {
        status = await apiJson(practice, `/Patient/${encodeURIComponent(item.patient.slice(8))}/$ccm-status?month=${MONTH}`);
        if (status.evidence.encounters.length) { chosen = item; break; }
      }
      assert.ok(chosen, 'a worklist patient with encounters in the month');
      await page.focus(`button[data-patient="${chosen.patient}"]`);
      await page.keyboard.press('Enter');
      await page.waitForSelector(`#patient-dialog[open] #patient-body[data-patient="${chosen.patient}"] table.evidence`, { timeout: TIMEOUT });
      const shown = await page.$$eval('#patient-body table.evidence tbody tr', (rows) => rows.map((r) => r.querySelector('th').textContent));
      assert.deepEqual(shown, status.evidence.encounters.map((e) => e.reference));
      const facts = await page.$eval('#patient-body dl.facts', (dl) => dl.innerText);
      assert.ok(facts.includes(status.consent), `consent ${status.consent} in ${facts}`);
      await page.screenshot({ path: path.join(args.out, 'patient.png') });
      await page.keyboard.press('Escape');
      await page.waitForSelector('#patient-dialog:not([open])', { timeout: TIMEOUT });
      const focused = await page.evaluate(() => document.activeElement && document.activeElement.dataset.patient);
      assert.equal(focused, chosen.patient, 'focus returns to the row');
    });
    mark('patient view');

    await check('signing out returns to the form, and the old session is gone', async () => {
      await page.click('#logout');
      await page.waitForSelector('#login-form', { visible: true, timeout: TIMEOUT });
      const after = await page.evaluate(async () => (await fetch('/$session')).json());
      assert.equal(after.authenticated, false);
    });

    await page.waitForNetworkIdle({ idleTime: 100, timeout: TIMEOUT });
    await check('no console errors', async () => assert.deepEqual(consoleErrors, []));
    await check('no request left the gateway\'s origin', async () => assert.deepEqual(foreign, []));
  } finally {
    if (browser) await browser.close();
    if (failures.length) {
      console.log(`# gateway log (last lines):\n${practice.serveLog.slice(-20).join('\n')}`);
    }
    await practice.stop();
  }
  mark('done');
  console.log(`# timings: ${timings.join('; ')}`);
  console.log(`# screenshots: ${path.join(args.out, 'page.png')}, ${path.join(args.out, 'patient.png')}`);
  if (failures.length) {
    console.log(`${failures.length} check(s) failed: ${failures.join('; ')}`);
    process.exit(1);
  }
  if (docsPicture) {
    fs.writeFileSync(args.docsScreenshot, docsPicture);
    console.log(`# ${args.docsScreenshot} written`);
  }
  console.log('all browser checks passed');
}

main().catch((e) => {
  console.error(e instanceof SetupError ? `cannot run the browser test: ${e.message}` : (e.stack || String(e)));
  process.exit(e instanceof SetupError ? 2 : 1);
});
