// The admin console: sign-in, hash routing (#/overview, #/keys, …) and the pages, each reading the admin API
// with the signed-in key. The key lives in sessionStorage (this tab only) and travels only as a bearer header.
import { h, field, select, panel, table, badge, empty, fmt, isoDay, daysAgo } from './dom.js';
import { columnChart, lineChart, multiLineChart, barList } from './charts.js';

const STORE = 'tollgate.adminKey';
const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, message, code) { super(message); this.status = status; this.code = code; }
}

async function request(path, { method = 'GET', body, key } = {}) {
  const token = key || sessionStorage.getItem(STORE);
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, { method, headers, cache: 'no-store', credentials: 'omit',
    body: body === undefined ? undefined : JSON.stringify(body) });
  if (!res.ok) {
    let message = `${res.status} ${res.statusText}`, code;
    try { const j = await res.json(); message = j.error?.message || message; code = j.error?.code; } catch { /* not JSON */ }
    throw new ApiError(res.status, message, code);
  }
  return res;
}

async function api(path, opts) {
  try {
    return await (await request(path, opts)).json();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      const session = (sessionStorage.getItem(STORE) || '').startsWith(SESSION_PREFIX);
      signOut(session ? err.message : 'Your key was refused (revoked, rotated or expired). Sign in again.');
    }
    throw err;
  }
}

// ---- sign-in ----------------------------------------------------------------------------------------------
// A key, or a console session from single sign-on (a bearer token the gateway signs, kept and sent exactly like
// a key: never a cookie, so nothing is sent on the browser's own initiative). /admin/session says who it is.

let me = null;  // the signed-in identity: {key_id, name, role, team_id, org_id, session}
const SESSION_PREFIX = 'tgs.';

function hint(key) { return key.length > 12 ? `${key.slice(0, 5)}…${key.slice(-4)}` : 'key'; }

// Why this identity cannot use the console at all (null when it can).
function consoleRefusal(who) {
  if (who.role === 'team_admin' && !who.team_id) return 'it is a team_admin key that belongs to no team.';
  if (!CONSOLE_ROLES.includes(who.role)) {
    return `its role is ${who.role}, which calls models only; the console needs an admin, viewer or team_admin key.`;
  }
  return null;
}

async function signIn(event) {
  event.preventDefault();
  const input = $('signin-key');
  const error = $('signin-error');
  const key = input.value.trim();
  error.textContent = '';
  input.removeAttribute('aria-invalid');
  if (!key) { error.textContent = 'Enter an admin key.'; input.setAttribute('aria-invalid', 'true'); input.focus(); return; }
  let who;
  try {
    who = await (await request('/admin/session', { key })).json();
  } catch (err) {
    error.textContent = err.status === 401 ? `This key was refused: ${err.message}` : `Could not sign in: ${err.message}`;
    input.setAttribute('aria-invalid', 'true');
    input.select();
    return;
  }
  const refusal = consoleRefusal(who);
  if (refusal) {
    error.textContent = `This key cannot open the console: ${refusal}`;
    input.setAttribute('aria-invalid', 'true');
    input.select();
    return;
  }
  sessionStorage.setItem(STORE, key);
  input.value = '';
  me = who;
  showShell();
}

// The sign-out button: a single sign-on session is also ended at the gateway (on every replica).
async function signOutByUser() {
  const token = sessionStorage.getItem(STORE) || '';
  if (token.startsWith(SESSION_PREFIX)) {
    try { await request('/admin/session', { method: 'DELETE' }); } catch { /* expired or already ended: nothing to end */ }
  }
  signOut('Signed out.');
}

function signOut(message) {
  sessionStorage.removeItem(STORE);
  me = null;
  $('shell').hidden = true;
  $('signin').hidden = false;
  $('signin-error').textContent = message || '';
  $('signin-key').focus();
}

function whoText() {
  const token = sessionStorage.getItem(STORE) || '';
  const who = me.session ? `Signed in as ${me.session.email}` : `Signed in with ${hint(token)}`;
  return `${who} · ${me.role}${me.role === 'team_admin' ? ` of ${me.team_id}` : ''}`;
}

async function showShell() {
  if (!me) {
    try {
      me = await api('/admin/session');
    } catch (err) {
      if (err.status !== 401) signOut(`Could not sign in: ${err.message}`);
      return;  // a 401 has signed out already
    }
    const refusal = consoleRefusal(me);
    if (refusal) { signOut(`This key cannot open the console: ${refusal}`); return; }
  }
  $('signin').hidden = true;
  $('shell').hidden = false;
  $('whoami').textContent = whoText();
  gateNavigation();
  if (!location.hash) location.hash = `#/${landingPage()}`;
  else route();
}

// Single sign-on: offered when the gateway has it on; its outcome comes back in the URL fragment.
async function offerSso() {
  try {
    const res = await fetch('/auth/sso', { cache: 'no-store', credentials: 'omit' });
    const info = res.ok ? await res.json() : { enabled: false };
    if (!info.enabled) return;
    $('sso-signin').textContent = `Sign in with ${info.label}`;
    $('sso-signin').href = info.login_url;
    $('sso').hidden = false;
  } catch { /* an older gateway: keys only */ }
}

// #sso=<session> or #sso_error=<why>, from /auth/sso/callback; taken out of the address bar and history at once.
function ssoOutcome() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (!params.has('sso') && !params.has('sso_error')) return null;
  history.replaceState(null, '', location.pathname);
  if (params.has('sso')) {
    sessionStorage.setItem(STORE, params.get('sso'));
    return { ok: true };
  }
  return { ok: false, message: `Single sign-on failed: ${params.get('sso_error')}` };
}

// ---- who may open what ---------------------------------------------------------------------------------
// Mirrors the admin API's roles (docs/admin-api.md): pages a role cannot read are shown disabled, with why.

