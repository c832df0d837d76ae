// The care team's page (docs/worklist.md, "The page"). Plain JavaScript, no library: it asks the
// gateway's own API (same origin, the session cookie) and builds the page with DOM calls only --
// every value from the API goes in as text, never as HTML, and the Content-Security-Policy allows
// no inline script or style.
'use strict';

(() => {
  const REASONS = [
    ['near-threshold', 'Near a threshold', 'Time logged, short of the next code: a call today may still count.'],
    ['eligible-no-consent', 'Eligible, no consent', 'Chronic-eligible patients who have not consented to care management.'],
    ['consented-no-active-care-plan', 'Consented, no active care plan', 'Consent is in effect but no care plan is active.'],
    ['care-plan-incomplete', 'Care plan incomplete', 'The active care plan lacks elements CMS requires.'],
    ['care-plan-review-due', 'Care plan review due', 'The care plan has not been revised within the review period.'],
    ['blocked', 'Blocked', 'Billing is blocked: deceased, merged or inactive records, or data errors.'],
  ];
  const STAGES = { population: 'Patients with data', eligible: 'Chronic-eligible', consented: 'Consented', billable: 'Billable' };
  const SVG = 'http://www.w3.org/2000/svg';

  const $ = (id) => document.getElementById(id);
  const state = { month: '', worklist: null, program: null, names: new Map(), opener: null };

  // --- DOM helpers: elements from data, text only -----------------------------------------------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  function svg(tag, attrs, ...children) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    for (const c of children.flat()) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return el;
  }
  function clear(el) { el.replaceChildren(); return el; }

  const money = (v, currency) => (v === null || v === undefined) ? '—'
    : `${Number(v).toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 })} ${currency || ''}`.trim();
  const share = (v) => `${(Number(v) * 100).toFixed(1)} %`;
  const clock = (seconds) => `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, '0')}`;
  const idOf = (reference) => reference.slice(reference.indexOf('/') + 1);
  const nameOf = (reference) => state.names.get(reference) || reference;
  const monthName = (m) => {
    const [y, mo] = m.split('-').map(Number);
    return new Date(Date.UTC(y, mo - 1, 1)).toLocaleString('en-US', { month: 'long', year: 'numeric', timeZone: 'UTC' });
  };

  // --- the API ----------------------------------------------------------------------------------
  class AuthError extends Error {}
  function outcomeText(body) {
    const issue = body && body.resourceType === 'OperationOutcome' && body.issue && body.issue[0];
    return issue ? (issue.diagnostics || (issue.details && issue.details.text) || issue.code) : '';
  }
  async function api(path, options = {}) {
    const response = await fetch(path, {
      credentials: 'same-origin',
      ...options,
      // X-Requested-With: the gateway refuses a cookie-authenticated POST without it or a
      // same-origin Origin (a cross-site form can send neither).
      headers: { Accept: 'application/json', 'X-Requested-With': 'ccm-gateway', ...(options.headers || {}) },
    });
    if (response.status === 401) throw new AuthError(outcomeText(await response.json().catch(() => null)));
    if (response.status === 204) return null;
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new Error(outcomeText(body) || `HTTP ${response.status}`);
    return body;
  }
  const q = (m) => `month=${encodeURIComponent(m)}`;

  // --- sign in and out --------------------------------------------------------------------------
  function showLogin(message) {
    $('app-view').hidden = true;
    $('account').hidden = true;
    $('login-view').hidden = false;
    const error = $('login-error');
    error.hidden = !message;
    error.textContent = message || '';
    $('token').focus();
  }
  function showApp(principal) {
    $('login-view').hidden = true;
    $('app-view').hidden = false;
    $('account').hidden = false;
    $('who').textContent = principal ? `Signed in as ${principal}` : 'Signed in';
  }
  async function login(event) {
    event.preventDefault();
    const token = $('token').value;
    if (!token) { showLogin('Enter your API token.'); return; }
    try {
      const session = await api('/$login', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ token }),
      });
      $('token').value = '';
      showApp(session.principal);
      await load();
    } catch (e) {
      $('token').value = '';
      showLogin(e instanceof AuthError
        ? 'That token was not accepted. Check it and try again, or ask your administrator for one.'
        : `Sign-in failed: ${e.message}`);
    }
  }
  async function logout() {
    try { await api('/$logout', { method: 'POST' }); } catch (e) { /* signed out either way */ }
    state.names = new Map();
    for (const id of ['totals', 'worklist', 'patient-body']) clear($(id));
    showLogin('');
  }

  // --- the month --------------------------------------------------------------------------------
  function setStatus(text, isError) {
    const s = $('status');
    s.textContent = text;
    s.className = isError ? 'error' : '';
  }
  async function load() {
    const month = $('month').value;
    if (!/^\d{4}-\d{2}$/.test(month)) { setStatus('Choose a month.', true); return; }
    state.month = month;
    const url = new URL(window.location.href);
    url.searchParams.set('month', month);
    window.history.replaceState(null, '', url);
    setStatus(`Loading ${monthName(month)}…`);
    $('main').setAttribute('aria-busy', 'true');
    try {
      const [program, worklist, patients] = await Promise.all([
        api(`/$ccm-program?${q(month)}`), api(`/$ccm-worklist?${q(month)}`), api(`/$ccm-patients?${q(month)}`),
      ]);
      state.program = program;
      state.worklist = worklist;
      state.names = new Map(patients.patients.filter((p) => p.name).map((p) => [p.patient, p.name]));
      renderTotals(program, worklist);
      renderFunnel(program);
      renderProjection(program);
      renderTrend(program);
      renderWorklist(worklist);
      renderDownloads(worklist);
      setStatus(`${monthName(month)}: ${worklist.items.length} item(s) as of ${new Date(worklist.asOf).toLocaleString('en-US')}.`);
      document.body.dataset.loaded = month;
    } catch (e) {
      if (e instanceof AuthError) { showLogin('Your session has ended. Sign in again.'); return; }
      setStatus(`Could not load ${month}: ${e.message}`, true);
    } finally {
      $('main').removeAttribute('aria-busy');
    }
  }

  function renderTotals(p, w) {
    const count = (stage) => p.funnel.find((f) => f.stage === stage).count;
    const rows = [
      ['population', 'Patients with data', count('population')],
      ['eligible', 'Chronic-eligible (CCM / PCM)', `${count('eligible')} (${p.eligibleByProgram.CCM} / ${p.eligibleByProgram.PCM})`],
      ['consented', 'Consented', count('consented')],
      ['billable', 'Billable', count('billable')],
      ['billed', 'Expected payment', money(p.revenue.billed, p.currency)],
      ['at-stake', w.open ? 'At stake, near a threshold' : 'Missed, short of a threshold',
        [money(p.revenue.atStake, p.currency), h('span', { class: 'sub' }, ` · ${p.revenue.nearThreshold} patient(s)`)]],
      ['days-left', 'Days left', w.open ? w.daysLeft : 'closed'],
    ];
    clear($('totals')).append(...rows.map(([key, label, value]) => h('div', { 'data-key': key }, h('dt', {}, label), h('dd', {}, value))));
  }

  function renderFunnel(p) {
    const width = 420, bar = 26, gap = 10, label = 150;
    const max = Math.max(1, p.funnel[0].count);
    const chart = svg('svg', { viewBox: `0 0 ${width} ${p.funnel.length * (bar + gap)}`, role: 'img', 'aria-labelledby': 'funnel-title funnel-desc', class: 'funnel' },
      svg('desc', { id: 'funnel-desc' }, p.funnel.map((f) => `${STAGES[f.stage]} ${f.count}`).join(', ')));
    p.funnel.forEach((f, i) => {
      const y = i * (bar + gap);
      const w = Math.max(2, ((width - label - 50) * f.count) / max);
      chart.append(
        svg('text', { x: 0, y: y + bar * 0.68, class: 'label' }, STAGES[f.stage] || f.stage),
        svg('rect', { x: label, y, width: w, height: bar, rx: 3, class: `stage stage-${f.stage}` }),
        svg('text', { x: label + w + 6, y: y + bar * 0.68, class: 'value' }, f.count));
    });
    clear($('funnel')).append(chart);
    const body = clear($('funnel-table').tBodies[0]);
    for (const f of p.funnel) {
      body.append(h('tr', { 'data-stage': f.stage },
        h('th', { scope: 'row' }, STAGES[f.stage] || f.stage),
        h('td', { class: 'num count' }, f.count),
        h('td', { class: 'num' }, f.stage === 'population' ? '' : share(f.shareOfPrevious))));
    }
  }

  function renderProjection(p) {
    const a = p.projection.assumed, o = p.projection.observed;
    const rows = [
      ['Qualify (eligible / population)', share(a.qualifyShare), share(o.qualifyShare)],
      ['Enrol (consented / eligible)', share(a.enrolShare), share(o.enrolShare)],
      ['Net per patient-month', money(a.netPerPatientMonth, p.currency), money(o.netPerPatientMonth, p.currency)],
      ['Projected per month', money(a.projectedMonthly, p.currency), money(o.projectedMonthly, p.currency)],
    ];
    clear($('projection-table').tBodies[0]).append(...rows.map(([k, x, y]) =>
      h('tr', {}, h('th', { scope: 'row' }, k), h('td', { class: 'num' }, x), h('td', { class: 'num' }, y))));
  }

  function renderTrend(p) {
    const box = clear($('trend'));
    const trend = p.trend || [];
    if (!trend.length) {
      box.append(h('p', { class: 'hint' }, 'No month has been billed through the gateway yet: the ledger is empty.'));
      return;
    }
    const width = 420, height = 130, base = 110;
    const max = Math.max(1, ...trend.map((t) => Number(t.billed)));
    const step = width / 12;
    const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-labelledby': 'trend-title trend-desc', class: 'trend' },
      svg('desc', { id: 'trend-desc' }, trend.map((t) => `${t.month}: ${money(t.billed, p.currency)}, ${t.patients} patient(s)`).join('; ')));
    trend.forEach((t, i) => {
      const hgt = Math.max(1, (base - 24) * Number(t.billed) / max);
      chart.append(
        svg('rect', { x: i * step + 4, y: base - hgt, width: step - 8, height: hgt, class: 'stage' },
          svg('title', {}, `${t.month}: ${money(t.billed, p.currency)} (${t.patients} patient(s))`)),
        svg('text', { x: i * step + step / 2, y: base - hgt - 4, class: 'tick' }, Math.round(Number(t.billed))),
        svg('text', { x: i * step + step / 2, y: height - 4, class: 'tick' }, t.month.slice(5)));
    });
    box.append(chart);
  }

  // A bar toward the next code's threshold: logged time over the threshold.
  function progress(item) {
    const target = item.thresholdMinutes * 60;
    const done = Math.min(1, item.secondsLogged / Math.max(1, target));
    const label = `${clock(item.secondsLogged)} of ${clock(target)} toward ${item.nextCode}`;
    return h('span', { class: 'progress' },
      svg('svg', { viewBox: '0 0 120 12', width: 120, height: 12, role: 'img', 'aria-label': label },
        svg('rect', { x: 0, y: 0, width: 120, height: 12, rx: 3, class: 'track' }),
        svg('rect', { x: 0, y: 0, width: Math.round(120 * done), height: 12, rx: 3, class: 'fill' })),
      h('span', { class: 'progress-text', 'aria-hidden': 'true' }, `${clock(item.secondsLogged)} / ${clock(target)}`));
  }

  function renderWorklist(w) {
    $('days-left').textContent = w.open
      ? `${w.daysLeft} day(s) left in ${monthName(w.month)}. Most valuable first.`
      : `${monthName(w.month)} has ended: near-threshold items show what was missed.`;
    const box = clear($('worklist'));
    if (!w.items.length) { box.append(h('p', {}, 'Nothing to do for this month.')); return; }
    for (const [reason, title, hint] of REASONS) {
      const items = w.items.filter((i) => i.reason === reason);
      if (!items.length) continue;
      const near = reason === 'near-threshold';
      const headId = `group-${reason}`;
      const table = h('table', { class: 'worklist', 'data-reason': reason, 'aria-labelledby': headId },
        h('thead', {}, h('tr', {},
          h('th', { scope: 'col' }, 'Patient'),
          h('th', { scope: 'col' }, 'Situation'),
          near ? h('th', { scope: 'col' }, 'Progress') : null,
          h('th', { scope: 'col', class: 'num' }, 'Worth'),
          h('th', { scope: 'col' }, 'To do'))),
        h('tbody', {}, items.map((i) => {
          const open = () => openPatient(i.patient, button);
          const button = h('button', { type: 'button', class: 'link', 'data-patient': i.patient, onclick: (e) => { e.stopPropagation(); open(); } }, nameOf(i.patient));
          return h('tr', { 'data-patient': i.patient, 'data-reason': i.reason, class: 'clickable', onclick: open },
            h('th', { scope: 'row' }, button),
            h('td', {}, i.summary, i.details && i.details.length ? h('span', { class: 'details' }, ` (${i.details.join(', ')})`) : null),
            near ? h('td', {}, progress(i)) : null,
            h('td', { class: 'num' }, money(i.value, w.currency)),
            h('td', {}, i.action || '—'));
        })));
      box.append(h('section', { class: 'group' },
        h('h3', { id: headId }, title, h('span', { class: 'count' }, ` · ${items.length}`)),
        h('p', { class: 'hint' }, hint),
        h('div', { class: 'scroll' }, table)));
    }
  }

  function renderDownloads(w) {
    const base = `/$ccm-billing-summary?${q(w.month)}`;
    const csv = $('download-csv'), fhir = $('download-fhir');
    csv.href = `${base}&_format=csv`;
    fhir.href = `${base}&_format=json`;
    $('downloads').hidden = w.open;
    $('downloads-note').textContent = w.open
      ? `The billing summary of ${monthName(w.month)} is available once the month has ended.`
      : `What ccm-gateway bill would record for ${monthName(w.month)} (a dry run: nothing is written).`;
  }

  // --- the patient view: the evidence behind each number -----------------------------------------
  async function openPatient(reference, opener) {
    const dialog = $('patient-dialog');
    state.opener = opener || null;
    $('patient-title').textContent = nameOf(reference);
    const body = clear($('patient-body'));
    body.append(h('p', { role: 'status' }, 'Loading…'));
    if (!dialog.open) dialog.showModal();
    $('patient-close').focus();
    try {
      const r = await api(`/Patient/${encodeURIComponent(idOf(reference))}/$ccm-status?${q(state.month)}`);
      renderPatient(r, reference);
    } catch (e) {
      if (e instanceof AuthError) { dialog.close(); showLogin('Your session has ended. Sign in again.'); return; }
      clear(body).append(h('p', { class: 'error', role: 'alert' }, `Could not load the patient: ${e.message}`));
    }
  }

  function renderPatient(r, reference) {
    const body = clear($('patient-body'));
    body.dataset.patient = reference;
    const mins = (m) => `${m.clinicalStaff} min staff · ${m.practitioner} min practitioner`;
    const facts = [
      ['Record', reference],
      ['Program', r.program || 'not chronic-eligible'],
      ['Consent', r.consent + (r.consentFrom ? ` since ${r.consentFrom.slice(0, 10)}` : '')],
      ['Care plan', r.carePlan + (r.carePlanCompleteness && r.carePlanCompleteness.needsReview ? ', review due' : '')],
      ['Time logged', mins(r.minutes)],
      ['Billable time', mins(r.billableMinutes)],
      ['Codes', r.billing.length ? r.billing.map((l) => `${l.code}${l.units > 1 ? ` ×${l.units}` : ''}`).join(', ') : 'none'],
      ['Expected payment', money(r.expectedPayment, r.currency)],
      ['Blocked by', r.blockedBy.length ? r.blockedBy.join(', ') : 'nothing'],
    ];
    body.append(h('dl', { class: 'facts' }, facts.map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, v)))));
    const missing = r.carePlanCompleteness ? r.carePlanCompleteness.missingElements : [];
    if (missing.length) {
      body.append(h('h3', {}, 'Care plan: CMS elements missing'), h('p', {}, missing.join(', ')));
    }

    const items = (state.worklist ? state.worklist.items : []).filter((i) => i.patient === reference);
    if (items.length) {
      body.append(h('h3', {}, 'On the worklist'),
        h('ul', {}, items.map((i) => h('li', {}, h('strong', {}, `${i.reason}: `), i.summary, i.action ? ` ${i.action}` : ''))));
    }

    if (r.billing.length) {
      body.append(h('h3', {}, 'Why these codes'), h('div', { class: 'scroll' }, h('table', {},
        h('caption', { class: 'visually-hidden' }, 'Billing lines and the encounters whose time they draw on'),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Code'), h('th', { scope: 'col', class: 'num' }, 'Units'),
          h('th', { scope: 'col', class: 'num' }, 'Amount'), h('th', { scope: 'col' }, 'Encounters counted'))),
        h('tbody', {}, r.billing.map((l) => h('tr', {}, h('th', { scope: 'row' }, l.code), h('td', { class: 'num' }, l.units),
          h('td', { class: 'num' }, money(l.amount, r.currency)), h('td', {}, l.encounters.join(', ') || '—')))))));
    }

    const encounters = r.evidence.encounters;
    body.append(h('h3', {}, 'Care-management time'));
    if (!encounters.length) {
      body.append(h('p', {}, 'No care-management encounter in the month.'));
    } else {
      body.append(h('div', { class: 'scroll' }, h('table', { class: 'evidence' },
        h('caption', { class: 'visually-hidden' }, 'Encounters of the month: whose time, and whether it counted'),
        h('thead', {}, h('tr', {}, ['Encounter', 'Code', 'Start', 'Duration', 'Whose time', 'Performer', 'Counted', 'Billable', 'Why not']
          .map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, encounters.map((e) => h('tr', {},
          h('th', { scope: 'row' }, e.reference), h('td', {}, e.code), h('td', {}, e.start ? e.start.replace('T', ' ').slice(0, 16) : '—'),
          h('td', { class: 'num' }, clock(e.seconds)),
          h('td', {}, e.timeOf === 'practitioner' ? 'practitioner' : 'clinical staff'), h('td', {}, e.performer || '—'),
          h('td', {}, e.counted ? `yes (${clock(e.countedSeconds)})` : 'no'),
          h('td', {}, e.billable ? `yes (${clock(e.billableSeconds)})` : 'no'),
          h('td', {}, e.reason || '')))))));
    }

    if (r.chronicConditions.length) {
      body.append(h('h3', {}, 'Chronic conditions'), h('ul', {}, r.chronicConditions.map((c) =>
        h('li', {}, `${c.display} (${c.conditions.join(', ')})`))));
    }
    const refs = [['Consents considered', r.evidence.consents], ['Care plans considered', r.evidence.carePlans]];
    body.append(h('dl', { class: 'facts' }, refs.map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, v.length ? v.join(', ') : 'none')))));
    if (r.notes.length) body.append(h('h3', {}, 'Notes'), h('ul', {}, r.notes.map((n) => h('li', {}, n))));
    if (r.issues.length) {
      body.append(h('h3', {}, 'Data problems'), h('ul', {}, r.issues.map((i) =>
        h('li', {}, `${i.severity} ${i.code}${i.path ? ` at ${i.path}` : ''}: ${i.message}`))));
    }
  }

  function closePatient() {
    $('patient-dialog').close();
  }

  // --- start ------------------------------------------------------------------------------------
  async function start() {
    $('login-form').addEventListener('submit', login);
    $('logout').addEventListener('click', logout);
    $('month-form').addEventListener('submit', (e) => { e.preventDefault(); load(); });
    $('patient-close').addEventListener('click', closePatient);
    $('patient-dialog').addEventListener('close', () => { if (state.opener && state.opener.isConnected) state.opener.focus(); });
    const asked = new URL(window.location.href).searchParams.get('month');
    const now = new Date();
    $('month').value = asked && /^\d{4}-\d{2}$/.test(asked) ? asked
      : `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, '0')}`;
    // Whether the browser holds a session, asked without an error status (a 401 would be logged
    // in the console of a page that is merely signed out).
    let session = { authenticated: false };
    try { session = await api('/$session'); } catch (e) { /* shown as signed out */ }
    if (session.authenticated) {
      showApp(session.principal);
      await load();
    } else {
      showLogin('');
    }
  }
  document.addEventListener('DOMContentLoaded', start);
})();
