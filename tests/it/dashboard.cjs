// The dashboard in a real browser: playwright-core driving Debian's chromium against a running
// codara (the mock model behind a real CLI). Started by `dashboard::operator_flows_in_a_real_browser`
// in tests/it/dashboard.rs, which passes:
//   CODARA_URL, CODARA_SECRET, CHROMIUM (executable), PLAYWRIGHT_CORE (module dir), SHOTS (dir).
// Talks to the test over stdio: prints `STEP <name>` as it goes, `EXPIRE` when the test must
// expire every operator token (then waits for `EXPIRED` on stdin), `RESULT <json>` with what the
// test checks on disk afterwards, and exits non-zero with the failure on stderr.

'use strict';

const { chromium } = require(process.env.PLAYWRIGHT_CORE);
const assert = require('node:assert/strict');
const readline = require('node:readline');

const BASE = process.env.CODARA_URL;
const SECRET = process.env.CODARA_SECRET;
const SHOTS = process.env.SHOTS;
const WIDTHS = [[1280, 800], [375, 800]];
const TURN_FILE = 'dashboard-note.txt';
const TURN_TEXT = 'hello from the dashboard';

const stdin = readline.createInterface({ input: process.stdin });
const incoming = [];
let waiting = null;
stdin.on('line', (line) => {
  if (waiting) { const w = waiting; waiting = null; w(line); } else incoming.push(line);
});
/** Prints a request to the test and waits for its answer line. */
function ask(request) {
  process.stdout.write(`${request}\n`);
  return new Promise((resolve) => {
    if (incoming.length) resolve(incoming.shift()); else waiting = resolve;
  });
}

// Console errors and page errors fail the run, except failed requests a step expects
// (`expectFailures`): a wrong secret's 401, the traces routes' 404 while they do not exist, the
// expired token's 401.
const problems = [];
let expected = [];
let step = '';
function watch(page) {
  page.on('console', (message) => {
    if (message.type() !== 'error' && message.type() !== 'warning') return;
    const url = message.location().url || '';
    const text = message.text();
    if (text.startsWith('Failed to load resource') && expected.some((p) => url.includes(p))) return;
    problems.push(`[${step}] console ${message.type()}: ${text} ${url}`);
  });
  page.on('pageerror', (error) => problems.push(`[${step}] page error: ${error.message}`));
}
async function expectFailures(patterns, run) {
  expected = patterns;
  try { return await run(); } finally { expected = []; }
}

async function run(name, body) {
  step = name;
  const started = Date.now();
  process.stdout.write(`STEP ${name}\n`);
  await body();
  process.stdout.write(`STEP ${name} ok ${Date.now() - started} ms\n`);
}

const title = (page) => page.locator('#page-title');
async function settled(page) {
  await title(page).waitFor();
  await page.waitForFunction(() => !document.querySelector('[data-state="loading"], .state.loading'), null, { timeout: 20000 });
}
async function goto(page, path) {
  await page.goto(BASE + path);
  await settled(page);
}
async function signIn(page) {
  await page.locator('#secret').waitFor();
  await page.locator('#secret').focus();
  await page.keyboard.type(SECRET);
  await page.keyboard.press('Enter');
  await title(page).waitFor();
}
const bearer = (page) => page.evaluate(() => sessionStorage.getItem('codara.token'));

/**
 * The Observability pages against the routes' contract, answered by the browser itself
 * (`page.route`), whether or not this build serves them: search with a quick range and text,
 * trace and log results (an ok and an error trace), "Load more" with the cursor, the trace's
 * waterfall and its logs, at both widths. The step before runs against the real routes once
 * they exist.
 */