const CONSOLE_ROLES = ['admin', 'viewer', 'team_admin'];
const GATEWAY_WIDE = ['admin', 'viewer'];
const ACCESS = {
  overview: GATEWAY_WIDE, spend: CONSOLE_ROLES, keys: CONSOLE_ROLES, teams: CONSOLE_ROLES,
  models: GATEWAY_WIDE, cache: GATEWAY_WIDE, guardrails: CONSOLE_ROLES, audit: GATEWAY_WIDE,
};
const can = {
  open: (page) => !!me && (ACCESS[page] || GATEWAY_WIDE).includes(me.role),
  manageKeys: () => !!me && ['admin', 'team_admin'].includes(me.role),
  administer: () => !!me && me.role === 'admin',
};

function landingPage() { return can.open('overview') ? 'overview' : 'spend'; }

function noAccessReason(label) {
  return `${label} covers the whole gateway, so it needs an admin or viewer key. This team_admin key sees its own ` +
    `team (${me.team_id}) on Spend, Keys, Teams and Guardrails.`;
}

function gateNavigation() {
  for (const a of document.querySelectorAll('.nav a')) {
    const label = a.textContent;
    if (can.open(a.dataset.page)) { a.removeAttribute('aria-disabled'); a.removeAttribute('title'); continue; }
    a.setAttribute('aria-disabled', 'true');
    a.title = noAccessReason(label);
  }
}

function noAccessPage(label) {
  return panel(label, empty('Not available with this key', noAccessReason(label)));
}

function readOnlyNote(what, needs = 'an admin') {
  return h('p', { class: 'muted', 'data-read-only': 'true' }, `${what} needs ${needs} key; your ${me.role} key reads only.`);
}

// ---- notices and dialogs -------------------------------------------------------------------------------

function notify(text, kind = '') {
  const n = $('notice');
  n.textContent = text;
  n.className = `notice ${kind}`;
  n.hidden = !text;
}

function showSecret(key, heading) {
  $('secret-title').textContent = heading;
  $('secret-value').value = key;
  $('secret-copied').textContent = '';
  $('secret-dialog').showModal();
  $('secret-value').select();
}

function confirmAction(heading, text, okLabel) {
  const dlg = $('confirm-dialog');
  $('confirm-title').textContent = heading;
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = okLabel;
  dlg.returnValue = '';
  dlg.showModal();
  return new Promise((resolve) => dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true }));
}

function errorBox(err) {
  return h('div', { class: 'notice bad', role: 'alert' }, err instanceof ApiError ? err.message : `Something went wrong: ${err}`);
}

// ---- routing -------------------------------------------------------------------------------------------

const PAGES = {
  overview: ['Overview', overviewPage],
  spend: ['Spend & chargeback', spendPage],
  keys: ['Keys', keysPage],
  teams: ['Teams & budgets', teamsPage],
  models: ['Models & routes', modelsPage],
  cache: ['Cache', cachePage],
  guardrails: ['Guardrails', guardrailsPage],
  audit: ['Audit log', auditPage],
};
let renderSeq = 0;

