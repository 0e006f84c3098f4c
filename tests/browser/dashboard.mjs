// The dashboard in headless Chromium, against a real server, engine and simulated fleet.
//
// Run by the end-to-end test `browser::the_dashboard_works_in_chromium`
// (tests/tests/e2e/browser.rs), which starts the server, creates the template `ui-fw`, the
// hanging job `ui-hang` and the failed job `ui-fail` (on sim-0020), then runs:
//
//   FLOTILLA_URL=http://127.0.0.1:PORT FLOTILLA_SCREENSHOTS=DIR node dashboard.mjs
//
// It also installs 2.0.0 on sim-0007 (job `ui-install`) and waits until all 30 simulated
// devices are online in the inventory.
//
// Each check prints `ok - …`; the first failure prints `not ok - …` and exits with status 1.
// axe-core must find no serious or critical violation on any page, in both themes.

import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import AxeBuilder from '@axe-core/playwright';

const base = process.env.FLOTILLA_URL;
const shots = process.env.FLOTILLA_SCREENSHOTS;
if (!base || !shots) {
  console.error('set FLOTILLA_URL and FLOTILLA_SCREENSHOTS');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const DESKTOP = { width: 1280, height: 800 };
const TABLET = { width: 768, height: 1024 };
let passed = 0;

async function check(name, body) {
  try {
    await body();
    passed += 1;
    console.log(`ok - ${name}`);
  } catch (error) {
    console.log(`not ok - ${name}`);
    console.log(error && error.stack ? error.stack : error);
    await browser.close();
    process.exit(1);
  }
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

async function api(path) {
  const response = await fetch(base + path);
  assert(response.ok, `GET ${path}: HTTP ${response.status}`);
  return response.json();
}

/** Fails on serious or critical axe-core violations of the page as it is now. */
async function accessible(page, what) {
  const result = await new AxeBuilder({ page }).analyze();
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert(
    bad.length === 0,
    `${what}: ${bad.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).slice(0, 5).join(', ')}`).join('; ')}`,
  );
}

async function open(page, hash, ready = 'main h1') {
  await page.goto(`${base}/${hash}`);
  await page.waitForSelector(ready, { timeout: 20000 });
  // Data-driven parts render after their first fetch.
  await page.waitForFunction(() => !document.querySelector('.state.loading'), null, { timeout: 20000 });
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
const desktop = await browser.newContext({ viewport: DESKTOP, acceptDownloads: true });
const page = await desktop.newPage();
const errors = [];
page.on('pageerror', (e) => errors.push(String(e)));

await check('the overview shows the fleet', async () => {
  await open(page, '#/', '[data-testid=overview]');
  await page.waitForFunction(() => /^\d+/.test(document.querySelector('[data-testid=fleet-size]').textContent));
  const size = Number.parseInt(await page.textContent('[data-testid=fleet-size]'), 10);
  assert(size >= 30, `fleet size ${size}`);
});

await check('a 2-wave rollout made in the wizard reaches 100% without a reload', async () => {
  await open(page, '#/new', '[name=rollout_id]');
  await page.click('[data-testid=next]');
  assert(await page.isVisible('.field-error'), 'an empty first step shows what is missing');
  await page.fill('[name=rollout_id]', 'ui-wave');
  await page.waitForSelector('[name=template_id] option[value=ui-fw]', { state: 'attached' });
  await page.selectOption('[name=template_id]', 'ui-fw');
  await page.waitForSelector('[name="param.version"]');
  await page.fill('[name=version]', '2.0.0');
  await page.click('[data-testid=next]');
  await page.fill('[name=things]', 'sim-0001 sim-0002 sim-0003 sim-0004 sim-0005 sim-0006');
  await page.waitForFunction(() => document.querySelector('[data-testid=preview-total]')?.textContent === '6');
  await page.click('[data-testid=next]');
  await page.selectOption('[name=wave-kind-0]', 'count');
  await page.fill('[name=wave-0]', '0');
  await page.waitForSelector('.waves-edit .field-error');
  await page.fill('[name=wave-0]', '2');
  await page.fill('[name=wave-1]', '100');
  await page.waitForFunction(() => /2\D+4/.test(document.querySelector('[data-testid=preview]').textContent));
  await page.click('[data-testid=next]');
  await page.fill('[name=rate]', '5000');
  await page.click('[data-testid=next]');
  assert(await page.isVisible('#err-rate'), 'an out-of-range rate is refused inline');
  await page.fill('[name=rate]', '100');
  await page.click('[data-testid=next]');
  await page.waitForSelector('[data-testid=job-document]');
  await page.waitForFunction(() => document.querySelector('[data-testid=job-document]').textContent.includes('2.0.0'));
  const body = JSON.parse(await page.textContent('[data-testid=request-body]'));
  assert(body.rollout_id === 'ui-wave' && body.waves.length === 2 && body.waves[0].count === 2, JSON.stringify(body));
  await accessible(page, 'wizard review');
  await page.screenshot({ path: join(shots, 'wizard-review-desktop.png'), fullPage: true });
  await page.click('[data-testid=start]');
  await page.waitForURL(/#\/rollouts\/ui-wave$/);
  await page.waitForSelector('[data-testid=rollout-summary]');
  const seen = new Set();
  const deadline = Date.now() + 180000;
  for (;;) {
    const percent = await page.getAttribute('[data-testid=rollout-summary]', 'data-percent');
    seen.add(percent);
    const state = await page.getAttribute('[data-testid=rollout-summary]', 'data-state');
    if (percent === '100' && state === 'completed') break;
    assert(Date.now() < deadline, `still at ${percent}% (${state}); saw ${[...seen]}`);
    await page.waitForTimeout(200);
  }
  assert(seen.size >= 2, `the progress moved on the page (saw ${[...seen]})`);
  assert((await page.$$('table.waves tbody tr')).length === 2, 'two waves');
  const rollout = await api('/api/v1/rollouts/ui-wave');
  assert(rollout.state === 'completed', `server says ${rollout.state}`);
  await accessible(page, 'rollout detail');
  await page.screenshot({ path: join(shots, 'rollout-desktop.png'), fullPage: true });
});

await check('a job is canceled with a reason', async () => {
  await open(page, '#/jobs/ui-hang', '[data-testid=job-summary]');
  await page.click('[data-testid=cancel-job]');
  await page.waitForSelector('dialog[open]');
  assert(await page.isDisabled('dialog[open] button[type=submit]'), 'a reason is required');
  await accessible(page, 'cancel dialog');
  await page.fill('dialog[open] textarea[name=reason]', 'bad build 42');
  await page.click('dialog[open] button[type=submit]');
  await page.waitForSelector('[data-testid=job-summary][data-status=CANCELED]', { timeout: 30000 });
  const audit = await api('/api/v1/audit?target=/api/v1/jobs/ui-hang/cancel');
  assert(
    audit.entries.some((e) => e.outcome === 'ok' && JSON.stringify(e.request).includes('bad build 42')),
    `the audit log has the reason: ${JSON.stringify(audit.entries)}`,
  );
  // The executions table: filter, then a device's drawer.
  await page.selectOption('[data-testid=execution-status]', 'IN_PROGRESS');
  await page.waitForSelector('tr[data-thing] button.link');
  await page.click('tr[data-thing] button.link');
  await page.waitForSelector('dialog.drawer[open] .facts');
  await accessible(page, 'device drawer');
  await page.screenshot({ path: join(shots, 'device-drawer-desktop.png') });
  await page.keyboard.press('Escape');
  await page.waitForSelector('dialog.drawer', { state: 'detached' });
});

await check('the audit log exports CSV', async () => {
  await open(page, '#/audit', 'table.audit');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid=export-csv]')]);
  const csv = readFileSync(await download.path(), 'utf8');
  assert(csv.startsWith('id,at,actor,action,target,status,outcome,source,request\r\n'), csv.slice(0, 200));
  assert(csv.includes('/api/v1/rollouts') && csv.includes('bad build 42'), 'the CSV has the rollout and the cancel');
});

await check('the devices page shows the inventory, pages through it and filters by connectivity', async () => {
  await open(page, '#/devices', 'tr[data-thing=sim-0001]');
  await page.waitForSelector('tr[data-thing=sim-0001] .badge[data-connected=true]');
  const version = await page.getAttribute('tr[data-thing=sim-0001] td[data-version]', 'data-version');
  assert(version === '1.0.0', `sim-0001 runs ${version}`);
  await page.waitForSelector('tr[data-thing=sim-0007] td[data-version="2.0.0"]');
  // 30 devices, 25 a page.
  assert(!(await page.$('tr[data-thing=sim-0026]')), 'the first page ends at sim-0025');
  await page.click('[data-testid=next-page]');
  await page.waitForSelector('tr[data-thing=sim-0026]');
  assert(!(await page.$('tr[data-thing=sim-0001]')), 'the second page starts after the first');
  assert(!(await page.$('[data-testid=next-page]')), 'the second page is the last');
  await page.click('[data-testid=first-page]');
  await page.waitForSelector('tr[data-thing=sim-0001]');
  await page.selectOption('[name=filter-connectivity]', 'offline');
  await page.waitForSelector('[data-testid=device-search] .state.empty');
  await page.selectOption('[name=filter-connectivity]', 'online');
  await page.waitForSelector('tr[data-thing=sim-0001] .badge[data-connected=true]');
  // The distribution: 29 devices on 1.0.0, sim-0007 on 2.0.0.
  await page.waitForFunction(() =>
    document.querySelector('[data-testid=distribution] tr[data-version="2.0.0"] [data-testid=version-devices]')?.textContent === '1');
  await accessible(page, 'devices');
});

await check('a device registered in the form gets its one-time bundle, and shows offline', async () => {
  await open(page, '#/devices', '[data-testid=register-device]');
  await page.fill('[name=register-name]', 'ui-new-1');
  await page.fill('[name=register-attributes]', 'nokey');
  await page.click('[data-testid=register-device] button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#err-register-attributes')?.textContent.trim() !== '');
  await page.fill('[name=register-attributes]', 'site=lab');
  await page.fill('[name=register-software_version]', '0.9.0');
  await page.click('[data-testid=register-device] button[type=submit]');
  await page.waitForSelector('[data-testid=registered][data-thing=ui-new-1]', { timeout: 30000 });
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid=download-bundle]')]);
  const bundle = JSON.parse(readFileSync(await download.path(), 'utf8'));
  assert(bundle.thing_name === 'ui-new-1', `the bundle is ui-new-1's: ${bundle.thing_name}`);
  assert(bundle.private_key_pem.includes('PRIVATE KEY') && bundle.agent_config.includes('0.9.0'), 'the bundle has a key and the version');
  await page.waitForSelector('[data-testid=bundle-downloaded]');
  await page.selectOption('[name=filter-connectivity]', 'offline');
  await page.waitForSelector('tr[data-thing=ui-new-1] .badge[data-connected=false]');
  assert(!(await page.$('tr[data-thing=sim-0001]')), 'online devices are filtered out');
});

