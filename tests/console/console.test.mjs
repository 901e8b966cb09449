// The console in a real browser against the real binary: sign in, filter, inspect, replay,
// retry, delete, sign out; what a read key may not do; attacker-controlled payloads stay
// inert; a state-changing call without the CSRF token is refused. Screenshots for the README
// are written to docs/console/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { start, waitFor, ROOT, WRITE_KEY, READ_KEY, GITHUB_SECRET } from './harness.mjs';

let gw;
const ids = {};

async function ingest(source, body, headers = {}) {
  const raw = typeof body === 'string' ? body : JSON.stringify(body);
  const r = await fetch(`${gw.base}/e/default/${source}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-env': 'prod', ...headers },
    body: raw,
  });
  assert.equal(r.status, 202, await r.clone().text());
  return (await r.json()).id;
}

async function deliveriesOf(id) {
  const r = await gw.api('GET', `/api/v1/events/${id}/deliveries`);
  return (await r.json()).data;
}

const settled = (ds) => ds.length > 0 && ds.every((d) => ['success', 'failed', 'dead_letter'].includes(d.status));

async function signIn(page, key) {
  await page.goto(`${gw.base}/console`);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Events' }).waitFor();
}

async function newPage(viewport = { width: 1280, height: 900 }) {
  const context = await gw.browser.newContext({ viewport });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('dialog', (d) => { problems.push(`a script opened a ${d.type()} dialog: ${d.message()}`); d.dismiss(); });
  return { context, page, problems };
}

before(async () => {
  gw = await start();
  ids.created = await ingest('orders', { type: 'order.created', order: 1001, customer: 'Ada' });
  ids.paid = await ingest('orders', { type: 'order.paid', order: 1001, amount: 4200, currency: 'EUR' });
  ids.xss = await ingest('orders',
    '{"type":"order.note","note":"<script>window.__xss=1</script><img src=x onerror=\\"window.__xss=2\\">"}',
    { 'x-note': '<img src=y onerror="window.__xss=3">' });
  ids.unsigned = await ingest('github', { action: 'opened' }, {
    'x-github-event': 'pull_request',
    'x-hub-signature-256': `sha256=${createHmac('sha256', 'not-the-secret').update('{"action":"opened"}').digest('hex')}`,
  });
  await waitFor('the deliveries to settle', async () => settled(await deliveriesOf(ids.paid)) && settled(await deliveriesOf(ids.created)));
});

after(async () => {
  if (gw) {
    const logs = gw.logs();
    await gw.stop();
    assert.ok(!logs.includes(WRITE_KEY) && !logs.includes(READ_KEY), 'no API key in the logs');
  }
});

test('a write key signs in, filters, finds why a delivery failed, replays, retries, deletes and signs out', async () => {
  const { context, page, problems } = await newPage();
  await signIn(page, WRITE_KEY);

  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'hookmesh_session');
  assert.ok(session, 'a session cookie');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Strict');
  assert.ok(!session.value.includes(WRITE_KEY), 'the cookie does not hold the key');
  assert.ok(!page.url().includes(WRITE_KEY), 'the key is not in the URL');

  const rows = page.locator('main tbody tr');
  await waitFor('four events listed', async () => (await rows.count()) === 4);
  // Newest first.
  assert.match(await rows.first().innerText(), new RegExp(ids.unsigned));
  mkdirSync(path.join(ROOT, 'docs/console'), { recursive: true });
  await page.screenshot({ path: path.join(ROOT, 'docs/console/events.png'), fullPage: true });

  // Filters: source, then signature validity, then event type with status.
  await page.getByLabel('Source').selectOption('default/github');
  await page.getByRole('button', { name: 'Apply filters' }).click();
  await waitFor('only the github event', async () => (await rows.count()) === 1);
  assert.match(await rows.first().innerText(), /default\/github/);
  await page.getByRole('button', { name: 'Clear' }).click();
  await waitFor('the filters cleared', async () => (await rows.count()) === 4);
  await page.getByLabel('Signature').selectOption('false');
  await page.getByRole('button', { name: 'Apply filters' }).click();
  await waitFor('only the badly signed event', async () => (await rows.count()) === 1 && /invalid/.test(await rows.first().innerText()));
  await page.getByRole('button', { name: 'Clear' }).click();
  await waitFor('the filters cleared', async () => (await rows.count()) === 4);
  await page.getByLabel('Event type (glob)').fill('order.*');
  await page.getByRole('checkbox', { name: 'partial' }).check();
  await page.getByRole('button', { name: 'Apply filters' }).click();
  await waitFor('only the partly delivered order', async () => (await rows.count()) === 1);
  assert.match(await rows.first().innerText(), new RegExp(ids.paid));
  assert.match(page.url(), /event_type=order\.\*/);

  // The event: why billing failed, without reading JSON.
  await page.getByRole('link', { name: ids.paid }).click();
  await page.getByRole('heading', { name: `Event ${ids.paid}` }).waitFor();
  const billing = page.locator('article.delivery', { hasText: 'To default/billing' });
  await billing.waitFor();
  const attempt = billing.locator('tbody tr').first();
  assert.match(await attempt.innerText(), /503/);
  assert.match(await attempt.innerText(), /database unavailable/);
  assert.match(await page.locator('article.delivery', { hasText: 'To default/shipping' }).innerText(), /success/);
  assert.match(await page.locator('pre').last().innerText(), /"currency": "EUR"/, 'pretty JSON');
  await page.screenshot({ path: path.join(ROOT, 'docs/console/event.png'), fullPage: true });
  await page.getByRole('button', { name: 'Raw' }).click();
  assert.match(await page.locator('pre[aria-labelledby="h-body"]').innerText(), /"currency":"EUR"/);
  assert.match(await page.locator('section', { hasText: 'Headers' }).innerText(), /x-env/);
  assert.match(await page.locator('ol.timeline').innerText(), /received/i);

  // Replay to a chosen endpoint: a new delivery appears.
  const before = await page.locator('article.delivery').count();
  await page.getByRole('checkbox', { name: 'shipping' }).check();
  await page.getByRole('button', { name: 'Replay to chosen' }).click();
  await waitFor('the replayed delivery on the page', async () => (await page.locator('article.delivery').count()) === before + 1);
  await waitFor('the replay delivered', async () => (await deliveriesOf(ids.paid)).filter((d) => d.endpoint === 'shipping' && d.status === 'success').length === 2);

  // Retry the failed delivery: it is attempted again.
  const sentBefore = gw.receiver.seen.filter((s) => s.path === '/broken').length;
  await page.getByRole('button', { name: 'Retry delivery to billing' }).click();
  await waitFor('the retry reached the receiver', async () => gw.receiver.seen.filter((s) => s.path === '/broken').length === sentBefore + 1);

  // A state-changing call without the CSRF token is refused, with the cookie alone.
  const forged = await page.evaluate(async (id) => {
    const r = await fetch(`/api/v1/events/${id}/replay`, { method: 'POST', credentials: 'same-origin' });
    return { status: r.status, body: await r.json() };
  }, ids.paid);
  assert.equal(forged.status, 403);
  assert.equal(forged.body.code, 'CSRF_TOKEN_INVALID');

  // Delete, confirmed in the dialog: gone from the list and from the API.
  await page.getByRole('button', { name: 'Delete event…' }).click();
  const dialog = page.getByRole('dialog', { name: 'Delete this event?' });
  await dialog.getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('heading', { name: 'Events' }).waitFor();
  await waitFor('three events listed', async () => (await rows.count()) === 3);
  assert.doesNotMatch(await page.locator('main tbody').innerText(), new RegExp(ids.paid));
  assert.equal((await gw.api('GET', `/api/v1/events/${ids.paid}`)).status, 404);

  // Sign out: back to the sign-in page, and the cookie no longer opens the API.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  const after = await page.evaluate(async () => (await fetch('/api/v1/events', { credentials: 'same-origin' })).status);
  assert.equal(after, 401);
  assert.deepEqual(problems, []);
  await context.close();
});

test('the other pages: deliveries with filters, endpoints with their last error, sources, subscriptions', async () => {
  // The first test deleted its failed order: another one.
  const paid = await ingest('orders', { type: 'order.paid', order: 1003, amount: 100, currency: 'EUR' });
  await waitFor('its deliveries to settle', async () => settled(await deliveriesOf(paid)));
  const { context, page, problems } = await newPage();
  await signIn(page, WRITE_KEY);
  await page.getByRole('link', { name: 'Deliveries' }).click();
  await page.getByRole('heading', { name: 'Deliveries' }).waitFor();
  await page.getByRole('checkbox', { name: 'dead letter' }).check();
  await page.getByRole('button', { name: 'Apply filters' }).click();
  const rows = page.locator('main tbody tr');
  // All rows read at once: the table is replaced when the filtered page arrives.
  await waitFor('only dead-lettered deliveries', async () => {
    if (!/status=dead_letter/.test(page.url())) return false;
    const texts = await rows.allInnerTexts();
    return texts.length > 0 && texts.every((t) => /dead letter/.test(t));
  });
  assert.match(await rows.first().innerText(), /default\/billing/);
  assert.ok(await rows.first().getByRole('button', { name: 'Retry delivery to billing' }).isVisible());

  await page.getByRole('link', { name: 'Endpoints' }).click();
  await page.getByRole('heading', { name: 'Endpoints' }).waitFor();
  const billing = page.locator('main tbody tr', { hasText: 'default/billing' });
  await waitFor('billing\'s last error', async () => /HTTP 503|503/.test(await billing.innerText()));
  assert.match(await billing.innerText(), /\/broken/);
  assert.match(await page.locator('main tbody tr', { hasText: 'default/shipping' }).innerText(), /closed/);

  await page.getByRole('link', { name: 'Sources' }).click();
  await page.getByRole('heading', { name: 'Sources' }).waitFor();
  const orders = page.locator('main tbody tr', { hasText: 'default/orders' });
  assert.match(await orders.innerText(), new RegExp(`${gw.base}/e/default/orders`));
  assert.ok(await orders.getByRole('button', { name: 'Copy the ingest URL of orders' }).isVisible());
  assert.match(await page.locator('main tbody tr', { hasText: 'default/github' }).innerText(), /github[\s\S]*audit/);

  await page.getByRole('link', { name: 'Subscriptions' }).click();
  await page.getByRole('heading', { name: 'Subscriptions' }).waitFor();
  const toShipping = page.locator('main tbody tr', { hasText: 'orders-to-shipping' });
  assert.match(await toShipping.innerText(), /order\.\*/);
  assert.match(await toShipping.innerText(), /header x-env = "prod"/);
  assert.deepEqual(problems, []);
  await context.close();
});

test('bulk replay tells how many events it will replay, then replays them', async () => {
  const { context, page, problems } = await newPage();
  await signIn(page, WRITE_KEY);
  await page.getByLabel('Source').selectOption('default/orders');
  await page.getByRole('button', { name: 'Apply filters' }).click();
  // created, the note, and the second test's order.paid (the first test deleted its own).
  await waitFor('the orders events', async () => (await page.locator('main tbody tr').count()) === 3);
  const sent = gw.receiver.seen.length;
  await page.getByRole('button', { name: 'Replay all matching…' }).click();
  const dialog = page.getByRole('dialog', { name: 'Replay matching events' });
  await dialog.waitFor();
  assert.match(await dialog.innerText(), /This replays 3 events/);
  await dialog.getByRole('button', { name: 'Replay 3' }).click();
  await waitFor('the outcome said', async () => /Replayed 3 events/.test(await page.getByRole('status').innerText()));
  // Each goes to shipping (order.*, x-env prod); order.paid to billing as well.
  await waitFor('the replays delivered', async () => gw.receiver.seen.length === sent + 4);
  assert.deepEqual(problems, []);
  await context.close();
});

test('new events appear in the list while it is open', async () => {
  const { context, page, problems } = await newPage();
  await signIn(page, WRITE_KEY);
  const rows = page.locator('main tbody tr');
  const n = await rows.count();
  const fresh = await ingest('orders', { type: 'order.created', order: 1002 });
  await waitFor('the new event listed', async () => (await rows.count()) === n + 1 && new RegExp(fresh).test(await rows.first().innerText()), 15000);
  assert.match(await page.getByRole('status').innerText(), /1 new event/);
  assert.deepEqual(problems, []);
  await context.close();
});

test('a read key sees everything and no action', async () => {
  const { context, page, problems } = await newPage();
  await signIn(page, READ_KEY);
  assert.match(await page.locator('#who-text').innerText(), /read/);
  assert.equal(await page.getByRole('button', { name: /Replay/ }).count(), 0);
  await page.getByRole('link', { name: ids.created }).click();
  await page.getByRole('heading', { name: `Event ${ids.created}` }).waitFor();
  await page.locator('article.delivery').first().waitFor();
  for (const name of [/Replay/, /Delete/, /Retry/]) {
    assert.equal(await page.getByRole('button', { name }).count(), 0, `no ${name} button`);
  }
  await page.getByRole('link', { name: 'Deliveries' }).click();
  await page.getByRole('heading', { name: 'Deliveries' }).waitFor();
  await page.locator('main tbody tr').first().waitFor();
  assert.equal(await page.getByRole('button', { name: /Retry/ }).count(), 0);
  // And the API refuses it anyway, with the CSRF token.
  const refused = await page.evaluate(async (id) => {
    const s = await (await fetch('/console/session')).json();
    const r = await fetch(`/api/v1/events/${id}/replay`, { method: 'POST', headers: { 'X-CSRF-Token': s.csrf_token } });
    return r.status;
  }, ids.created);
  assert.equal(refused, 403);
  assert.deepEqual(problems, []);
  await context.close();
});

test('a payload and headers with markup render as text and run nothing', async () => {
  const { context, page, problems } = await newPage();
  await signIn(page, WRITE_KEY);
  await page.goto(`${gw.base}/console#/events/${ids.xss}`);
  await page.getByRole('heading', { name: `Event ${ids.xss}` }).waitFor();
  const body = await page.locator('pre[aria-labelledby="h-body"]').innerText();
  assert.match(body, /<script>window.__xss=1<\/script>/);
  assert.match(await page.locator('section', { hasText: 'Headers' }).innerText(), /<img src=y onerror="window.__xss=3">/);
  await page.waitForTimeout(300);
  assert.equal(await page.evaluate(() => window.__xss), undefined, 'no injected script ran');
  assert.equal(await page.locator('main script, main img').count(), 0, 'no element from the payload');
  assert.deepEqual(problems, []);
  await context.close();
});