async function route() {
  if (!sessionStorage.getItem(STORE) || !me) return;
  const name = (location.hash.replace(/^#\/?/, '').split('?')[0]) || landingPage();
  const [label, shown] = PAGES[name] || PAGES.overview;
  const render = can.open(name) ? shown : () => noAccessPage(label);
  for (const a of document.querySelectorAll('.nav a')) {
    if (a.dataset.page === name) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  document.title = `${label} · Tollgate admin`;
  $('page-title').textContent = label;
  $('page-actions').replaceChildren();
  notify('');
  const page = $('page');
  const seq = ++renderSeq;
  page.setAttribute('aria-busy', 'true');
  page.dataset.page = name;
  page.dataset.ready = 'false';
  page.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  try {
    const content = await render();
    if (seq !== renderSeq) return;
    page.replaceChildren(...[content].flat());
  } catch (err) {
    if (seq !== renderSeq) return;
    page.replaceChildren(errorBox(err));
  }
  page.setAttribute('aria-busy', 'false');
  page.dataset.ready = 'true';
}

function rerender() { route(); }

function actions(...nodes) { $('page-actions').replaceChildren(...nodes); }

function segmented(label, options, current, onPick) {
  return h('div', { class: 'segmented', role: 'group', 'aria-label': label },
    ...options.map(([value, text]) => h('button', { type: 'button', 'aria-pressed': String(value === current),
      onclick: () => onPick(value) }, text)));
}

function kpi(label, value, sub, attrs = {}) {
  return h('div', { class: 'card kpi', ...attrs }, h('div', { class: 'label' }, label),
    h('div', { class: 'value' }, value), sub ? h('div', { class: 'sub' }, sub) : null);
}

// ---- overview ------------------------------------------------------------------------------------------

let overviewDays = 14;

async function overviewPage() {
  actions(segmented('Time range', [[7, '7 days'], [14, '14 days'], [30, '30 days'], [90, '90 days']], overviewDays,
    (d) => { overviewDays = d; rerender(); }));
  const ov = await api(`/admin/overview?days=${overviewDays}`);
  const range = `since=${ov.since}&until=${ov.until}`;
  const [teams, models] = await Promise.all([api(`/admin/spend?by=team&${range}`), api(`/admin/spend?by=model&${range}`)]);
  const t = ov.total;
  const lat = ov.latency;
  const labels = ov.days.map((d) => fmt.day(d.day));
  const detail = (i) => ov.days[i].day;
  const errRate = t.requests ? t.errors / t.requests : 0;
  const kpis = h('div', { class: 'kpis' },
    kpi('Requests', fmt.int(t.requests), `last ${overviewDays} days`, { 'data-kpi': 'requests' }),
    kpi('Errors', fmt.int(t.errors), `${fmt.pct(errRate)} of requests`, { 'data-kpi': 'errors' }),
    // From the ledger (every replica's requests in the window); p50 / p95 are estimated from its buckets.
    kpi('Latency p50 / p95', t.requests ? `${fmt.ms(t.latency_p50_ms)} / ${fmt.ms(t.latency_p95_ms)}` : '–',
      t.requests ? `mean ${fmt.ms(t.latency_mean_ms)}, last ${overviewDays} days` : 'no requests yet', { 'data-kpi': 'latency' }),
    kpi('Spend', fmt.usd(t.cost_usd), `${fmt.int(t.input_tokens + t.output_tokens)} tokens`, { 'data-kpi': 'spend', title: `$${t.cost_usd}` }),
    kpi('Saved by the cache', fmt.usd(t.cost_saved_usd), `${fmt.int(t.cache_hits)} cache hit${t.cache_hits === 1 ? '' : 's'} at cost 0`,
      { 'data-kpi': 'saved', title: `$${t.cost_saved_usd}` }));
  const top = (report, key) => report.data.slice(0, 8).map((l) => ({ label: l[key] ?? '(none)', value: Number(l.cost_usd) }));
  const charts = h('div', { class: 'grid grid-2' },
    panel('Requests and errors per day', columnChart({ label: 'Requests and errors per day', labels, detail,
      format: fmt.int, series: [
        { name: 'requests', values: ov.days.map((d) => d.requests) },
        { name: 'errors', values: ov.days.map((d) => d.errors), cls: 'bar-2' }] })),
    panel('Spend per day (USD)', lineChart({ label: 'Spend per day in US dollars', labels, detail, name: 'spend',
      values: ov.days.map((d) => Number(d.cost_usd)), format: fmt.usd })),
    panel('Latency per day', t.requests
      ? multiLineChart({ label: 'Latency per day in milliseconds', labels, detail, format: fmt.ms, series: [
        { name: 'p50', values: ov.days.map((d) => d.latency_p50_ms), cls: 'line' },
        { name: 'p95', values: ov.days.map((d) => d.latency_p95_ms), cls: 'line-2' },
        { name: 'mean', values: ov.days.map((d) => d.latency_mean_ms), cls: 'line-3' }] })
      : empty('No latency yet', 'Requests show up here once the ledger has written them.'),
      h('p', { class: 'muted small' }, 'Every request in the ledger, cache hits and errors included; p50 and p95 are '
        + 'estimated from the ledger\'s latency buckets (exact to the bucket, not to the millisecond).')),
    panel('Latency of model calls (this process)', lat && lat.count
      ? columnChart({ label: 'Latency distribution of model calls', format: fmt.int,
        labels: lat.buckets.map((b) => (b.le_ms === null ? 'slower' : b.le_ms < 1000 ? `≤${b.le_ms} ms` : `≤${b.le_ms / 1000} s`)),
        series: [{ name: 'calls', values: lat.buckets.map((b) => b.count) }] })
      : empty('No latency yet', lat ? 'No model call has finished in this process yet.' : 'Metrics are disabled (metrics.enabled: false).'),
      lat ? h('p', { class: 'muted small' }, `This process since it started: mean ${fmt.ms(lat.mean_ms)}, p99 ${fmt.ms(lat.p99_ms)}.`) : null),
    panel('Top teams by spend', teams.data.length
      ? barList({ label: 'Top teams by spend', items: top(teams, 'team'), format: fmt.usd })
      : empty('No spend yet', 'Requests made with team keys show up here.')),
    panel('Top models by spend', models.data.length
      ? barList({ label: 'Top models by spend', items: top(models, 'model'), format: fmt.usd })
      : empty('No spend yet', 'Model calls show up here once the ledger has written them.')));
  return [kpis, charts];
}

// ---- spend ---------------------------------------------------------------------------------------------

const spendState = { by: 'team', since: isoDay(new Date()).slice(0, 8) + '01', until: isoDay(new Date()) };
const GROUPS = [['team', 'Team'], ['user', 'User'], ['model', 'Model'], ['org', 'Organization'], ['key', 'Key'], ['day', 'Day']];
// A team_admin reads its own team's spend, split by what splits a team (the API's TEAM_GROUP_BYS).
const TEAM_GROUPS = ['user', 'model', 'key', 'day'];
const spendGroups = () => (me.role === 'team_admin' ? GROUPS.filter(([g]) => TEAM_GROUPS.includes(g)) : GROUPS);

async function exportCsv() {
  const { by, since, until } = spendState;
  const res = await request(`/admin/spend?by=${by}&since=${since}&until=${until}&format=csv`);
  const blob = await res.blob();
  const name = /filename="([^"]+)"/.exec(res.headers.get('content-disposition') || '')?.[1] || `spend-by-${by}.csv`;
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 5000);
}