async function observabilityContract(page) {
  const now = Date.now();
  const row = (id, offset, status) => ({
    trace_id: id, name: 'POST /management/v1/playground/chat', route: '/management/v1/playground/chat',
    method: 'POST', status, http_status: status === 'ok' ? 200 : 502, provider: 'codex',
    user_id: 'uag_usr_dash', started_at: new Date(now - offset).toISOString(), duration_ms: 1500, span_count: 3,
  });
  const line = { ts: new Date(now - 90000).toISOString(), level: 'WARN', target: 'codara::turns', message: 'playground turn retried', request_id: 'req_1', trace_id: 'trc_a', span: 'cli', fields: { attempt: 2 } };
  const seen = [];
  const json = (route, data, page_) => route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify({ ok: true, data, meta: { request_id: 'req_fixture', page: page_ } }) });
  await page.route('**/management/v1/observability/search?**', (route) => {
    const url = new URL(route.request().url());
    seen.push(url.search);
    if (url.searchParams.get('cursor') === 'c2') return json(route, [{ kind: 'log', ...line }], { next_cursor: null, has_more: false, limit: 50 });
    return json(route, [{ kind: 'trace', ts: row('trc_a', 60000).started_at, ...row('trc_a', 60000, 'ok') }, { kind: 'trace', ts: row('trc_b', 120000).started_at, ...row('trc_b', 120000, 'error') }], { next_cursor: 'c2', has_more: true, limit: 50 });
  });
  await page.route('**/management/v1/traces/trc_a', (route) => json(route, {
    trace_id: 'trc_a',
    root: row('trc_a', 60000, 'ok'),
    spans: [
      { span_id: 's1', parent_id: null, name: 'http', started_at: row('trc_a', 60000).started_at, offset_ms: 0, duration_ms: 1500, status: 'ok', attributes: { route: '/management/v1/playground/chat' } },
      { span_id: 's2', parent_id: 's1', name: 'pool.select', started_at: row('trc_a', 60000).started_at, offset_ms: 10, duration_ms: 5, status: 'ok', attributes: {} },
      { span_id: 's3', parent_id: 's1', name: 'cli.run', started_at: row('trc_a', 60000).started_at, offset_ms: 750, duration_ms: 700, status: 'error', attributes: { exit_code: 1 } },
    ],
    logs: [line],
  }));
  await page.route('**/management/v1/traces?**', (route) => {
    seen.push(`traces${new URL(route.request().url()).search}`);
    return json(route, [row('trc_b', 120000, 'error')], { next_cursor: null, has_more: false, limit: 50 });
  });
  await page.route('**/management/v1/logs?**', (route) => {
    seen.push(`logs${new URL(route.request().url()).search}`);
    return json(route, [line], { next_cursor: null, has_more: false, limit: 50 });
  });
  try {
    await goto(page, '/dashboard/observability');
    await page.click('.ranges button[data-range="15m"]');
    await page.fill('#obs-search input[name=q]', 'playground');
    await page.click('#obs-search button[type=submit]');
    await page.locator('article[data-trace="trc_b"]').waitFor();
    assert.ok(seen.some((q) => q.includes('q=playground') && q.includes('range=15m')), JSON.stringify(seen));
    assert.match(await page.textContent('article[data-trace="trc_b"]'), /error/);
    await page.getByRole('button', { name: 'Load more' }).click();
    await page.locator('article[data-log]').waitFor();
    assert.ok(seen.some((q) => q.includes('cursor=c2')), JSON.stringify(seen));
    assert.equal(await page.getByRole('button', { name: 'Load more' }).count(), 0, 'the last page has no Load more');
    assert.match(await page.url(), /range=15m/);
    // A custom range sends both ends as RFC 3339 times and keeps them in the address; a reload
    // shows them again in the browser's zone.
    await page.click('.ranges button[data-range="custom"]');
    await page.fill('input[name=since]', '2026-01-02T03:04');
    await page.fill('input[name=until]', '2026-01-02T05:06');
    await page.click('#obs-search button[type=submit]');
    await page.locator('article[data-trace="trc_b"]').waitFor();
    const custom = new URLSearchParams(seen[seen.length - 1]);
    // Entered in the browser's zone (New York, UTC-5 in January).
    assert.equal(custom.get('since'), '2026-01-02T08:04:00.000Z');
    assert.equal(custom.get('until'), '2026-01-02T10:06:00.000Z');
    assert.equal(custom.get('range'), null);
    assert.match(page.url(), /since=2026-01-02T08%3A04/);
    await page.reload();
    await page.locator('article[data-trace="trc_b"]').waitFor();
    assert.equal(await page.inputValue('input[name=since]'), '2026-01-02T03:04');
    assert.equal(await page.getAttribute('.ranges button[data-range="custom"]', 'aria-pressed'), 'true');
    await page.click('.ranges button[data-range="15m"]');
    await page.locator('article[data-trace="trc_b"]').waitFor();
    // Traces alone, with their filters; then logs alone by level.
    await page.selectOption('#obs-search select[name=kind]', 'traces');
    await page.selectOption('#obs-search select[name=status]', 'error');
    await page.selectOption('#obs-search select[name=provider]', 'codex');
    await page.fill('#obs-search input[name=min_ms]', '1000');
    await page.click('#obs-search button[type=submit]');
    await page.waitForFunction(() => document.querySelectorAll('#obs-results article').length === 1);
    const traces = new URLSearchParams(seen[seen.length - 1].replace(/^traces/, ''));
    assert.ok(seen[seen.length - 1].startsWith('traces?'), seen[seen.length - 1]);
    assert.deepEqual([traces.get('status'), traces.get('provider'), traces.get('min_ms'), traces.get('q'), traces.get('range')], ['error', 'codex', '1000', 'playground', '15m']);
    await page.selectOption('#obs-search select[name=kind]', 'logs');
    assert.ok(await page.locator('#obs-search select[name=status]').isHidden());
    await page.selectOption('#obs-search select[name=level]', 'warn');
    await page.click('#obs-search button[type=submit]');
    await page.locator('#obs-results article[data-log]').waitFor();
    assert.ok(seen[seen.length - 1].startsWith('logs?') && seen[seen.length - 1].includes('level=warn'), seen[seen.length - 1]);
    await page.selectOption('#obs-search select[name=kind]', 'all');
    await page.click('#obs-search button[type=submit]');
    await page.locator('article[data-trace="trc_a"]').waitFor();
    for (const [width, height] of WIDTHS) {
      await page.setViewportSize({ width, height });
      await page.screenshot({ path: `${SHOTS}/observability-contract-${width}.png`, fullPage: true });
    }
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.locator('article[data-trace="trc_a"] a').click();
    await page.waitForURL(/\/dashboard\/observability\/traces\/trc_a$/);
    await settled(page);
    const rows = page.locator('.waterfall .span-row');
    assert.equal(await rows.count(), 3);
    // Bars sit on one time axis: cli.run starts half-way and is red.
    const [track, bar] = await page.locator('.span-row[data-span="s3"]').evaluate((row) => {
      const t = row.querySelector('.span-track').getBoundingClientRect();
      const b = row.querySelector('.span-bar').getBoundingClientRect();
      return [{ x: t.x, width: t.width }, { x: b.x, width: b.width, error: row.querySelector('.span-bar').classList.contains('error') }];
    });
    assert.ok(Math.abs((bar.x - track.x) / track.width - 0.5) < 0.02, JSON.stringify([track, bar]));
    assert.ok(Math.abs(bar.width / track.width - 700 / 1500) < 0.02, JSON.stringify([track, bar]));
    assert.ok(bar.error);
    await page.locator('.span-row[data-span="s3"]').focus();
    await page.keyboard.press('Enter');
    assert.match(await page.locator('.span-row[data-span="s3"] + .span-attributes').textContent(), /exit_code/);
    assert.match(await page.textContent('#trace'), /playground turn retried/);
    for (const [width, height] of WIDTHS) {
      await page.setViewportSize({ width, height });
      const [scroll, client] = await page.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]);
      assert.ok(scroll <= client, `the trace page at ${width} px scrolls sideways`);
      await page.screenshot({ path: `${SHOTS}/trace-contract-${width}.png`, fullPage: true });
    }
    await page.setViewportSize({ width: 1280, height: 800 });
  } finally {
    await page.unrouteAll();
  }
}

