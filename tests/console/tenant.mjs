// The console as a tenant sees it, in headless Chromium: the tenant's token
// saved under "Access token" in the sidebar, then the Logs and Attribution
// pages. Everything the pages show comes from the tenant's rows: the
// namespace picker offers only its namespaces, the log hits are its pods',
// attribution lists only its services, and no page shows a pod, user or
// word only other tenants have.
//
//   node tests/console/tenant.mjs BASE_URL SCREENSHOT_DIR
//
// Environment: SLUICE_TEST_NODE_MODULES, SLUICE_TEST_CHROMIUM (as
// console.mjs), TENANT_TOKEN, TENANT_NAMESPACES (JSON array),
// TENANT_SERVICES (JSON array), TENANT_FORBIDDEN (JSON array of strings no
// page may show). tests/tenants.rs passes them.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

const [base, outDir] = process.argv.slice(2);
const modules = process.env.SLUICE_TEST_NODE_MODULES || path.join(os.homedir(), '.cache/sluice/node/node_modules');
const require = createRequire(path.join(modules, 'noop.js'));
const { chromium } = require('playwright-core');
const token = process.env.TENANT_TOKEN;
const namespaces = JSON.parse(process.env.TENANT_NAMESPACES);
const services = JSON.parse(process.env.TENANT_SERVICES);
const forbidden = JSON.parse(process.env.TENANT_FORBIDDEN);
fs.mkdirSync(outDir, { recursive: true });

let failed = 0;
function expect(cond, message) {
  if (!cond) throw new Error(`expected: ${message}`);
}
async function step(page, name, fn) {
  try {
    await fn();
    console.log(`ok - ${name}`);
  } catch (e) {
    failed++;
    console.log(`not ok - ${name}\n    ${String(e.stack || e).split('\n').join('\n    ')}`);
    await page.screenshot({ path: path.join(outDir, `FAILED-tenant-${name.replace(/[^a-z0-9]+/gi, '-')}.png`), fullPage: true }).catch(() => {});
  }
}
async function noLeak(page, where) {
  const shown = await page.evaluate(() => document.body.innerText);
  const leaked = forbidden.filter((f) => shown.includes(f));
  expect(leaked.length === 0, `${where} shows nothing of other tenants (found ${JSON.stringify(leaked)})`);
}

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-tenant-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.SLUICE_TEST_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1440, height: 900 },
  timezoneId: 'UTC',
});
const page = context.pages()[0] || await context.newPage();
page.setDefaultTimeout(60_000);
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(e.message));

try {
  await step(page, 'the tenant saves its token in the sidebar', async () => {
    await page.goto(`${base}/#/logs?range=1h`);
    await page.click('[data-test=open-settings]');
    await page.fill('#token-input', token);
    await page.click('#settings button[value=save]');
    await page.waitForFunction(() => !!localStorage.getItem('sluice.console.token'));
  });

  await step(page, 'logs: only the tenant\'s namespaces and lines', async () => {
    await page.goto(`${base}/#/logs?range=1h`);
    await page.waitForSelector(`[data-test=log-namespace] option[value="${namespaces[0]}"]`, { state: 'attached' });
    const offered = (await page.locator('[data-test=log-namespace] option').evaluateAll((os) => os.map((o) => o.value)))
      .filter((v) => v);
    expect(offered.length > 0 && offered.every((v) => namespaces.includes(v)), `only the tenant's namespaces offered: ${offered}`);
    await page.fill('[data-test=log-query]', '*');
    await page.click('[data-test=log-search]');
    await page.waitForSelector('[data-test=log-results] [data-test=log-hit]');
    const hits = await page.locator('[data-test=log-results] [data-test=log-hit]').count();
    expect(hits > 0, `the tenant's own lines (got ${hits})`);
    await noLeak(page, 'the Logs page');
    await page.screenshot({ path: path.join(outDir, 'tenant-logs.png'), fullPage: true });
  });

  await step(page, 'attribution: only the tenant\'s services', async () => {
    await page.goto(`${base}/#/attribution?range=1h`);
    await page.waitForSelector('[data-test=attr-table] tbody tr');
    await page.selectOption('[data-test=attr-by]', 'service');
    await page.waitForFunction(() => (document.querySelector('[data-test=sql]')?.textContent || '').includes('GROUP BY service'));
    await page.waitForSelector('[data-test=attr-table] tbody tr');
    const shown = await page.locator('[data-test=attr-table] tbody tr td:first-child').allTextContents();
    expect(shown.length > 0 && shown.every((s) => services.includes(s.trim())), `only the tenant's services: ${shown}`);
    await noLeak(page, 'the Attribution page');
    await page.screenshot({ path: path.join(outDir, 'tenant-attribution.png'), fullPage: true });
  });

  await step(page, 'no script errors', async () => {
    expect(pageErrors.length === 0, `no errors in the page: ${pageErrors.join('; ')}`);
  });
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