async function spendPage() {
  const st = spendState;
  if (!spendGroups().some(([g]) => g === st.by)) st.by = spendGroups()[0][0];
  const csv = h('button', { type: 'button', class: 'btn', id: 'export-csv', onclick: () => exportCsv().catch((e) => notify(e.message, 'bad')) },
    'Export CSV');
  actions(csv);
  const by = select('by', spendGroups(), st.by);
  const since = h('input', { type: 'date', name: 'since', value: st.since, max: isoDay(new Date()) });
  const until = h('input', { type: 'date', name: 'until', value: st.until, max: isoDay(new Date()) });
  const form = h('form', { class: 'form-row', onsubmit: (e) => {
    e.preventDefault();
    Object.assign(st, { by: by.value, since: since.value, until: until.value });
    rerender();
  } }, field('Group by', by), field('From (UTC)', since), field('To (UTC, included)', until),
  h('div', { class: 'field' }, h('button', { type: 'submit', class: 'btn btn-primary' }, 'Show report')));
  const quick = segmented('Quick ranges', [['7', 'Last 7 days'], ['30', 'Last 30 days'], ['month', 'This month']], null, (v) => {
    st.until = isoDay(new Date());
    st.since = v === 'month' ? st.until.slice(0, 8) + '01' : daysAgo(Number(v) - 1);
    rerender();
  });
  const report = await api(`/admin/spend?by=${st.by}&since=${st.since}&until=${st.until}`);
  const label = GROUPS.find(([g]) => g === st.by)[1];
  const name = (l) => l[st.by] ?? '(none)';
  const cols = [
    { label, cell: (l) => (l === report.total ? 'Total' : name(l)) },
    { label: 'Requests', num: true, cell: (l) => fmt.int(l.requests) },
    { label: 'Errors', num: true, cell: (l) => fmt.int(l.errors) },
    { label: 'Input tokens', num: true, cell: (l) => fmt.int(l.input_tokens) },
    { label: 'Output tokens', num: true, cell: (l) => fmt.int(l.output_tokens) },
    { label: 'Cached tokens', num: true, cell: (l) => fmt.int(l.cached_tokens) },
    { label: 'Cost', num: true, cell: (l) => fmt.usd(l.cost_usd), title: (l) => `$${l.cost_usd}` },
  ];
  const items = report.data.filter((l) => Number(l.cost_usd) > 0).slice(0, 10).map((l) => ({ label: name(l), value: Number(l.cost_usd) }));
  return [
    panel('Report', form, h('div', { class: 'row' }, quick)),
    report.data.length ? panel(`Top ${label.toLowerCase()}s by cost`, items.length
      ? (st.by === 'day'
        ? lineChart({ label: 'Spend per day', labels: report.data.map((l) => fmt.day(l.day)), name: 'spend', values: report.data.map((l) => Number(l.cost_usd)), format: fmt.usd })
        : barList({ label: `Top ${label.toLowerCase()}s by cost`, items, format: fmt.usd }))
      : h('p', { class: 'muted' }, 'Nothing cost money in this range.')) : null,
    panel(h('div', { class: 'panel-head' }, h('h2', {}, `Spend by ${label.toLowerCase()}`),
      h('span', { class: 'muted small' }, `${report.since} to ${report.until}, UTC, both days included`
        + (me.role === 'team_admin' ? `; team ${me.team_id} only` : ''))),
    report.data.length ? table(cols, report.data, { caption: `Spend by ${st.by}`, total: report.total })
      : empty('No spend in this range', 'Pick another range, or send some traffic through the gateway.')),
  ].filter(Boolean);
}

// ---- keys ----------------------------------------------------------------------------------------------

function keyActionsTitle() {
  return can.manageKeys() ? null : 'Rotating and revoking keys needs an admin or team_admin key.';
}

function keyStatus(k) {
  if (k.revoked_at) return badge('revoked', 'bad');
  if (k.expires_at && k.expires_at * 1000 < Date.now()) return badge('expired', 'warn');
  return badge('active', 'good');
}

async function keysPage() {
  const [keys, teams] = await Promise.all([api('/admin/keys'), api('/admin/teams').catch(() => ({ data: [] }))]);
  const name = h('input', { name: 'name', required: true, maxlength: 200, placeholder: 'billing-service' });
  const ownTeam = me.role === 'team_admin';  // its keys are its team's, with roles it may hand out
  const team = select('team_id', [...(ownTeam ? [] : [['', 'No team']]), ...teams.data.map((t) => [t.id, `${t.name} (${t.id})`])],
    ownTeam ? me.team_id : '');
  const user = h('input', { name: 'user_id', placeholder: 'optional user id' });
  const roles = [['user', 'user: call models'], ['viewer', 'viewer: read reports'], ['team_admin', 'team_admin'], ['admin', 'admin']];
  const role = select('role', ownTeam ? roles.filter(([r]) => r === 'user' || r === 'team_admin') : roles, 'user');
  const rpm = h('input', { name: 'rpm', type: 'number', min: 1, step: 1, placeholder: 'no limit' });
  const budget = h('input', { name: 'budget', type: 'number', min: 0, step: 'any', placeholder: 'no budget' });
  const period = select('period', [['monthly', 'monthly'], ['weekly', 'weekly'], ['daily', 'daily'], ['total', 'total']], 'monthly');
  const err = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'grid', id: 'create-key', onsubmit: async (e) => {
    e.preventDefault();
    err.textContent = '';
    const body = { name: name.value.trim() || undefined, role: role.value };
    if (team.value) body.team_id = team.value;
    if (user.value.trim()) body.user_id = user.value.trim();
    if (rpm.value) body.limits = { rpm: Number(rpm.value) };
    if (budget.value) body.budget = { limit_usd: Number(budget.value), period: period.value };
    try {
      const made = await api('/admin/keys', { method: 'POST', body });
      showSecret(made.key, `Key “${made.name}” created`);
      await refresh();
      form.reset();
    } catch (ex) { err.textContent = ex.message; }
  } },
  h('div', { class: 'form-row' }, field('Name', name), field('Team', team), field('User', user), field('Role', role)),
  h('div', { class: 'form-row' }, field('Requests per minute', rpm), field('Budget (USD)', budget), field('Budget period', period),
    h('div', { class: 'field' }, h('button', { type: 'submit', class: 'btn btn-primary' }, 'Create key'))), err);

  const list = h('div', { id: 'key-list' });
  async function act(k, what) {
    const verb = what === 'revoke' ? 'Revoke' : 'Rotate';
    const text = what === 'revoke'
      ? `“${k.name}” (${k.key_hint}) will be refused from now on. This cannot be undone.`
      : `“${k.name}” gets a new secret; the old one (${k.key_hint}) stops working at once.`;
    if (!(await confirmAction(`${verb} key?`, text, `${verb} key`))) return;
    try {
      const out = await api(`/admin/keys/${encodeURIComponent(k.id)}/${what}`, { method: 'POST' });
      if (what === 'rotate') showSecret(out.key, `New secret for “${out.name}”`);
      else notify(`Key “${k.name}” revoked.`, 'good');
      await refresh();
    } catch (ex) { notify(ex.message, 'bad'); }
  }
  async function refresh(data) {
    const all = data || (await api('/admin/keys'));
    const rows = [...all.data].reverse();  // newest first
    list.replaceChildren(rows.length ? table([
      { label: 'Name', cell: (k) => h('strong', {}, k.name) },
      { label: 'Key', cell: (k) => h('code', {}, k.key_hint) },
      { label: 'Team', cell: (k) => k.team_id || '–' },
      { label: 'User', cell: (k) => k.user_id || '–' },
      { label: 'Role', cell: (k) => k.role },
      { label: 'Limits', cell: (k) => [k.limits?.rpm ? `${k.limits.rpm} rpm` : '', k.budget ? `${fmt.usd(k.budget.limit_usd)}/${k.budget.period}` : ''].filter(Boolean).join(', ') || '–' },
      { label: 'Created', cell: (k) => fmt.time(k.created_at) },
      { label: 'Status', cell: (k) => keyStatus(k) },
      { label: 'Actions', cell: (k) => h('div', { class: 'row' },
        h('button', { type: 'button', class: 'btn btn-sm', disabled: !!k.revoked_at || !can.manageKeys(), title: keyActionsTitle(),
          'aria-label': `Rotate key ${k.name}`, onclick: () => act(k, 'rotate') }, 'Rotate'),
        h('button', { type: 'button', class: 'btn btn-sm btn-danger', disabled: !!k.revoked_at || !can.manageKeys(), title: keyActionsTitle(),
          'aria-label': `Revoke key ${k.name}`, onclick: () => act(k, 'revoke') }, 'Revoke')) },
    ].map((c) => ({ ...c })), rows, { caption: 'Virtual keys' })
      : empty('No keys yet', 'Create one above; its secret is shown once.'));
    for (const [i, tr] of [...list.querySelectorAll('tbody tr')].entries()) {
      tr.dataset.keyId = rows[i].id;
      tr.dataset.status = rows[i].revoked_at ? 'revoked' : 'active';
    }
  }
  await refresh(keys);
  return [panel('Create a key', can.manageKeys() ? form : readOnlyNote('Creating, rotating and revoking keys', 'an admin or team_admin')), panel('Keys', list)];
}

