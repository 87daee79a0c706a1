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

import path from 'node:path';

import { expect, open } from './harness.mjs';

const [base, outDir] = process.argv.slice(2);
const token = process.env.TENANT_TOKEN;
const namespaces = JSON.parse(process.env.TENANT_NAMESPACES);
const services = JSON.parse(process.env.TENANT_SERVICES);
const forbidden = JSON.parse(process.env.TENANT_FORBIDDEN);
const { page, step, saveToken, finish } = await open('tenant', outDir);

async function noLeak(page, where) {
  const shown = await page.evaluate(() => document.body.innerText);
  const leaked = forbidden.filter((f) => shown.includes(f));
  expect(leaked.length === 0, `${where} shows nothing of other tenants (found ${JSON.stringify(leaked)})`);
}

try {
  await saveToken(base, token, 'tenant');

  await step('logs: only the tenant\'s namespaces and lines', async () => {
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

  await step('attribution: only the tenant\'s services', async () => {
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
} finally {
  await finish();
}
