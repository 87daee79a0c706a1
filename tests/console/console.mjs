// The web console in headless Chromium (Debian's, driven by playwright-core):
// loads each page against a running `sluice up --demo` (tests/console.rs
// starts it and waits for the demo's first OOMKill), interacts, asserts on
// what is shown and saves a screenshot per page. The demo's data is minutes
// old: every page is looked at over its shortest time range.
//
//   node tests/console/console.mjs BASE_URL SCREENSHOT_DIR
//
// Environment: SLUICE_TEST_NODE_MODULES (where playwright-core is installed;
// default ~/.cache/sluice/node/node_modules), SLUICE_TEST_CHROMIUM (default
// /usr/bin/chromium), and the demo's facts: CONSOLE_SPIKE (its spike
// principal), CONSOLE_POD (namespace/pod of the first OOMKilled pod),
// CONSOLE_CONTAINER (its container) and CONSOLE_OOM_AT (when instance #0
// was OOMKilled, RFC 3339).
//
// Prints `ok - …` / `not ok - …` per step and exits non-zero when any failed.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

const [base, outDir] = process.argv.slice(2);
if (!base || !outDir) {
  console.error('usage: node console.mjs BASE_URL SCREENSHOT_DIR');
  process.exit(2);
}
const modules = process.env.SLUICE_TEST_NODE_MODULES || path.join(os.homedir(), '.cache/sluice/node/node_modules');
const require = createRequire(path.join(modules, 'noop.js'));
let chromium;
try {
  ({ chromium } = require('playwright-core'));
} catch (e) {
  console.error(`playwright-core is not installed in ${modules} (scripts/test --setup installs it): ${e.message}`);
  process.exit(2);
}
const executablePath = process.env.SLUICE_TEST_CHROMIUM || '/usr/bin/chromium';
const need = (name) => {
  const v = process.env[name];
  if (!v) {
    console.error(`${name} is not set: tests/console.rs passes the demo's facts`);
    process.exit(2);
  }
  return v;
};
const spike = need('CONSOLE_SPIKE');
const [podNamespace, podName] = need('CONSOLE_POD').split('/');
const containerName = need('CONSOLE_CONTAINER');
const oomAt = new Date(need('CONSOLE_OOM_AT'));
const pad2 = (n) => String(n).padStart(2, '0');
// How the console writes a time of day: HH:MM:SS in UTC.
const oomClock = `${pad2(oomAt.getUTCHours())}:${pad2(oomAt.getUTCMinutes())}:${pad2(oomAt.getUTCSeconds())}`;
fs.mkdirSync(outDir, { recursive: true });

// ---------------------------------------------------------------- harness

let passed = 0;
let failed = 0;
const pageErrors = [];

function expect(cond, message) {
  if (!cond) throw new Error(`expected: ${message}`);
}