// ---- teams and budgets ---------------------------------------------------------------------------------

function periodStart(period) {
  const now = new Date();
  if (period === 'daily') return isoDay(now);
  if (period === 'weekly') return daysAgo((now.getUTCDay() + 6) % 7);
  if (period === 'monthly') return isoDay(now).slice(0, 8) + '01';
  return '1970-01-01';
}

function limitsText(limits) {
  const parts = Object.entries(limits || {}).filter(([, v]) => v !== null && v !== undefined).map(([k, v]) => `${fmt.int(v)} ${k}`);
  return parts.join(', ') || '–';
}

async function teamsPage() {
  const [orgs, teams] = await Promise.all([api('/admin/orgs'), api('/admin/teams')]);
  const periods = [...new Set(teams.data.filter((t) => t.budget).map((t) => t.budget.period)), 'monthly'];
  const today = isoDay(new Date());
  const spendBy = {};
  await Promise.all(periods.map(async (p) => {
    if (me.role === 'team_admin') {  // its spend report is its own team's already (and cannot group by team)
      const rep = await api(`/admin/spend?by=day&since=${periodStart(p)}&until=${today}`);
      spendBy[p] = { [me.team_id]: rep.total };
      return;
    }
    const rep = await api(`/admin/spend?by=team&since=${periodStart(p)}&until=${today}`);
    spendBy[p] = Object.fromEntries(rep.data.map((l) => [l.team, l]));
  }));
  const cols = [
    { label: 'Team', cell: (t) => h('div', {}, h('strong', {}, t.name), h('div', { class: 'muted small' }, t.id)) },
    { label: 'Organization', cell: (t) => t.org_id },
    { label: 'Budget', cell: (t) => (t.budget ? `${fmt.usd(t.budget.limit_usd)} ${t.budget.period}` : 'none') },
    { label: 'Spent this period', num: true, cell: (t) => fmt.usd(spendBy[t.budget?.period || 'monthly'][t.id]?.cost_usd || 0),
      title: (t) => `$${spendBy[t.budget?.period || 'monthly'][t.id]?.cost_usd || '0'}` },
    { label: 'Used', cell: (t) => {
      if (!t.budget) return '–';
      const spent = Number(spendBy[t.budget.period][t.id]?.cost_usd || 0);
      const share = t.budget.limit_usd > 0 ? spent / t.budget.limit_usd : 1;
      const kind = share >= 1 ? 'bad' : share >= 0.8 ? 'warn' : '';
      return h('div', { class: 'row' }, h('div', { class: `meter ${kind}`, role: 'meter', 'aria-valuemin': 0, 'aria-valuemax': 100,
        'aria-valuenow': Math.round(share * 100), 'aria-label': `${t.name} budget used` },
      h('span', { style: null, 'data-share': share })), h('span', { class: 'small' }, fmt.pct(Math.min(share, 9.99))));
    } },
    { label: 'Limits', cell: (t) => limitsText(t.limits) },
    { label: 'Models', cell: (t) => (t.allowed_models?.length ? t.allowed_models.join(', ') : 'all') },
  ];
  const teamTable = teams.data.length ? table(cols, teams.data, { caption: 'Teams' }) : empty('No teams yet', 'Create one below.');
  // Meter widths through the CSSOM (the page's CSP allows no inline style attributes).
  for (const bar of teamTable.querySelectorAll('[data-share]')) bar.style.width = `${Math.min(100, Number(bar.dataset.share) * 100)}%`;

  const orgSel = select('org_id', orgs.data.map((o) => [o.id, `${o.name} (${o.id})`]), orgs.data[0]?.id);
  const tid = h('input', { name: 'id', placeholder: 'payments', pattern: '[A-Za-z0-9][A-Za-z0-9_.-]{0,63}' });
  const tname = h('input', { name: 'name', required: true, placeholder: 'Payments' });
  const tbudget = h('input', { name: 'budget', type: 'number', min: 0, step: 'any', placeholder: 'no budget' });
  const tperiod = select('period', [['monthly', 'monthly'], ['weekly', 'weekly'], ['daily', 'daily'], ['total', 'total']], 'monthly');
  const terr = h('p', { class: 'error', role: 'alert' });
  const teamForm = h('form', { class: 'grid', onsubmit: async (e) => {
    e.preventDefault();
    const body = { org_id: orgSel.value, name: tname.value.trim() };
    if (tid.value.trim()) body.id = tid.value.trim();
    if (tbudget.value) body.budget = { limit_usd: Number(tbudget.value), period: tperiod.value };
    try { await api('/admin/teams', { method: 'POST', body }); rerender(); } catch (ex) { terr.textContent = ex.message; }
  } }, h('div', { class: 'form-row' }, field('Organization', orgSel), field('Team id', tid), field('Name', tname),
    field('Budget (USD)', tbudget), field('Budget period', tperiod),
    h('div', { class: 'field' }, h('button', { type: 'submit', class: 'btn btn-primary', disabled: !orgs.data.length }, 'Create team'))), terr);
  const oname = h('input', { name: 'name', required: true, placeholder: 'Acme' });
  const oid = h('input', { name: 'id', placeholder: 'acme' });
  const oerr = h('p', { class: 'error', role: 'alert' });
  const orgForm = h('form', { class: 'grid', onsubmit: async (e) => {
    e.preventDefault();
    const body = { name: oname.value.trim() };
    if (oid.value.trim()) body.id = oid.value.trim();
    try { await api('/admin/orgs', { method: 'POST', body }); rerender(); } catch (ex) { oerr.textContent = ex.message; }
  } }, h('div', { class: 'form-row' }, field('Organization id', oid), field('Name', oname),
    h('div', { class: 'field' }, h('button', { type: 'submit', class: 'btn' }, 'Create organization'))), oerr);
  const orgTable = orgs.data.length ? table([
    { label: 'Organization', cell: (o) => h('div', {}, h('strong', {}, o.name), h('div', { class: 'muted small' }, o.id)) },
    { label: 'Teams', num: true, cell: (o) => fmt.int(teams.data.filter((t) => t.org_id === o.id).length) },
    { label: 'Budget', cell: (o) => (o.budget ? `${fmt.usd(o.budget.limit_usd)} ${o.budget.period}` : 'none') },
    { label: 'Limits', cell: (o) => limitsText(o.limits) },
    { label: 'Created', cell: (o) => fmt.time(o.created_at) },
  ], orgs.data, { caption: 'Organizations' }) : empty('No organizations yet', 'Teams belong to an organization: create one first.');
  if (!can.administer()) {
    return [panel('Teams', teamTable), panel('Organizations', orgTable), readOnlyNote('Creating teams and organizations')];
  }
  return [panel('Teams', teamTable), panel('New team', teamForm), panel('Organizations', orgTable), panel('New organization', orgForm)];
}