test('older and newer pages follow the API cursor; text that is not JSON shows as it came', async () => {
  const text = await ingest('orders', 'plain <b>text</b>, not JSON', { 'content-type': 'text/plain' });
  for (let i = 0; i < 26; i += 1) await ingest('orders', { type: 'order.bulk', i });
  const { context, page, problems } = await newPage();
  await signIn(page, WRITE_KEY);
  await page.getByLabel('Source').selectOption('default/orders');
  await page.getByRole('button', { name: 'Apply filters' }).click();
  const rows = page.locator('main tbody tr');
  await waitFor('a full first page', async () => (await rows.count()) === 25 && /"i":25|order\.bulk/.test(await rows.first().innerText()));
  const firstPage = await page.locator('main tbody').innerText();
  await page.getByRole('button', { name: 'Older' }).click();
  await waitFor('the second page', async () => new RegExp(text).test(await page.locator('main tbody').innerText()));
  assert.doesNotMatch(await page.locator('main tbody').innerText(), new RegExp((firstPage.match(/evt_\w+/) || ['-'])[0]));
  await page.getByRole('button', { name: 'Newer' }).click();
  await waitFor('the first page again', async () => (await page.locator('main tbody').innerText()) === firstPage);
  await page.goto(`${gw.base}/console#/events/${text}`);
  await page.getByRole('heading', { name: `Event ${text}` }).waitFor();
  assert.match(await page.locator('section', { hasText: 'Body' }).innerText(), /Not JSON: shown as received/);
  assert.equal(await page.locator('pre[aria-labelledby="h-body"]').innerText(), 'plain <b>text</b>, not JSON');
  assert.equal(await page.locator('main b').count(), 0);
  assert.deepEqual(problems, []);
  await context.close();
});

test('keyboard only, on a narrow window', async () => {
  const { context, page, problems } = await newPage({ width: 375, height: 720 });
  await page.goto(`${gw.base}/console`);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.id), 'key', 'the key field has focus');
  await page.keyboard.type(WRITE_KEY);
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Events' }).waitFor();
  await page.locator('main tbody tr').first().waitFor();
  const fits = await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1);
  assert.ok(fits, 'nothing wider than the window (tables scroll inside their box)');
  // Focus is on the page's heading; Tab goes on to the first filter, Shift+Tab back to the
  // header's controls; the skip link is the first stop of the page.
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Events');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'namespace');
  await page.keyboard.press('Shift+Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Sign out');
  const first = await page.evaluate(() => document.querySelector('a[href], button, input, select').textContent);
  assert.equal(first, 'Skip to content');
  // A link followed with Enter moves focus to the new page's heading.
  await page.getByRole('link', { name: 'Deliveries' }).focus();
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Deliveries' }).waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.tagName), 'H1');
  assert.deepEqual(problems, []);
  await context.close();
});