async function main() {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
  // A zone other than the machine's UTC: times must be shown in the browser's zone.
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, timezoneId: 'America/New_York', locale: 'en-US' });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: BASE });
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  watch(page);
  const result = {};
  const email = `dash-${Date.now()}@example.com`;

  await run('sign in (a wrong secret first, then by keyboard)', async () => {
    await page.goto(`${BASE}/dashboard`);
    await expectFailures(['/management/v1/auth/token'], async () => {
      await page.fill('#secret', 'not-the-secret');
      await page.press('#secret', 'Enter');
      await page.locator('#signin-message.error').waitFor();
      assert.match(await page.textContent('#signin-message'), /not right/);
    });
    await page.fill('#secret', '');
    await signIn(page);
    assert.equal(await title(page).textContent(), 'Overview');
    assert.ok(await bearer(page), 'the token is in sessionStorage');
    // The overview's sections are there (the warm processes and providers tables).
    await page.getByRole('heading', { name: /Warm processes/ }).waitFor();
    await page.getByRole('cell', { name: 'codex' }).first().waitFor();
    // Times in the browser's zone, with a relative age.
    assert.match(await page.textContent('footer'), /America\/New_York/);
    const started = page.locator('#overview time').first();
    const [iso, shown] = [await started.getAttribute('datetime'), await started.textContent()];
    const expectedHour = new Date(iso).toLocaleString('en-US', { timeZone: 'America/New_York', hour: 'numeric', hour12: true }).split(' ')[0];
    assert.match(shown, new RegExp(`, ${expectedHour}:\\d\\d:\\d\\d\\s[AP]M · (now|\\d+ seconds? ago)$`), shown);
    assert.match(await started.getAttribute('title'), /America\/New_York/);
  });

  await run('create a user and read its key once', async () => {
    await page.locator('#nav a[href="/dashboard/users"]').focus();
    await page.keyboard.press('Enter');
    await page.waitForURL(`${BASE}/dashboard/users`);
    assert.equal(await title(page).textContent(), 'Users');
    await page.fill('#create-user input[name=email]', email);
    await page.fill('#create-user input[name=display_name]', 'Dash Board');
    await page.fill('#create-user input[name=max_concurrency]', '3');
    await page.click('#create-user button[type=submit]');
    const secret = page.locator('dialog[open] input.secret');
    await secret.waitFor();
    const key = await secret.inputValue();
    assert.match(key, /^uagk_live_[A-Za-z0-9]{32}$/);
    await page.locator('dialog[open]').getByRole('button', { name: 'Copy', exact: true }).click();
    await page.locator('dialog[open]').getByText('Copied.', { exact: true }).waitFor();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), key);
    await page.click('dialog[open] button[value=ok]');
    await page.locator('dialog').waitFor({ state: 'detached' });
    // Shown once: gone from the page, only its prefix on the user's page; and it works.
    assert.ok(!(await page.content()).includes(key), 'the key is no longer in the page');
    await page.getByRole('link', { name: 'Dash Board' }).click();
    await page.locator('#keys tbody tr').first().waitFor();
    const keysText = await page.textContent('#keys');
    assert.ok(keysText.includes(key.slice(0, 14)), keysText);
    assert.ok(!keysText.includes(key), 'the detail page does not show the key');
    result.user_id = decodeURIComponent(page.url().split('/').pop());
    const me = await page.request.get(`${BASE}/v1/user/me`, { headers: { Authorization: `Bearer ${key}` } });
    assert.equal(me.status(), 200);
    // Limits: the form saves and the page shows the new value.
    await page.fill('#user-limits input[name=max_concurrency]', '4');
    await page.click('#user-limits button[type=submit]');
    await page.locator('.notice >> text=Saved.').waitFor();
    await page.waitForFunction(() => document.querySelector('#user-limits input[name=max_concurrency]')?.value === '4');
  });

  await run('upload a codex login, refresh its usage: quota windows with reset countdowns', async () => {
    await goto(page, '/dashboard/accounts');
    assert.equal(await page.inputValue('#add-account select[name=auth_type]'), 'OAUTH_SESSION');
    await page.fill('#add-account input[name=id]', 'dash-oauth');
    await page.setInputFiles('#add-account input[type=file]', process.env.AUTH_JSON);
    await page.waitForFunction(() => document.querySelector('#add-account textarea').value.includes('refresh_token'));
    await page.click('#add-account button[type=submit]');
    const card = page.locator('article[data-account="dash-oauth"]');
    await card.waitFor();
    assert.match(await card.locator('h2').textContent(), /oauth-dash@example\.com/);
    assert.match(await card.textContent(), /5-hour: unknown/);
    assert.equal(await page.inputValue('#add-account textarea'), '', 'the form is cleared');
    await card.getByRole('button', { name: 'Refresh usage' }).click();
    await page.locator('article[data-account="dash-oauth"] progress').first().waitFor();
    const fresh = page.locator('article[data-account="dash-oauth"]');
    const quota = await fresh.locator('.quota').first().textContent();
    assert.match(quota, /5-hour: 43% used · resets in (59 min|1 h)/);
    assert.equal(await fresh.locator('progress').first().evaluate((p) => p.value), 42.5);
    assert.match(await fresh.locator('.quota').nth(1).textContent(), /Weekly: 10% used · resets in (23 h|1 d)/);
    assert.ok(!(await page.content()).includes('rt-dash-secret-refresh-value'), 'no token in the page');
  });

  await run('add an account and toggle CLI-primary', async () => {
    await goto(page, '/dashboard/accounts');
    await page.selectOption('#add-account select[name=auth_type]', 'API_KEY');
    await page.fill('#add-account input[name=id]', 'dash-acct');
    await page.fill('#add-account input[name=label]', 'Dashboard account');
    await page.fill('#add-account textarea[name=credential]', 'sk-dashboard-0123456789abcdef');
    await page.click('#add-account button[type=submit]');
    const card = page.locator('article[data-account="dash-acct"]');
    await card.waitFor();
    assert.match(await card.textContent(), /ready/);
    assert.ok(!(await page.content()).includes('sk-dashboard-0123456789abcdef'), 'the credential is not shown');
    if (await card.getByRole('button', { name: 'Unset CLI-primary' }).count()) {
      await card.getByRole('button', { name: 'Unset CLI-primary' }).click();
      await card.getByRole('button', { name: 'Make CLI-primary' }).waitFor();
    }
    await card.getByRole('button', { name: 'Make CLI-primary' }).click();
    await card.locator('.badge', { hasText: 'CLI-primary' }).waitFor();
    // A destructive action asks first; Escape leaves everything as it was.
    await card.getByRole('button', { name: 'Remove' }).click();
    await page.locator('dialog[open]').waitFor();
    assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Cancel');
    await page.keyboard.press('Escape');
    await page.locator('dialog').waitFor({ state: 'detached' });
    await card.waitFor();
  });

  await run('a streaming Playground turn that writes a file, with its diff', async () => {
    await goto(page, '/dashboard/playground');
    await page.waitForFunction(() => document.querySelector('#pg-provider')?.value === 'codex');
    assert.ok(await page.locator('#pg-model option').count() >= 1);
    await page.fill('#pg-message', `MOCK:${JSON.stringify({ write: { path: TURN_FILE, content: `${TURN_TEXT}\n` } })}`);
    const streamed = page.waitForResponse((r) => r.url().endsWith('/management/v1/playground/chat'));
    await page.press('#pg-message', 'Control+Enter');
    assert.match((await streamed).headers()['content-type'], /^text\/event-stream/);
    const reply = page.locator('.message.assistant').last();
    await page.waitForFunction(() => {
      const m = [...document.querySelectorAll('.message.assistant')].pop();
      return m && m.dataset.state !== 'streaming';
    }, null, { timeout: 120000 });
    assert.equal(await reply.getAttribute('data-state'), 'done', await reply.textContent());
    assert.equal((await reply.locator('.outcome .diff-files li code').allTextContents()).join(), TURN_FILE);
    const added = await reply.locator('pre.diff .line.add').allTextContents();
    assert.ok(added.includes(`+${TURN_TEXT}`), JSON.stringify(added));
    await page.screenshot({ path: `${SHOTS}/playground-turn-1280.png`, fullPage: true });
    const href = await reply.locator('.outcome a[href^="/dashboard/sessions/"]').getAttribute('href');
    result.session_id = decodeURIComponent(href.split('/').pop());
  });

  await run('find the session, see the diff, revert the turn (by keyboard), reload the deep link', async () => {
    await goto(page, '/dashboard/sessions');
    await page.fill('#session-filters input[name=q]', 'playground');
    await page.click('#session-filters button[type=submit]');
    await page.waitForURL(/\/dashboard\/sessions\?q=playground/);
    await page.locator(`a[href="/dashboard/sessions/${result.session_id}"]`).click();
    await settled(page);
    const turn = page.locator('details.turn[data-turn="1"]');
    await turn.locator('pre.diff').waitFor();
    assert.ok((await turn.locator('pre.diff .line.add').allTextContents()).includes(`+${TURN_TEXT}`));
    assert.ok(await turn.locator('pre.diff .line.add').evaluate((el) => getComputedStyle(el).backgroundColor !== 'rgba(0, 0, 0, 0)'), 'added lines are coloured');
    result.workspace = (await page.locator('#session dt:text-is("Workspace") + dd').textContent()).trim();
    await turn.getByRole('button', { name: 'Revert to before this turn' }).click();
    await page.locator('dialog[open]').waitFor();
    // Focus starts on Cancel; Shift+Tab reaches the confirm button; Enter confirms.
    await page.keyboard.press('Shift+Tab');
    assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Revert files');
    await page.keyboard.press('Enter');
    await turn.locator('.reverted', { hasText: 'Reverted' }).waitFor();
    await page.reload();
    await settled(page);
    assert.equal(await title(page).textContent(), 'Session');
    await page.locator('details.turn[data-turn="1"]').waitFor();
  });

  await run('find the turn in Observability and open its timeline', async () => {
    const probe = await page.request.get(`${BASE}/management/v1/traces?limit=1`, { headers: { Authorization: `Bearer ${await bearer(page)}` } });
    if (probe.status() === 404) {
      // This build has no traces routes yet: the page says so plainly.
      await expectFailures(['/management/v1/observability/search', '/management/v1/traces', '/management/v1/logs'], async () => {
        await goto(page, '/dashboard/observability');
        await page.locator('[data-state="unavailable"]').waitFor();
        assert.match(await page.textContent('[data-state="unavailable"]'), /not available/);
      });
      result.observability = 'unavailable';
      return;
    }
    assert.equal(probe.status(), 200, await probe.text());
    await goto(page, '/dashboard/observability');
    await page.click('.ranges button[data-range="15m"]');
    await page.fill('#obs-search input[name=q]', 'playground');
    const trace = page.locator('article[data-trace]', { hasText: 'playground' }).first();
    // Traces are written when their request ends: search again until the turn's is found.
    for (let attempt = 0; ; attempt += 1) {
      await page.click('#obs-search button[type=submit]');
      await page.waitForFunction(() => !document.querySelector('#obs-results .state.loading'));
      if (await trace.count()) break;
      assert.ok(attempt < 20, `the Playground turn's trace was not found: ${await page.textContent('#obs-results')}`);
      await page.waitForTimeout(1000);
    }
    await trace.locator('a').first().click();
    await page.waitForURL(/\/dashboard\/observability\/traces\//);
    await settled(page);
    const rows = page.locator('.waterfall .span-row');
    assert.ok(await rows.count() >= 1, 'the timeline has spans');
    await rows.first().click();
    assert.equal(await rows.first().getAttribute('aria-expanded'), 'true');
    result.observability = 'asserted';
    result.trace_path = new URL(page.url()).pathname;
  });

  await run("the Observability pages against the traces and logs routes' contract", () => observabilityContract(page));

  await run('filter the audit log, reload the deep link', async () => {
    await goto(page, '/dashboard/audit');
    await page.fill('#audit-filters input[name=action]', 'user.');
    await page.fill('#audit-filters input[name=q]', email);
    await page.click('#audit-filters button[type=submit]');
    await page.waitForURL(/action=user\./);
    await page.locator('#audit-list tbody tr').first().waitFor();
    const check = async () => {
      const actions = await page.locator('#audit-list tbody td[data-label="Action"]').allTextContents();
      assert.ok(actions.length >= 2, JSON.stringify(actions));
      assert.ok(actions.every((a) => a.startsWith('user.')), JSON.stringify(actions));
      assert.ok(actions.includes('user.created') && actions.includes('user.updated'), JSON.stringify(actions));
    };
    await check();
    await page.reload();
    await settled(page);
    assert.equal(await page.inputValue('#audit-filters input[name=action]'), 'user.');
    await page.locator('#audit-list tbody tr').first().waitFor();
    await check();
    // A filter that matches nothing says so.
    await page.fill('#audit-filters input[name=action]', 'nothing.matches.');
    await page.click('#audit-filters button[type=submit]');
    await page.locator('#audit-list p[data-state="empty"]').waitFor();
  });

  await run('every page at 1280 and 375 px: no horizontal scroll, a screenshot each', async () => {
    const pages = [
      ['overview', '/dashboard'],
      ['accounts', '/dashboard/accounts'],
      ['users', '/dashboard/users'],
      ['user', `/dashboard/users/${result.user_id}`],
      ['sessions', '/dashboard/sessions'],
      ['session', `/dashboard/sessions/${result.session_id}`],
      ['workspaces', '/dashboard/workspaces'],
      ['playground', '/dashboard/playground'],
      ['observability', '/dashboard/observability'],
      ['audit', '/dashboard/audit'],
      ['settings', '/dashboard/settings'],
    ];
    const inventory = await page.request.get(`${BASE}/management/v1/workspaces`, { headers: { Authorization: `Bearer ${await bearer(page)}` } });
    const records = (await inventory.json()).data;
    const record = records.find((w) => w.path === result.workspace) || records[0];
    pages.push(['workspace', `/dashboard/workspaces/${record.workspace_id}`]);
    if (result.trace_path) pages.push(['trace', result.trace_path]);
    const obs = result.observability === 'unavailable' ? ['/management/v1/observability/search'] : [];
    for (const [width, height] of WIDTHS) {
      await page.setViewportSize({ width, height });
      for (const [name, path] of pages) {
        await expectFailures(obs, async () => {
          await goto(page, path);
          await page.waitForTimeout(150);
          const [scroll, client] = await page.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]);
          assert.ok(scroll <= client, `${name} at ${width} px scrolls sideways: ${scroll} > ${client}`);
          await page.screenshot({ path: `${SHOTS}/${name}-${width}.png`, fullPage: true });
        });
      }
    }
    // The update check answers in place (checking is off in this configuration).
    await goto(page, '/dashboard/settings');
    await page.getByRole('button', { name: 'Check for updates' }).click();
    await page.locator('#version', { hasText: 'disabled' }).waitFor();
    assert.match(await page.textContent('#config'), /MOCK_API_KEY/);
    // The workspaces page lists the Dashboard Admin's workspace with its git metadata.
    await page.setViewportSize({ width: 1280, height: 800 });
    await goto(page, '/dashboard/workspaces');
    await page.locator('#workspace-list tbody tr').first().waitFor();
    // At 375 px the navigation folds behind a Menu button that opens by keyboard.
    await page.setViewportSize({ width: 375, height: 800 });
    assert.ok(!(await page.locator('#nav').isVisible()));
    await page.locator('button.menu').focus();
    await page.keyboard.press('Enter');
    await page.locator('#nav a[href="/dashboard/settings"]').waitFor();
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  await run('sign out', async () => {
    await page.click('button.signout');
    await page.locator('#signin-message', { hasText: 'signed out' }).waitFor();
    assert.equal(await bearer(page), null);
    await page.goto(`${BASE}/dashboard/users`);
    await page.locator('#secret').waitFor();
    for (const [width, height] of WIDTHS) {
      await page.setViewportSize({ width, height });
      const [scroll, client] = await page.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]);
      assert.ok(scroll <= client, `sign-in at ${width} px scrolls sideways`);
      await page.screenshot({ path: `${SHOTS}/signin-${width}.png`, fullPage: true });
    }
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  await run('an expired token returns to sign-in with a message', async () => {
    await signIn(page);
    assert.equal(await title(page).textContent(), 'Users');
    assert.equal(await ask('EXPIRE'), 'EXPIRED');
    await expectFailures(['/management/v1/'], async () => {
      await page.click('#nav a[href="/dashboard/sessions"]');
      await page.locator('#signin-message', { hasText: 'expired' }).waitFor();
    });
    assert.equal(await bearer(page), null);
    // Signing in again lands on the page that was asked for.
    await signIn(page);
    await page.waitForURL(`${BASE}/dashboard/sessions`);
    assert.equal(await title(page).textContent(), 'Sessions');
  });

  await browser.close();
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
  assert.deepEqual(problems, [], 'console errors');
}

main().then(() => process.exit(0), (error) => {
  process.stderr.write(`FAILED in step "${step}": ${error.stack || error}\n`);
  if (problems.length) process.stderr.write(`console problems:\n${problems.join('\n')}\n`);
  process.exit(1);
});