// ---- models and routes ---------------------------------------------------------------------------------

function breakerBadge(b) {
  const kind = b.state === 'closed' ? 'good' : b.state === 'open' ? 'bad' : 'warn';
  return badge(b.state.replace('_', '-'), kind);
}

async function modelsPage() {
  const m = await api('/admin/models');
  const depCols = (withRoute) => [
    ...(withRoute ? [{ label: '#', num: true, cell: (c) => c.position }] : []),
    { label: 'Deployment', cell: (c) => h('code', {}, c.deployment) },
    ...(withRoute ? [{ label: 'Tier / weight', cell: (c) => `${c.priority} / ${c.weight}` }] : []),
    { label: 'Breaker', cell: (c) => h('div', {}, breakerBadge(c.breaker), c.breaker.reason ? h('div', { class: 'muted small' }, c.breaker.reason) : null) },
    { label: 'Failures (window)', num: true, cell: (c) => `${c.breaker.window_failures} / ${c.breaker.window_calls}` },
    { label: 'Latency (avg)', num: true, cell: (c) => fmt.ms(c.latency_ms.total) },
    { label: 'In flight', num: true, cell: (c) => fmt.int(c.in_flight) },
    ...(withRoute ? [{ label: 'Status', cell: (c) => (c.skipped ? badge(c.skip_reason, 'warn') : badge('available', 'good')) }] : []),
  ];
  const routes = m.routes.map((r) => panel(h('div', { class: 'panel-head' }, h('h2', {}, r.model),
    h('span', { class: 'muted small' }, `${r.strategy}: ${r.strategy_reason}`)),
  table(depCols(true), r.candidates, { caption: `Deployments of ${r.model}` })));
  return [
    ...(routes.length ? routes : [panel('Logical models', empty('No logical models configured',
      'Clients address deployments directly (provider/model). Add models: to the config to route across deployments.'))]),
    panel('Other deployments', m.direct.length ? table(depCols(false), m.direct, { caption: 'Other deployments' })
      : h('p', { class: 'muted' }, 'Every deployment called since this process started belongs to a route above.')),
    panel('Providers', table([
      { label: 'Provider', cell: (p) => h('strong', {}, p.name) },
      { label: 'Type', cell: (p) => p.type },
      { label: 'Configured by', cell: (p) => ({ config: 'config file', env: 'environment', builtin: 'built in' })[p.source] || p.source },
      { label: 'Models', cell: (p) => (p.models.length ? p.models.join(', ') : 'catalog') },
    ], m.providers, { caption: 'Providers' }), h('p', { class: 'muted small' }, `Config version ${m.config_version}. Health is this process's view.`)),
  ];
}

// ---- cache ---------------------------------------------------------------------------------------------

