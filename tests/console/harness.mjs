// What the single-purpose console scripts (tenant.mjs, live.mjs) share:
// headless Chromium (Debian's, driven by playwright-core) on a fresh
// profile, TAP-like steps with a screenshot of each failure, the access
// token saved as a user saves it, and the closing checks.
//
// Environment: SLUICE_TEST_NODE_MODULES (where playwright-core is
// installed; default ~/.cache/sluice/node/node_modules) and
// SLUICE_TEST_CHROMIUM (default /usr/bin/chromium).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

export function expect(cond, message) {
  if (!cond) throw new Error(`expected: ${message}`);
}

/** A browser page for the script `name`, its failures shot into `outDir`. */
export async function open(name, outDir) {
  const modules = process.env.SLUICE_TEST_NODE_MODULES || path.join(os.homedir(), '.cache/sluice/node/node_modules');
  const require = createRequire(path.join(modules, 'noop.js'));
  const { chromium } = require('playwright-core');
  fs.mkdirSync(outDir, { recursive: true });
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), `sluice-${name}-chromium-`));
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
  let failed = 0;

  async function step(title, fn) {
    try {
      await fn();
      console.log(`ok - ${title}`);
    } catch (e) {
      failed++;
      console.log(`not ok - ${title}\n    ${String(e.stack || e).split('\n').join('\n    ')}`);
      await page.screenshot({ path: path.join(outDir, `FAILED-${name}-${title.replace(/[^a-z0-9]+/gi, '-')}.png`), fullPage: true }).catch(() => {});
    }
  }

  /** Saves `token` under "Access token" in the sidebar, as a user does. */
  async function saveToken(base, token, who) {
    await step(`the ${who} saves its token in the sidebar`, async () => {
      await page.goto(`${base}/#/logs?range=1h`);
      await page.click('[data-test=open-settings]');
      await page.fill('#token-input', token);
      await page.click('#settings button[value=save]');
      await page.waitForFunction(() => !!localStorage.getItem('sluice.console.token'));
    });
  }

  /** The last step (no script errors), then closes and exits. */
  async function finish() {
    await step('no script errors', async () => {
      expect(pageErrors.length === 0, `no errors in the page: ${pageErrors.join('; ')}`);
    });
    await context.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
    process.exit(failed ? 1 : 0);
  }

  return { page, step, saveToken, finish };
}
