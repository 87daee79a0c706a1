// The Logs page's Live toggle in headless Chromium, against a fresh
// `sluice up --demo` whose first pod is OOMKilled 20 s after its start
// (tests/tail.rs starts it and runs this at once): the live view shows the
// pod's earlier lines, then its new ones as they are written, the notice
// that the next instance started after an OOMKill, and that instance's
// lines; switching Live off stops the stream.
//
//   node tests/console/live.mjs BASE_URL SCREENSHOT_DIR
//
// Environment: SLUICE_TEST_NODE_MODULES, SLUICE_TEST_CHROMIUM (as
// console.mjs), LIVE_TOKEN (an operator token), LIVE_POD (namespace/pod),
// LIVE_CONTAINER.

import path from 'node:path';

import { expect, open } from './harness.mjs';

const [base, outDir] = process.argv.slice(2);
const token = process.env.LIVE_TOKEN;
const [namespace, pod] = process.env.LIVE_POD.split('/');
const container = process.env.LIVE_CONTAINER;
const { page, step, saveToken, finish } = await open('live', outDir);
const liveLines = (restart) => page.locator(`[data-test=live-results] [data-test=live-line][data-restart="${restart}"]`);

try {
  await saveToken(base, token, 'operator');

  await step('live: earlier lines, then new ones as they are written', async () => {
    await page.goto(`${base}/#/logs?${new URLSearchParams({ range: '15m', namespace, pod, container })}`);
    await page.click('[data-test=log-live]');
    expect(await page.getAttribute('[data-test=log-live]', 'aria-pressed') === 'true', 'the toggle shows it is on');
    await page.waitForSelector('[data-test=live-results] [data-test=live-notice]', { state: 'attached' });
    await liveLines(0).first().waitFor();
    const before = await liveLines(0).count();
    await page.waitForFunction((n) => document.querySelectorAll('[data-test=live-results] [data-test=live-line][data-restart="0"]').length > n + 5, before);
    const names = await page.locator('[data-test=live-results] [data-test=live-line] .name').allTextContents();
    expect(names.every((n) => n.trim() === `${pod}/${container}`), `only the chosen container's lines: ${[...new Set(names)]}`);
  });

  await step('live: the OOMKill, then the next instance\'s lines', async () => {
    const notice = page.locator('[data-test=live-results] [data-test=live-notice]', { hasText: 'instance #1 started' });
    await notice.waitFor({ timeout: 90_000 });
    const text = (await notice.textContent()).trim();
    expect(text.includes('OOMKilled, exit code 137'), `the notice says how #0 ended (got ${text})`);
    await liveLines(1).first().waitFor();
    // The notice comes before the new instance's first line.
    const order = await page.evaluate(() => {
      const rows = [...document.querySelectorAll('[data-test=live-results] > *')];
      const n = rows.findIndex((r) => r.dataset.test === 'live-notice' && r.textContent.includes('instance #1 started'));
      const l = rows.findIndex((r) => r.dataset.test === 'live-line' && r.dataset.restart === '1');
      const last0 = rows.map((r) => r.dataset.test === 'live-line' && r.dataset.restart === '0').lastIndexOf(true);
      return { n, l, last0 };
    });
    expect(order.last0 < order.n && order.n < order.l, `old lines, the notice, new lines in that order: ${JSON.stringify(order)}`);
    const badge = (await liveLines(1).first().locator('[data-test=restart-badge]').textContent()).trim();
    expect(badge === '#1', `the new lines carry badge #1 (got ${badge})`);
    await page.screenshot({ path: path.join(outDir, 'logs-live.png'), fullPage: true });
  });

  await step('live off: the stream stops', async () => {
    await page.click('[data-test=log-live]');
    expect(await page.getAttribute('[data-test=log-live]', 'aria-pressed') === 'false', 'the toggle shows it is off');
    const n = await page.locator('[data-test=live-results] [data-test=live-line]').count();
    await page.waitForTimeout(2000);
    const m = await page.locator('[data-test=live-results] [data-test=live-line]').count();
    expect(m === n, `no line after Live is off (${n} → ${m})`);
  });
} finally {
  await finish();
}