async function cachePage() {
  const c = await api('/admin/cache/stats');
  const invalidate = h('button', { type: 'button', class: 'btn btn-danger', disabled: !c.enabled || !can.administer(),
    title: can.administer() ? null : 'Emptying the cache needs an admin key.', onclick: async () => {
    if (!(await confirmAction('Empty the cache?', 'Every cached answer is dropped; the next identical requests go to the providers.', 'Empty cache'))) return;
    try { const r = await api('/admin/cache/invalidate', { method: 'POST', body: { all: true } }); notify(`Cache emptied: ${fmt.int(r.deleted)} entries removed.`, 'good'); rerender(); }
    catch (ex) { notify(ex.message, 'bad'); }
  } }, 'Empty cache');
  actions(invalidate);
  if (!c.enabled) return panel('Response cache', empty('The cache is off', 'Enable it with cache.enabled in the config (see docs/caching.md).'));
  const p = c.process || {};
  const lookups = (p.hits || 0) + (p.misses || 0);
  const tallyCols = (label) => [
    { label, cell: (r) => r[0] },
    { label: 'Hits', num: true, cell: (r) => fmt.int(r[1].hits) },
    { label: 'Misses', num: true, cell: (r) => fmt.int(r[1].misses) },
    { label: 'Hit rate', num: true, cell: (r) => (r[1].hits + r[1].misses ? fmt.pct(r[1].hits / (r[1].hits + r[1].misses)) : '–') },
    { label: 'Tokens saved', num: true, cell: (r) => fmt.int(r[1].tokens_saved) },
    { label: 'Saved', num: true, cell: (r) => fmt.usd(r[1].usd_saved) },
  ];
  const byModel = Object.entries(c.by_model || {});
  const byScope = Object.entries(c.by_scope || {});
  return [
    h('div', { class: 'kpis' },
      kpi('Hit rate', lookups ? fmt.pct(p.hits / lookups) : '–', `${fmt.int(p.hits)} hits, ${fmt.int(p.misses)} misses`, { 'data-kpi': 'hit-rate' }),
      kpi('Entries', fmt.int(c.entries), `${fmt.bytes(c.bytes)} in ${c.backend}`, { 'data-kpi': 'entries' }),
      kpi('Tokens saved', fmt.int(p.tokens_saved), 'served from the cache'),
      // From the ledger: every replica's hits (when the ledger is shared), surviving restarts.
      c.ledger
        ? kpi('Money saved', fmt.usd(c.ledger.usd_saved), `${fmt.int(c.ledger.hits)} hit${c.ledger.hits === 1 ? '' : 's'} in the last 30 days, all replicas`,
          { 'data-kpi': 'money-saved', title: `$${c.ledger.usd_saved}` })
        : kpi('Money saved', fmt.usd(p.usd_saved), 'at the providers\u2019 prices')),
    h('div', { class: 'grid grid-2' },
      panel('By model', byModel.length ? table(tallyCols('Model'), byModel, { caption: 'Cache by model' }) : h('p', { class: 'muted' }, 'No lookups yet.')),
      panel('By scope', byScope.length ? table(tallyCols('Scope'), byScope, { caption: 'Cache by scope' }) : h('p', { class: 'muted' }, 'No lookups yet.'))),
    h('p', { class: 'muted small' }, 'Money saved is the ledger\u2019s: what cache hits would have cost at the models\u2019 prices, '
      + 'over the last 30 days. Hits, misses and the tables count this process since it started; entries are the store\u2019s (shared when it is Redis).'),
  ];
}

// ---- guardrails ----------------------------------------------------------------------------------------

const guardState = { guardrail: '', action: '', team: '', since: '', limit: '200' };
const GUARD_ACTIONS = [['', 'Any action'], ['block', 'block'], ['flag', 'flag'], ['mask', 'mask'], ['redact', 'redact'], ['hash', 'hash']];
const actionKind = (a) => (a === 'block' ? 'bad' : a === 'flag' ? 'warn' : 'good');

function guardQuery(extra = {}) {
  const st = guardState;
  const q = new URLSearchParams({ limit: st.limit, ...extra });
  for (const k of ['guardrail', 'action', 'team']) if (st[k]) q.set(k, st[k]);
  if (st.since) q.set('since', `${st.since}T00:00:00Z`);
  return q;
}

async function exportGuardCsv() {
  const res = await request(`/admin/guardrails/events?${guardQuery({ format: 'csv' })}`);
  const url = URL.createObjectURL(await res.blob());
  const a = h('a', { href: url, download: 'guardrail-events.csv' });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 5000);
}

