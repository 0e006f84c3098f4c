// Signing in through a real OpenID provider in headless Chromium.
//
// Run by the end-to-end test `browser::signing_in_through_the_provider_in_chromium`
// (tests/tests/e2e/browser.rs), which starts oidc-provider-mock, a server in `--auth oidc`
// mode and the queued job `sso-hang`, then runs:
//
//   FLOTILLA_URL=http://127.0.0.1:PORT FLOTILLA_SUB=olga node sign_in.mjs
//
// The page first offers only a sign-in; after the provider's code flow the browser holds a
// session, cancels the job (a change that needs the session's CSRF token) and signs out.
// Each check prints `ok - …`; the first failure prints `not ok - …` and exits with status 1.

import { chromium } from 'playwright-core';

const base = process.env.FLOTILLA_URL;
const sub = process.env.FLOTILLA_SUB;
if (!base || !sub) {
  console.error('set FLOTILLA_URL and FLOTILLA_SUB');
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
const page = await (await browser.newContext()).newPage();

async function check(name, body) {
  try {
    await body();
    console.log(`ok - ${name}`);
  } catch (error) {
    console.log(`not ok - ${name}`);
    console.log(error && error.stack ? error.stack : error);
    console.log(`the page was at ${page.url()}`);
    await browser.close();
    process.exit(1);
  }
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

await check('signed out, the page offers only a sign-in', async () => {
  await page.goto(`${base}/#/jobs/sso-hang`);
  await page.waitForSelector('[data-testid=sign-in]', { timeout: 20000 });
  assert(!(await page.isVisible('[data-testid=cancel-job]')), 'no cancel button before the sign-in');
});

await check('the provider signs the user in and sends the browser back to the same page', async () => {
  await page.click('[data-testid=sign-in]');
  await page.waitForSelector('input[name=sub]', { timeout: 20000 });
  assert(!page.url().startsWith(base), `the provider's page, not ours: ${page.url()}`);
  await page.fill('input[name=sub]', sub);
  await page.click('button[type=submit]:has-text("Authorize")');
  await page.waitForURL((url) => url.href.startsWith(base) && url.hash === '#/jobs/sso-hang', { timeout: 20000 });
  await page.waitForSelector('[data-testid=sign-out]', { timeout: 20000 });
  await page.waitForSelector('[data-testid=job-summary]', { timeout: 20000 });
  const cookies = await page.context().cookies(base);
  const session = cookies.find((c) => c.httpOnly);
  assert(session && session.sameSite === 'Lax', `an HttpOnly SameSite=Lax session cookie: ${JSON.stringify(cookies)}`);
});

await check('the session cancels a job, its CSRF token sent by the page', async () => {
  await page.click('[data-testid=cancel-job]');
  await page.waitForSelector('dialog[open]');
  await page.fill('dialog[open] textarea[name=reason]', 'signed in through SSO');
  await page.click('dialog[open] button[type=submit]');
  await page.waitForSelector('[data-testid=job-summary][data-status=CANCELED]', { timeout: 30000 });
});

await check('signing out ends the session', async () => {
  await page.click('[data-testid=sign-out]');
  await page.waitForURL((url) => !url.href.startsWith(base), { timeout: 20000 });
  await page.goto(`${base}/#/jobs/sso-hang`);
  await page.waitForSelector('[data-testid=sign-in]', { timeout: 20000 });
});

await browser.close();
