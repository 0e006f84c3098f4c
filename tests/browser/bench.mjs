// The overview's first render, timed in headless Chromium: from navigation start to the
// overview's data on screen (`[data-testid=overview]`, rendered once its first fetch answered).
// Run by tests/examples/bench_ui.rs: `FLOTILLA_URL=… node bench.mjs`. Prints one JSON object.

import { chromium } from 'playwright-core';

const base = process.env.FLOTILLA_URL;
const RUNS = 10;
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });

async function once(context) {
  const page = await context.newPage();
  await page.goto(`${base}/#/`, { waitUntil: 'commit' });
  await page.waitForSelector('[data-testid=overview]', { timeout: 30000 });
  const ms = await page.evaluate(() => performance.now());
  await page.close();
  return ms;
}

const cold = [];
const warm = [];
for (let i = 0; i < RUNS; i += 1) {
  // A new context has an empty cache: the whole bundle is downloaded and compiled.
  const context = await browser.newContext();
  cold.push(await once(context));
  warm.push(await once(context));
  await context.close();
}
await browser.close();
console.log(JSON.stringify({ cold, warm }));