async function guardrailsPage() {
  const st = guardState;
  actions(h('button', { type: 'button', class: 'btn', id: 'export-guard-csv',
    onclick: () => exportGuardCsv().catch((e) => notify(e.message, 'bad')) }, 'Export CSV'));
  const log = await api(`/admin/guardrails/events?${guardQuery()}`);
  const events = log.data;
  const guards = [...new Set(['pii', 'injection', 'code', ...events.map((e) => e.guardrail), st.guardrail].filter(Boolean))];
  const guard = select('guardrail', [['', 'Any guard'], ...guards.map((g) => [g, g])], st.guardrail);
  const action = select('action', GUARD_ACTIONS, st.action);
  const team = me.role === 'team_admin'
    ? h('input', { name: 'team', value: me.team_id, disabled: true, title: 'A team_admin key reads its own team\u2019s events only.' })
    : h('input', { name: 'team', value: st.team, placeholder: 'team id' });
  const since = h('input', { type: 'date', name: 'since', value: st.since, max: isoDay(new Date()) });
  const limit = select('limit', [['50', '50'], ['200', '200'], ['1000', '1000']], st.limit);
  const form = h('form', { class: 'form-row', onsubmit: (e) => {
    e.preventDefault();
    Object.assign(st, { guardrail: guard.value, action: action.value, team: team.disabled ? '' : team.value.trim(), since: since.value, limit: limit.value });
    rerender();
  } }, field('Guard', guard), field('Action', action), field('Team', team), field('Since (UTC)', since), field('Show', limit),
  h('div', { class: 'field' }, h('button', { type: 'submit', class: 'btn btn-primary' }, 'Filter')));
  const count = (pred) => events.filter(pred).length;
  const kpis = h('div', { class: 'kpis' },
    kpi('Events', fmt.int(events.length), events.length >= Number(st.limit) ? `the newest ${st.limit}` : 'matching the filters', { 'data-kpi': 'events' }),
    kpi('Blocked', fmt.int(count((e) => e.action === 'block')), 'requests refused with 403', { 'data-kpi': 'blocked' }),
    kpi('Masked', fmt.int(count((e) => ['mask', 'redact', 'hash'].includes(e.action))), 'PII masked, redacted or hashed', { 'data-kpi': 'masked' }),
    kpi('Flagged', fmt.int(count((e) => e.action === 'flag')), 'let through, marked', { 'data-kpi': 'flagged' }));
  const cols = [
    { label: 'When (UTC)', cell: (e) => { const [day, time] = fmt.time(e.at).split(' ');
      return h('div', { title: fmt.time(e.at) }, h('div', { class: 'nowrap' }, day), h('div', { class: 'muted small' }, time)); } },
    { label: 'Guard', cell: (e) => e.guardrail },
    { label: 'Action', cell: (e) => h('div', {}, badge(e.action, actionKind(e.action)),
      h('div', { class: 'muted small nowrap', title: 'HTTP status the client got' }, `HTTP ${e.status ?? '–'}`)) },
    { label: 'Rules', cell: (e) => h('div', {}, ...e.rules.map((r) => h('div', {}, h('code', {}, r)))) },
    { label: 'Count', num: true, cell: (e) => fmt.int(e.count) },
    { label: 'Request', cell: (e) => h('div', {}, h('code', {}, e.request_id),
      h('div', { class: 'muted small', title: `SHA-256 of the inspected text: ${e.payload_hash}` }, `sha256 ${(e.payload_hash || '').slice(0, 12)}…`)) },
    { label: 'Team', cell: (e) => e.team_id || '–' },
    { label: 'Model', cell: (e) => e.model || '–' },
  ];
  const list = events.length ? table(cols, events, { caption: 'Guardrail events' })
    : empty('No guardrail events', 'Decisions of the guardrails (PII masked, requests blocked or flagged) appear here once a guard acts.');
  if (events.length) {
    for (const [i, tr] of [...list.querySelectorAll('tbody tr')].entries()) {
      tr.dataset.requestId = events[i].request_id;
      tr.dataset.action = events[i].action;
    }
  }
  return [
    kpis,
    panel('Filter', form),
    panel('Decisions, newest first', list,
      h('p', { class: 'muted small' }, 'Each row is one guard\u2019s decision about one request: which rules or entity types fired and how often, ',
        'and a SHA-256 of the inspected text to correlate it, never the text itself.')),
  ];
}

// ---- audit log -----------------------------------------------------------------------------------------

const auditState = { actor: '', target: '', limit: '100' };

async function auditPage() {
  const st = auditState;
  const actor = h('input', { name: 'actor', value: st.actor, placeholder: 'master, key_…, cli:alice' });
  const target = h('input', { name: 'target', value: st.target, placeholder: 'team or key id' });
  const limit = select('limit', [['50', '50'], ['100', '100'], ['500', '500'], ['1000', '1000']], st.limit);
  const form = h('form', { class: 'form-row', onsubmit: (e) => {
    e.preventDefault();
    Object.assign(st, { actor: actor.value.trim(), target: target.value.trim(), limit: limit.value });
    rerender();
  } }, field('Actor', actor), field('Target', target), field('Show', limit),
  h('div', { class: 'field' }, h('button', { type: 'submit', class: 'btn btn-primary' }, 'Filter')));
  // Guardrail decisions have a page of their own.
  const q = new URLSearchParams({ limit: st.limit, exclude_action: 'guardrail.*' });
  if (st.actor) q.set('actor', st.actor);
  if (st.target) q.set('target', st.target);
  const log = await api(`/admin/audit?${q}`);
  const kind = (action) => (/delete|revoke/.test(action) ? 'bad' : /create/.test(action) ? 'good' : 'warn');
  return [
    panel('Filter', form),
    panel('Changes, newest first', log.data.length ? table([
      { label: 'When', cell: (r) => fmt.time(r.at) },
      { label: 'Who', cell: (r) => h('div', {}, h('code', {}, r.actor.key_id), h('div', { class: 'muted small' }, r.actor.role)) },
      { label: 'Action', cell: (r) => badge(r.action, kind(r.action)) },
      { label: 'Target', cell: (r) => h('div', {}, h('code', {}, r.target.id), h('div', { class: 'muted small' }, r.target.type)) },
      { label: 'Details', cell: (r) => h('details', {}, h('summary', {}, 'before / after'),
        h('pre', {}, JSON.stringify({ before: r.before, after: r.after, request_id: r.request_id }, null, 2))) },
    ], log.data, { caption: 'Audit log' }) : empty('No changes recorded', 'Changes made through the admin API or the CLI appear here.')),
  ];
}

// ---- start ---------------------------------------------------------------------------------------------

function start() {
  $('signin-form').addEventListener('submit', signIn);
  $('signout').addEventListener('click', signOutByUser);
  $('secret-copy').addEventListener('click', async () => {
    const v = $('secret-value');
    v.select();
    try { await navigator.clipboard.writeText(v.value); $('secret-copied').textContent = 'Copied to the clipboard.'; }
    catch { $('secret-copied').textContent = 'Press Ctrl+C (⌘C) to copy the selected key.'; }
  });
  $('secret-dialog').addEventListener('close', () => { $('secret-value').value = ''; });
  window.addEventListener('hashchange', route);
  offerSso();
  const sso = ssoOutcome();
  if (sso && !sso.ok) signOut(sso.message);
  else if (sessionStorage.getItem(STORE)) showShell();
  else signOut('');
}

start();