await check('a dynamic group with a bad query is refused on the field, a good one is created', async () => {
  await page.fill('[name=group-name]', 'ui-lab');
  await page.check('input[name=group-kind][value=dynamic]');
  await page.fill('[name=group-query]', 'connectivity.connected:true');
  await page.click('[data-testid=create-group] button[type=submit]');
  await page.waitForFunction(() => document.querySelector('[data-testid=group-query-error]')?.textContent.trim() !== '');
  await page.fill('[name=group-query]', 'attributes.site:lab');
  await page.click('[data-testid=create-group] button[type=submit]');
  await page.waitForSelector('[data-testid=groups] tr[data-group=ui-lab]');
  const members = await page.textContent('[data-testid=groups] tr[data-group=ui-lab] td.num');
  assert(members.trim() === '1', `ui-lab has ${members} members`);
  await accessible(page, 'devices with forms filled');
});

await check('a device page shows connectivity, version history and executions', async () => {
  await open(page, '#/devices/sim-0007', '[data-testid=device-inventory] .facts');
  await page.waitForSelector('[data-testid=device-connectivity] .badge[data-connected=true]');
  assert((await page.textContent('[data-testid=installed-version]')).trim() === '2.0.0', 'sim-0007 runs 2.0.0');
  await page.waitForSelector('[data-testid=version-history] tr[data-version="2.0.0"]');
  await page.waitForSelector('[data-testid=version-history] tr[data-version="1.0.0"]');
  await page.waitForSelector('[data-testid=connectivity-history] tr[data-connected=true]');
  await page.waitForSelector('[data-testid=device-executions] tr[data-job-id=ui-install] [data-status=SUCCEEDED]');
  await accessible(page, 'device inventory');
});

