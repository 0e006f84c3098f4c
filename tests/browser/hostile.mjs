// Hostile text in headless Chromium: HTML and script payloads in a job's description and
// document, a device's statusDetails (its failure reason), a thing's attributes, a
// template's description and the audit log render as text on every page, and nothing runs.
//
// Run by the end-to-end test `browser::hostile_text_is_inert_in_chromium`
// (tests/tests/e2e/browser.rs), which stores the payloads first:
//
//   FLOTILLA_URL=http://127.0.0.1:PORT node hostile.mjs
//
// Each check prints `ok - …`; the first failure prints `not ok - …` and exits with status 1.

import { chromium } from 'playwright-core';

const base = process.env.FLOTILLA_URL;
if (!base) {
  console.error('set FLOTILLA_URL');
  process.exit(2);
}

// Pages and the payload text each must show, as text.
const PAGES = [
  ['#/', null],
  ['#/jobs', null],
  ['#/jobs/xss-job', '<img src=x onerror='],
  ['#/devices', null],
  ['#/devices/xss-1', null],
  ['#/tech/xss-1', null],
  ['#/templates', '<script>'],
  ['#/audit', null],
];

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
// Every payload calls this; a call means script ran.
await context.addInitScript(() => {
  window.__xss = [];
});
const page = await context.newPage();
const dialogs = [];
page.on('dialog', async (dialog) => {
  dialogs.push(dialog.message());
  await dialog.dismiss();
});

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

async function check(name, body) {
  try {
    await body();
    console.log(`ok - ${name}`);
  } catch (error) {
    console.log(`not ok - ${name}`);
    console.log(error && error.stack ? error.stack : error);
    await browser.close();
    process.exit(1);
  }
}

for (const [hash, shown] of PAGES) {
  await check(`${hash} renders hostile text inert`, async () => {
    await page.goto(`${base}/${hash}`);
    await page.waitForSelector('main h1', { timeout: 20000 });
    await page.waitForFunction(() => !document.querySelector('.state.loading'), null, { timeout: 20000 });
    // Images that fail to load fire onerror only after their fetch fails.
    await page.waitForTimeout(500);
    const found = await page.evaluate(() => ({
      ran: window.__xss,
      injected: [
        ...document.querySelectorAll('main img[src="x"], main svg[onload], main iframe, main [onerror], main [onload], main a[href^="javascript:"]'),
      ].map((e) => e.outerHTML),
      scripts: [...document.querySelectorAll('script')].filter((s) => s.textContent.includes('__xss')).length,
      text: document.querySelector('main').innerText,
    }));
    assert(found.ran.length === 0, `script ran: ${JSON.stringify(found.ran)}`);
    assert(dialogs.length === 0, `a dialog opened: ${dialogs.join(', ')}`);
    assert(found.injected.length === 0, `markup was injected: ${found.injected.join(' ')}`);
    assert(found.scripts === 0, 'a payload became a script element');
    if (shown) {
      assert(found.text.includes(shown), `the payload ${shown} is not shown as text`);
    }
  });
}

await browser.close();