async function step(page, name, fn) {
  const started = Date.now();
  try {
    await fn();
    passed++;
    console.log(`ok - ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  } catch (e) {
    failed++;
    console.log(`not ok - ${name}\n    ${String(e.stack || e).split('\n').join('\n    ')}`);
    const shot = path.join(outDir, `FAILED-${name.replace(/[^a-z0-9]+/gi, '-').toLowerCase()}.png`);
    await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
    console.log(`    screenshot of the failure: ${shot}`);
  }
}

const text = async (page, selector) => ((await page.locator(selector).first().textContent()) || '').trim();
const count = (page, selector) => page.locator(selector).count();
const number = (s) => Number(String(s).replace(/[^0-9.]/g, ''));
async function waitText(page, selector, predicate, what) {
  const deadline = Date.now() + 60_000;
  let last = '';
  while (Date.now() < deadline) {
    last = await page.locator(selector).first().textContent().catch(() => '') || '';
    if (predicate(last)) return last;
    await page.waitForTimeout(100);
  }
  throw new Error(`timed out waiting for ${what} in ${selector}; last text: ${JSON.stringify(last.slice(0, 400))}`);
}
async function shot(page, name, fullPage = true) {
  const file = path.join(outDir, `${name}.png`);
  await page.screenshot({ path: file, fullPage });
  console.log(`    screenshot: ${file}`);
}

// ---------------------------------------------------------------- browser

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-console-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath,
  headless: true,
  // Without these Debian's chromium reaches for the network and hangs here.
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1440, height: 900 },
  deviceScaleFactor: 1,
  timezoneId: 'UTC',
});
await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
const page = context.pages()[0] || await context.newPage();
page.setDefaultTimeout(60_000);
page.on('pageerror', (e) => pageErrors.push(`page error: ${e.message}`));
page.on('console', (m) => {
  // The 400 the export step provokes on purpose is logged as a failed load.
  if (m.type() === 'error' && !/status of 400/.test(m.text())) pageErrors.push(`console error: ${m.text()}`);
});
const apiFailures = [];
page.on('response', (r) => {
  if (r.status() >= 400 && !(r.status() === 400 && r.url().includes('/v1/guardrails/export'))) {
    apiFailures.push(`${r.status()} ${r.request().method()} ${r.url()}`);
  }
});

try {
  // ============================================================ Attribution
  await step(page, 'attribution: table, chart, generated SQL, filters', async () => {
    await page.goto(`${base}/#/attribution?range=1h`);
    await page.waitForSelector('[data-test=attr-table] tbody tr');
    expect(await page.inputValue('[data-test=attr-range]') === '1h', 'the last hour is shown');
    expect(await count(page, '[data-test=attr-table] tbody tr') > 1, 'attribution rows by user');
    const total = number(await text(page, '[data-test=kpi-total] .value'));
    expect(total > 0, `a total request count (got ${total})`);
    let sqlText = await text(page, '[data-test=sql]');
    expect(sqlText.includes('FROM platform.platform_event_logs') && sqlText.includes('GROUP BY user_id'),
      `the generated SQL groups by user_id: ${sqlText}`);
    const first = (await page.locator('[data-test=attr-table] tbody tr').first().locator('td').first().textContent()).trim();
    expect(first === spike, `the demo's spike principal ${spike} has the most requests (got ${first})`);
    const pct = await page.locator('[data-test=attr-table] tbody tr').first().locator('td').nth(2).textContent();
    expect(/%/.test(pct), `a % of total column (got ${pct})`);
    // The chart of the top principals: the busiest one is its first series.
    await page.waitForSelector('[data-test=attr-chart] canvas');
    const series = (await page.getAttribute('[data-test=attr-chart]', 'data-series')).split('|');
    expect(series.length >= 2 && series[0] === first, `the chart's first series is the top principal ${first}: ${series}`);
    // The last hour in minutes.
    const buckets = number(await page.getAttribute('[data-test=attr-chart]', 'data-points'));
    expect(buckets >= 60 && buckets <= 61, `the chart has a bucket per minute of the hour (got ${buckets})`);

    // Group by team: new SQL, new rows.
    await page.selectOption('[data-test=attr-by]', 'team');
    sqlText = await waitText(page, '[data-test=sql]', (t) => t.includes('GROUP BY team'), 'SQL grouped by team');
    await page.waitForSelector('[data-test=attr-table] tbody tr');
    const teams = await count(page, '[data-test=attr-table] tbody tr');
    expect(teams > 0, 'rows by team');

    // A caller-type filter becomes a bound parameter.
    await page.selectOption('[data-test=attr-caller]', 'external');
    await waitText(page, '[data-test=sql]', (t) => /caller_type = \$\d/.test(t), 'a caller_type filter in the SQL');
    const params = await waitText(page, '[data-test=sql-params]', (t) => t.includes('"external"'), 'the bound value "external"');
    expect(params.includes('"external"'), 'the caller type is shown as a bound value');
    await page.waitForSelector('[data-test=attr-table] tbody tr');

    // Copy puts the SQL on the clipboard.
    await page.click('[data-test=copy-sql]');
    const clip = await page.evaluate(() => navigator.clipboard.readText());
    const shown = await text(page, '[data-test=sql]');
    expect(clip.trim() === shown, `the clipboard holds the SQL shown (got ${JSON.stringify(clip.slice(0, 80))})`);

    // Back to every caller: the filter leaves the SQL.
    await page.selectOption('[data-test=attr-caller]', '');
    await waitText(page, '[data-test=sql]', (t) => !t.includes('caller_type ='), 'SQL without the caller filter');
    await page.waitForSelector('[data-test=attr-chart] canvas');
    await page.waitForTimeout(300);
    await shot(page, 'attribution');
  });

  // ============================================================ Logs
  await step(page, 'logs: search across a restart, badges, volume, context, per-instance view', async () => {
    await page.goto(`${base}/#/logs?range=15m`);
    await page.waitForSelector(`[data-test=log-namespace] option[value="${podNamespace}"]`, { state: 'attached' });
    await page.selectOption('[data-test=log-namespace]', podNamespace);
    await page.waitForSelector(`[data-test=log-pod] option[value="${podName}"]`, { state: 'attached' });
    await page.selectOption('[data-test=log-pod]', podName);
    await page.fill('[data-test=log-query]', 'OOMKilled');
    await page.click('[data-test=log-search]');
    // The answer to this very search (earlier filter changes searched too).
    await page.waitForSelector(`[data-test=log-results][data-q="OOMKilled"][data-pod="${podName}"]`);
    const hits = await count(page, '[data-test=log-results] [data-test=log-hit]');
    expect(hits >= 1, `hits (got ${hits})`);
    // Every hit carries its container instance's restart number.
    const badges = await page.locator('[data-test=log-results] [data-test=log-hit] [data-test=restart-badge]').allTextContents();
    expect(badges.length === hits && badges.every((b) => /^#\d+$/.test(b.trim())), `a restart badge on every hit: ${badges}`);
    // The search spans the restart: the instance started after the OOMKill
    // says why its predecessor ended, and carries badge #1.
    const restarted = page.locator('[data-test=log-results] [data-test=log-hit]', { hasText: 'previous instance terminated: reason=OOMKilled' });
    expect(await restarted.count() >= 1, 'the restarted instance\'s "previous instance terminated: reason=OOMKilled" line');
    const restartedBadge = (await restarted.first().locator('[data-test=restart-badge]').textContent()).trim();
    expect(restartedBadge === '#1', `the restarted instance's line carries badge #1 (got ${restartedBadge})`);
    expect((await restarted.first().locator('.name').textContent()).trim() === `${podName}/${containerName}`, 'the hit names its pod and container');
    expect(await restarted.first().locator('mark').count() >= 1, 'the matched word is highlighted');
    const matched = await text(page, '[data-test=log-count]');
    expect(/^[\d,]+ matching lines?/.test(matched) && number(matched.split(' ')[0]) >= hits, `a match count (got ${matched})`);

    // The volume histogram, from the Loki API.
    await page.waitForSelector('[data-test=log-volume] canvas');
    const volume = number(await page.getAttribute('[data-test=log-volume]', 'data-total'));
    expect(volume > 0, `a log volume (got ${volume})`);
    expect((await text(page, '[data-test=log-volume-logql]')).includes('count_over_time'), 'the LogQL behind the histogram is shown');

    // Context: the lines around that hit, from its own instance.
    const hitWrap = page.locator('[data-test=log-results] .hit', { hasText: 'previous instance terminated: reason=OOMKilled' }).first();
    await hitWrap.locator('[data-test=expand-context]').click();
    await hitWrap.locator('[data-test=context-block] [data-test=context-line]').first().waitFor();
    const ctx = await hitWrap.locator('[data-test=context-block] [data-test=context-line]').count();
    expect(ctx >= 2, `context lines around the hit (got ${ctx})`);
    const ctxBadges = await hitWrap.locator('[data-test=context-block] [data-test=restart-badge]').allTextContents();
    expect(ctxBadges.length > ctx && ctxBadges.every((b) => b.trim() === '#1'), `context from the hit's own instance #1: ${ctxBadges}`);
    await shot(page, 'logs');

    // Per-instance view: the restart badge opens the pod's instances, with
    // the badge's instance chosen.
    await hitWrap.locator('[data-test=log-hit] [data-test=restart-badge]').click();
    await page.waitForSelector('[data-test=instance-view] [data-test=instance-item].selected');
    const chosen = (await page.locator('[data-test=instance-item].selected .title').textContent()).trim();
    expect(chosen === 'instance #1 — running', `the badge's instance, #1, still running, is chosen (got ${chosen})`);
    const oom = page.locator(`[data-test=instance-item][data-termination=OOMKilled][data-restart="0"]`);
    expect(await oom.count() === 1, 'instance #0 ended OOMKilled');
    const title = (await oom.first().locator('.title').textContent()).trim();
    expect(title === `instance #0 — OOMKilled at ${oomClock}`, `"instance #0 — OOMKilled at ${oomClock}" (got ${title})`);
    await oom.first().click();
    await waitText(page, '[data-test=instance-title]', (t) => t.includes(title), 'the chosen instance as the title');
    await page.waitForFunction(() => document.querySelector('[data-test=instance-lines] [data-test=context-line]')
      && [...document.querySelectorAll('[data-test=instance-lines] [data-test=restart-badge]')].every((b) => b.textContent.trim() === '#0'));
    const lines = await page.locator('[data-test=instance-lines] [data-test=context-line] .msg').allTextContents();
    expect(lines.length > 0, 'the instance has lines');
    // Its last lines, oldest first: the crash ends the list.
    const tail = lines.slice(-8);
    expect(tail.some((l) => /out of memory|OutOfMemoryError|GC overhead limit exceeded/i.test(l)),
      `the last lines of the OOMKilled instance show the memory exhaustion: ${JSON.stringify(tail)}`);
    await page.waitForTimeout(200);
    await shot(page, 'logs-instance', false); // the drawer is fixed to the viewport
    await page.keyboard.press('Escape');
    expect(await count(page, '[data-test=instance-view]') === 0, 'Escape closes the instance view');
  });

  // ============================================================ Guardrails
  await step(page, 'guardrails: peaks, load chart with cap, simulation, Envoy export, errors', async () => {
    await page.goto(`${base}/#/guardrails?range=1h`);
    await page.waitForSelector('[data-test=peaks-table] tbody tr');
    expect(await page.inputValue('[data-test=guard-range]') === '1h', 'the last hour of history is shown');
    const first = (await page.locator('[data-test=peaks-table] tbody tr').first().locator('td').first().textContent()).trim();
    expect(first === spike, `the spike principal ${spike} has the highest peak (got ${first})`);
    const row = page.locator('[data-test=peaks-table] tbody tr').first();
    expect(await row.evaluate((r) => r.classList.contains('selected')), 'the top row is selected');
    const recommended = number(await row.locator('td').last().textContent());
    const peak = number(await row.locator('td').nth(1).textContent());
    expect(recommended >= peak && peak > 0, `a recommended cap over the peak (${recommended} ≥ ${peak})`);
    // Per-minute load with the recommended cap as a line.
    await page.waitForSelector('[data-test=guard-chart] canvas');
    const series = await page.getAttribute('[data-test=guard-chart]', 'data-series');
    expect(series.includes('recommended cap') && series.startsWith(first), `load and cap series: ${series}`);
    const minutes = number(await page.getAttribute('[data-test=guard-chart]', 'data-points'));
    expect(minutes >= 60 && minutes <= 61, `one point per minute of the hour (got ${minutes})`);

    // A cap below the peak would have limited the spike.
    const cap = Math.max(1, Math.floor(peak / 2));
    await page.fill('[data-test=cap-input]', String(cap));
    await page.selectOption('[data-test=cap-scope]', 'principal');
    await page.click('[data-test=simulate]');
    await page.waitForSelector('[data-test=sim-breaches]');
    const breaches = number(await text(page, '[data-test=sim-breaches]'));
    const limited = number(await text(page, '[data-test=sim-limited]'));
    expect(breaches > 0 && limited > 0, `breaches under cap ${cap} (got ${breaches} windows, ${limited} requests)`);
    const who = (await page.locator('[data-test=sim-table] tbody tr').first().locator('td').first().textContent()).trim();
    expect(who === first, `the capped principal is the one limited (got ${who})`);
    await page.waitForFunction(() => (document.querySelector('[data-test=guard-chart]')?.dataset.series || '').includes('candidate cap'));
    await page.waitForTimeout(300);
    await shot(page, 'guardrails');

    // A cap far over the peak: nothing would have been limited. (The demo
    // is live: the spike's current minute keeps growing while the page is
    // looked at, so the cap leaves room for it.)
    await page.fill('[data-test=cap-input]', String(peak * 10));
    await page.click('[data-test=simulate]');
    await waitText(page, '[data-test=sim-breaches]', (t) => t.trim() === '0', 'zero breaches over the peak');

    // Export for Envoy: the recommended caps as YAML, computed when asked —
    // the live peak may have grown since the table was drawn, never shrunk.
    await page.click('[data-test=export-envoy]');
    const yaml = await waitText(page, '[data-test=envoy-yaml]', (t) => t.includes('descriptors'), 'the Envoy configuration');
    const escaped = first.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const exported = yaml.match(new RegExp(`value: ${escaped}\\s+rate_limit:\\s+unit: minute\\s+requests_per_unit: (\\d+)`));
    expect(yaml.includes('domain: sluice') && exported && Number(exported[1]) >= recommended,
      `the top principal's descriptor with its recommended cap, at least ${recommended} per minute: ${yaml.slice(0, 400)}`);
    await page.click('#modal-close');

    // A 400 from the API is shown with its status and reason.
    await page.selectOption('[data-test=guard-window]', '5m');
    await page.waitForSelector('[data-test=peaks-table] tbody tr');
    await page.click('[data-test=export-envoy]');
    const err = await waitText(page, '[data-test=export-error]', (t) => t.includes('HTTP 400'), 'the export error');
    expect(/window=1m or 1h/.test(err), `the server's reason is shown: ${err}`);
  });

  // ============================================================ Service health
  await step(page, 'service health: restarts, termination reasons, events, link to the instance', async () => {
    await page.goto(`${base}/#/health?range=1h`);
    await page.waitForSelector('[data-test=health-restarts]');
    const service = podName.replace(/-\d+$/, '');
    const on = (await text(page, '[data-test=fleet] button.on')).replace(/\d+$/, '').trim();
    expect(on === service, `the service with the most restarts, ${service}, is shown first (got ${on})`);
    const restarts = number(await text(page, '[data-test=health-restarts] .value'));
    expect(restarts >= 1, `restarts in the last hour (got ${restarts})`);
    expect(await count(page, '[data-test=health-reasons] [data-reason=OOMKilled]') === 1, 'OOMKilled among the termination reasons');
    const oomCount = number(await text(page, '[data-test=health-reasons] [data-reason=OOMKilled] .num'));
    expect(oomCount >= 1 && oomCount <= restarts, `OOMKilled count ${oomCount} within the restarts ${restarts}`);
    // The OOMKill's lifecycle: killed, backed off, started again.
    const events = await page.locator('[data-test=health-events] tbody tr').allTextContents();
    for (const reason of ['OOMKilled', 'BackOff', 'Started']) {
      expect(events.some((e) => e.includes(reason) && e.includes(`Pod/${podName}`)),
        `a ${reason} event of ${podName} among the recent lifecycle events: ${JSON.stringify(events.slice(0, 6))}`);
    }
    expect(/restarting/i.test(await text(page, '[data-test=health-status]')), 'a restarting status');
    await page.waitForTimeout(200);
    await shot(page, 'health');

    // From a termination to the lines of the instance that ended.
    await page.locator('[data-test=open-instance-logs]').first().click();
    await page.waitForSelector('[data-test=instance-view] [data-test=instance-item].selected');
    const sel = (await page.locator('[data-test=instance-item].selected .title').textContent()).trim();
    if (restarts === 1) {
      expect(sel === `instance #0 — OOMKilled at ${oomClock}`, `the OOMKilled instance #0 is opened (got ${sel})`);
    } else {
      expect(/— OOMKilled at/.test(sel), `the terminated instance is opened (got ${sel})`);
    }
    await page.waitForSelector('[data-test=instance-lines] [data-test=context-line]');
  });

  // ============================================================ Alerts
  await step(page, 'alerts: the shipped rules, the OOMKill firing, a rule\'s alerts, the service\'s alerts', async () => {
    await page.goto(`${base}/#/alerts`);
    await page.waitForSelector('[data-test=alerts-table] [data-test=alert-rule]');
    const rules = await page.locator('[data-test=alert-rule]').evaluateAll((rows) => rows.map((r) => r.dataset.rule));
    for (const name of ['HighRestartCount', 'SubmissionSpike', 'ApiLatencyP99', 'OOMKilled']) {
      expect(rules.includes(name), `the shipped rule ${name} is listed: ${rules}`);
    }
    const head = await page.locator('[data-test=alerts-table] thead th').allTextContents();
    expect(head.join('|') === 'Rule|Signal|Target|Threshold|Channel|State|Last fired', `the seed's columns: ${head}`);
    // The OOMKilled rule is evaluated every minute: it fires within one
    // evaluation of the first OOMKill being committed.
    const row = '[data-test=alert-rule][data-rule=OOMKilled]';
    const deadline = Date.now() + 150_000;
    while ((await page.locator(row).getAttribute('data-state')) !== 'firing') {
      expect(Date.now() < deadline, 'the OOMKilled rule fires within 150 s');
      await page.waitForTimeout(2000);
      await page.reload();
      await page.waitForSelector(row);
    }
    expect((await text(page, `${row} [data-test=rule-state]`)) === 'Firing', 'shown as Firing');
    expect((await text(page, `${row} [data-test=rule-last-fired]`)) !== 'never', 'with when it last fired');
    await shot(page, 'alerts');
    await page.click(row);
    await page.waitForSelector('#modal [data-test=rule-alerts]');
    const alerts = await page.locator('#modal [data-test=rule-alerts] tbody tr').allTextContents();
    expect(alerts.some((a) => a.includes(`pod=${podName}`)), `the killed pod's alert: ${alerts}`);
    expect((await text(page, '#modal [data-test=rule-query]')).includes('OOMKilled'), 'the rule as written');
    await page.click('#modal-close');
    // The service's health page lists the alert.
    await page.goto(`${base}/#/health?range=1h`);
    await page.waitForSelector('[data-test=health-alerts] [data-test=health-alert][data-rule=OOMKilled]');
  });

  await step(page, 'no script errors and no failed API calls', async () => {
    expect(pageErrors.length === 0, `no errors in the page: ${pageErrors.join('; ')}`);
    expect(apiFailures.length === 0, `no failed API calls: ${apiFailures.join('; ')}`);
  });
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