await check("a device's certificates are revoked after a confirmation", async () => {
  await open(page, '#/devices/ui-new-1', '[data-testid=device-inventory] .facts');
  await page.waitForSelector('[data-testid=device-connectivity] .badge[data-connected=false]');
  await page.click('[data-testid=revoke]');
  await page.waitForSelector('dialog[open]');
  await page.click('dialog[open] button[type=submit]');
  // An earlier notice may still show: wait for this one.
  await page.waitForFunction(() => /revoked/.test(document.querySelector('[data-testid=notice].ok')?.textContent ?? ''));
  const notice = await page.textContent('[data-testid=notice]');
  assert(/revoked: 1/.test(notice), `the notice counts the revoked certificate: ${notice}`);
  const certificates = await api('/api/v1/devices/ui-new-1/certificates');
  assert(certificates.certificates.every((c) => c.status === 'REVOKED'), JSON.stringify(certificates));
});

await check('the page is keyboard navigable', async () => {
  await open(page, '#/', '[data-testid=overview]');
  // A fresh load, so keyboard navigation starts at the top of the document.
  await page.reload();
  await page.waitForSelector('[data-testid=overview]');
  await page.keyboard.press('Tab');
  assert((await page.evaluate(() => document.activeElement.className)) === 'skip', 'the first Tab reaches the skip link');
  await page.keyboard.press('Enter');
  assert((await page.evaluate(() => document.activeElement.id)) === 'main', 'the skip link moves focus to the content');
  await page.focus('a[data-nav=jobs]');
  await page.keyboard.press('Enter');
  await page.waitForURL(/#\/jobs$/);
});

const pages = [
  ['overview', '#/', '[data-testid=overview]'],
  ['jobs', '#/jobs', 'table.jobs'],
  ['job', '#/jobs/ui-hang', '[data-testid=job-summary]'],
  ['rollout', '#/rollouts/ui-wave', '[data-testid=rollout-summary]'],
  ['wizard', '#/new', '[name=rollout_id]'],
  ['devices', '#/devices', 'tr[data-thing]'],
  ['device', '#/devices/sim-0020', '.facts'],
  ['technician', '#/tech', '#tech-query'],
  ['technician-device', '#/tech/sim-0020', '[data-testid=tech-device] .facts'],
  ['templates', '#/templates', 'tr[data-template]'],
  ['artifacts', '#/artifacts', 'main h1'],
  ['audit', '#/audit', 'table.audit'],
  ['settings', '#/settings', '[name=settings-theme]'],
];

await check('every page passes axe-core at desktop size, and is photographed', async () => {
  for (const [name, hash, ready] of pages) {
    await open(page, hash, ready);
    await accessible(page, name);
    await page.screenshot({ path: join(shots, `${name}-desktop.png`), fullPage: true });
  }
});

const tablet = await browser.newContext({ viewport: TABLET, hasTouch: true, isMobile: true });
const tech = await tablet.newPage();
tech.on('pageerror', (e) => errors.push(String(e)));

await check('a technician at 768x1024 finds a device and retries it', async () => {
  await open(tech, '#/tech', '#tech-query');
  await tech.fill('#tech-query', 'sim-0020');
  await tech.waitForSelector('.tech-results a');
  await tech.press('#tech-query', 'Enter');
  await tech.waitForURL(/#\/tech\/sim-0020$/);
  await tech.waitForSelector('[data-testid=quick-retry]');
  const small = await tech.$$eval('.tech button, .tech a.button, .tech input, .tech select', (elements) =>
    elements
      .filter((e) => e.offsetParent !== null)
      .map((e) => [e.textContent.trim() || e.name || e.id, e.getBoundingClientRect()])
      .filter(([, r]) => r.height < 44 || r.width < 44)
      .map(([what, r]) => `${what} ${r.width}x${r.height}`),
  );
  assert(small.length === 0, `touch targets under 44 px: ${small}`);
  const width = await tech.evaluate(() => document.documentElement.scrollWidth);
  assert(width <= 768, `the page fits the tablet (${width} px wide)`);
  await tech.tap('[data-testid=quick-retry]');
  await tech.waitForSelector('dialog[open]');
  await tech.tap('dialog[open] button[type=submit]');
  await tech.waitForSelector('[data-testid=notice].ok', { timeout: 30000 });
  const notice = await tech.textContent('[data-testid=notice]');
  assert(/ui-fail/.test(notice), `the notice names the follow-up job: ${notice}`);
  const thing = await api('/api/v1/things/sim-0020');
  assert(thing.executions.length >= 2, `sim-0020 has the retry: ${JSON.stringify(thing.executions)}`);
});

await check('every page passes axe-core at tablet size, and is photographed', async () => {
  for (const [name, hash, ready] of pages) {
    await open(tech, hash, ready);
    await accessible(tech, `${name} (tablet)`);
    await tech.screenshot({ path: join(shots, `${name}-tablet.png`), fullPage: true });
  }
});

await check('Spanish and dark mode, kept across a reload', async () => {
  await open(page, '#/', '[data-testid=overview]');
  await page.selectOption('[data-testid=language]', 'es');
  await page.waitForFunction(() => document.querySelector('a[data-nav=overview]').textContent === 'Resumen');
  assert((await page.getAttribute('html', 'lang')) === 'es', 'the page says it is Spanish');
  await page.click('[data-testid=theme-toggle]');
  await page.waitForSelector('html[data-theme=dark]');
  await page.reload();
  await page.waitForSelector('[data-testid=overview]');
  assert((await page.textContent('a[data-nav=overview]')) === 'Resumen', 'Spanish after a reload');
  assert((await page.getAttribute('html', 'data-theme')) === 'dark', 'dark after a reload');
  const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  const [r, g, b] = background.match(/\d+/g).map(Number);
  assert(r + g + b < 120, `a dark background: ${background}`);
  for (const [name, hash, ready] of pages) {
    await open(page, hash, ready);
    await accessible(page, `${name} (dark, Spanish)`);
    await page.screenshot({ path: join(shots, `${name}-dark-es-desktop.png`), fullPage: true });
  }
});

await check('no script error on any page', async () => {
  assert(errors.length === 0, errors.join('\n'));
});

await browser.close();
console.log(`${passed} passed, 0 failed`);
