// End-to-end test of kv-server's key browser (/_ui) in headless Chromium, driven by
// playwright-core. Run by scripts/ui-test.sh, which starts the servers and sets:
//   KV_URL         a kv-server over a fresh database, without API keys
//   KV_AUTH_URL    (optional) a kv-server started with `--api-key $KV_API_KEY`
//   CHROMIUM_PATH  the browser (default /usr/bin/chromium, Debian's package)
//   UI_SCREENSHOTS where the review screenshots go (default ./screenshots, gitignored)
// The tests run in order and share one page: each one builds on the store the previous left.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const BASE = process.env.KV_URL;
if (!BASE) throw new Error('KV_URL is not set (run scripts/ui-test.sh)');
const AUTH_BASE = process.env.KV_AUTH_URL || '';
const API_KEY = process.env.KV_API_KEY || '';
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const SHOTS = process.env.UI_SCREENSHOTS || fileURLToPath(new URL('./screenshots/', import.meta.url));

// Flags for a closed network (see .library machine notes): no background connections.
const CHROMIUM_ARGS = [
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const DESKTOP = { width: 1280, height: 800 };
const LIVE_MS = 10000; // how long a change made through the API may take to reach the page
const PHONE = { width: 390, height: 844 };

let browser;
let page;
const dialogs = []; // alert/confirm/prompt: the page never opens one, hostile data must not either
const pageErrors = [];
const consoleErrors = [];

function keyUrl(key) {
  return `${BASE}/${encodeURIComponent(key).replace(/\./g, '%2E')}/`;
}

/** Calls the API from the test (not the page). */
async function api(method, path, body, headers = {}) {
  const res = await fetch(path.startsWith('http') ? path : BASE + path, {
    method,
    headers,
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  const isJson = (res.headers.get('content-type') || '').startsWith('application/json');
  return { status: res.status, text, json: isJson && text ? JSON.parse(text) : null, headers: res.headers };
}

function watch(p) {
  p.on('dialog', (dialog) => {
    dialogs.push(dialog.message());
    dialog.dismiss().catch(() => {});
  });
  p.on('pageerror', (err) => pageErrors.push(err.message));
  p.on('console', (msg) => {
    // Chromium logs every 4xx fetch as "Failed to load resource"; those are expected here
    // (404 on an expired key, 401 before the key is given). Anything else is a failure.
    if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) {
      consoleErrors.push(msg.text());
    }
  });
}

const listButtons = () => page.locator('#key-list button.key-item');
const listItem = (key) => page.locator('#key-list').getByRole('button', { name: key, exact: true });
const listedKeys = () => listButtons().evaluateAll((bs) => bs.map((b) => b.textContent));
const text = (selector) => page.locator(selector).textContent();

/** Waits until the element's text equals `expected` (a string) or matches it (a RegExp). */
async function waitForText(selector, expected, timeout = 5000) {
  const want = expected instanceof RegExp ? { re: expected.source } : { eq: expected };
  try {
    await page.waitForFunction(
      ([sel, w]) => {
        const el = document.querySelector(sel);
        if (!el) return false;
        return w.re !== undefined ? new RegExp(w.re).test(el.textContent) : el.textContent === w.eq;
      },
      [selector, want],
      { timeout },
    );
  } catch (err) {
    const actual = await page.locator(selector).textContent().catch(() => '(no element)');
    throw new Error(`${selector}: wanted ${expected}, have ${JSON.stringify(actual)} (${err.message.split('\n')[0]})`);
  }
}

/** Waits until the list shows exactly `keys`, in this order. */
async function waitForKeys(keys, timeout = LIVE_MS) {
  try {
    await page.waitForFunction(
      (want) => {
        const shown = Array.from(document.querySelectorAll('#key-list button.key-item'), (b) => b.textContent);
        return JSON.stringify(shown) === want;
      },
      JSON.stringify(keys),
      { timeout },
    );
  } catch (err) {
    const have = JSON.stringify(await listedKeys());
    throw new Error(`list: wanted ${JSON.stringify(keys)}, have ${have} (${err.message.split('\n')[0]})`);
  }
}

async function shot(name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

async function listAll(prefix = '') {
  await page.fill('#prefix', prefix);
  await page.press('#prefix', 'Enter');
  await page.waitForFunction(() => !document.querySelector('#key-list').hasAttribute('aria-busy'));
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  const context = await browser.newContext({ viewport: DESKTOP });
  page = await context.newPage();
  watch(page);
});

after(async () => {
  await browser?.close();
});

test('serves the page, script and stylesheet with a strict CSP and no inline script', async () => {
  const html = await api('GET', '/_ui');
  assert.equal(html.status, 200);
  assert.match(html.headers.get('content-type'), /^text\/html; charset=utf-8$/);
  const csp = html.headers.get('content-security-policy');
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'self';/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assert.equal(html.headers.get('x-content-type-options'), 'nosniff');
  // Every <script> has a src; no inline handlers or styles.
  assert.doesNotMatch(html.text, /<script(?![^>]*\bsrc=)[^>]*>/);
  assert.doesNotMatch(html.text, /\son[a-z]+=|style=/i);
  assert.equal((await api('GET', '/_ui/')).status, 200);
  const js = await api('GET', '/_ui/app.js');
  assert.match(js.headers.get('content-type'), /^text\/javascript/);
  assert.match(js.headers.get('content-security-policy'), /default-src 'none'/);
  assert.doesNotMatch(js.text, /innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(/);
  const css = await api('GET', '/_ui/app.css');
  assert.match(css.headers.get('content-type'), /^text\/css/);
  const post = await api('POST', '/_ui', {});
  assert.equal(post.status, 405);
  assert.equal(post.json.code, 'method_not_allowed');

  await page.goto(`${BASE}/_ui`);
  assert.equal(await page.title(), 'kvstore');
  await waitForText('#stats', /^0 keys · 0 expiring · version \d+ · sqlite$/);
  await waitForText('#list-status', 'No keys.');
});

test('creates a key through the page (Enter submits) and lists it', async () => {
  await page.click('#new-key');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'edit-key');
  await page.fill('#edit-value', '{"hello": "world", "n": 1, "tags": ["a", "b"], "empty": {}}');
  await page.fill('#edit-key', 'greeting');
  await page.press('#edit-key', 'Enter');
  await waitForText('#key-title', 'greeting');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'key-title');
  // Pretty-printed as the server stores it (object members in the order they were sent).
  assert.equal(
    await text('#key-value'),
    '{\n  "hello": "world",\n  "n": 1,\n  "tags": [\n    "a",\n    "b"\n  ],\n  "empty": {}\n}',
  );
  const stored = await api('GET', '/greeting/');
  assert.deepEqual(stored.json.value, { hello: 'world', n: 1, tags: ['a', 'b'], empty: {} });
  assert.equal(await text('#key-version'), String(stored.json.version));
  assert.equal(await text('#key-ttl'), 'no expiry');
  assert.equal(await text('#key-expires'), 'never');
  await waitForText('#message', /^Created "greeting" \(version \d+\)\.$/);
  await listItem('greeting').waitFor();
  assert.equal(await listItem('greeting').getAttribute('aria-current'), 'true');
  await waitForText('#stats', /^1 key · 0 expiring/);

  // Creating a key that exists is refused (If-None-Match: *), with the form kept.
  await page.click('#new-key');
  await page.fill('#edit-key', 'greeting');
  await page.fill('#edit-value', '"overwrite?"');
  await page.click('#save-button');
  await waitForText('#edit-error', /already exists \(412\)/);
  assert.equal((await api('GET', '/greeting/')).json.value.hello, 'world');
  // Bad JSON and a reserved key get clear messages at the right field.
  await page.fill('#edit-key', 'other');
  await page.fill('#edit-value', '{oops');
  await page.click('#save-button');
  await waitForText('#edit-error', /^The value is not valid JSON/);
  assert.equal(await page.getAttribute('#edit-value', 'aria-invalid'), 'true');
  await page.fill('#edit-key', '_reserved');
  await page.fill('#edit-value', '1');
  await page.click('#save-button');
  await waitForText('#edit-error', /reserved_key/);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'edit-key');
  await page.press('#edit-value', 'Escape');
  assert.equal(await page.isVisible('#key-view'), true);
});

test('edits the value and TTL (Ctrl+Enter saves); keeps the TTL unless told otherwise', async () => {
  await listItem('greeting').click();
  await waitForText('#key-title', 'greeting');
  const before = Number(await text('#key-version'));
  await page.click('#edit-button');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'edit-value');
  assert.equal(await page.isChecked('#expiry-none'), true);
  await page.fill('#edit-value', '{"hello": "kvstore", "n": 2}');
  await page.fill('#edit-ttl', '3600'); // typing a TTL selects "Expire after a TTL"
  assert.equal(await page.isChecked('#expiry-ttl'), true);
  await page.press('#edit-value', 'Control+Enter');
  await waitForText('#key-value', '{\n  "hello": "kvstore",\n  "n": 2\n}');
  const after1 = Number(await text('#key-version'));
  assert.ok(after1 > before, `version grew: ${before} -> ${after1}`);
  await waitForText('#key-ttl', /^(1 h 0 min 0 s|59 min \d+ s)$/);
  assert.match(await text('#key-expires'), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  let stored = await api('GET', '/greeting/');
  assert.equal(stored.json.value.n, 2);
  assert.ok(stored.json.ttl_remaining > 3590 && stored.json.ttl_remaining <= 3600);

  // Edit the value again: "keep the current expiry" is preselected and honoured.
  await page.click('#edit-button');
  assert.equal(await page.isChecked('#expiry-keep'), true);
  await waitForText('#expiry-keep-detail', /^\(expires in 59 min \d+ s\)$/);
  await page.fill('#edit-value', '{"hello": "kvstore", "n": 3}');
  await page.click('#save-button');
  await waitForText('#key-value', '{\n  "hello": "kvstore",\n  "n": 3\n}');
  stored = await api('GET', '/greeting/');
  assert.equal(stored.json.value.n, 3);
  assert.ok(stored.json.ttl_remaining > 3590, 'the expiry was kept');
  await waitForText('#stats', /^1 key · 1 expiring/);

  // And "No expiry" clears it.
  await page.click('#edit-button');
  await page.check('#expiry-none');
  await page.click('#save-button');
  await waitForText('#key-ttl', 'no expiry');
  assert.equal((await api('GET', '/greeting/')).json.ttl_remaining, -1);
});

test('a concurrent edit gets a visible 412 conflict and nothing is overwritten', async () => {
  const loaded = Number(await text('#key-version'));
  await page.click('#edit-button');
  await page.fill('#edit-value', '"my edit"');
  const other = await api('POST', '/greeting/', { value: 'their edit' });
  assert.equal(other.status, 200);
  await page.click('#save-button');
  await waitForText('#edit-error', /^Conflict \(412\)/);
  const message = await text('#edit-error');
  assert.match(message, new RegExp(`after you loaded version ${loaded}\\. It is now at version ${other.json.version}\\.`));
  assert.equal(await page.inputValue('#edit-value'), '"my edit"', 'the text is kept');
  assert.equal((await api('GET', '/greeting/')).json.value, 'their edit');
  await page.click('#cancel-edit');
  await page.click('#reload-button');
  await waitForText('#key-value', '"their edit"');
  assert.equal(await text('#key-version'), String(other.json.version));
});

test('large integers are shown and saved exactly (no JSON.parse rounding)', async () => {
  await api('POST', '/big/', '{"value": {"id": 9007199254740993, "neg": -9223372036854775808}}');
  await listAll();
  await listItem('big').click();
  await waitForText('#key-title', 'big');
  const shown = await text('#key-value');
  assert.match(shown, /"id": 9007199254740993,/);
  assert.match(shown, /"neg": -9223372036854775808\n/);
  await page.click('#edit-button');
  await page.click('#save-button'); // unchanged text, saved back
  await waitForText('#message', /^Saved "big"/);
  const raw = (await api('GET', '/big/')).text;
  assert.match(raw, /"id":9007199254740993,/);
  assert.match(raw, /"neg":-9223372036854775808/);
});

test('a collection shows its type and length and pages through its members', async () => {
  const fields = [];
  for (let i = 0; i < 1500; i++) fields.push(`f${String(i).padStart(4, '0')}`, String(i));
  const hset = await api('POST', '/_upstash', JSON.stringify(['HSET', 'coll:h', ...fields]));
  assert.equal(hset.json.result, 1500);
  await api('POST', '/_upstash', JSON.stringify(['ZADD', 'coll:z', '2', 'b', '1', 'a', 'inf', 'top']));
  await listAll('coll:');
  await listItem('coll:h').click();
  await waitForText('#key-title', 'coll:h');
  await waitForText('#key-type', 'hash');
  await waitForText('#key-length', '1500');
  await waitForText('#members-note', /^1000 of 1500 members shown\./);
  assert.equal(await page.locator('#edit-button').isHidden(), true, 'a collection is not edited as JSON');
  assert.match(await text('#key-value'), /"f0999": 999\n}$/);
  await page.click('#more-members');
  await waitForText('#members-note', /^All 1500 members shown\./);
  assert.equal(await page.locator('#more-row').isHidden(), true);
  const shown = await text('#key-value');
  assert.match(shown, /"f0999": 999,\n  "f1000": 1000,/);
  assert.match(shown, /"f1499": 1499\n}$/);
  await listItem('coll:z').click();
  await waitForText('#key-type', 'zset');
  await waitForText('#members-note', /^All 3 members shown\./);
  assert.match(await text('#key-value'), /\[\s*"a",\s*1\s*\],\s*\[\s*"b",\s*2\s*\],\s*\[\s*"top",\s*"inf"\s*\]/);
  await api('POST', '/_upstash', JSON.stringify(['SET', 'coll:s', 'plain']));
  await listAll('coll:');
  await listItem('coll:s').click();
  await waitForText('#key-type', 'string');
  assert.equal(await page.locator('#key-length-row').isHidden(), true);
  assert.equal(await page.locator('#edit-button').isHidden(), false);
  for (const key of ['coll:h', 'coll:z', 'coll:s']) await api('DELETE', `/${key}`);
});

test('lists by prefix with paging over the cursor; keys with "/" and "." work', async () => {
  for (const k of ['p/1', 'p/2', 'p/3', 'p/4', 'p/5', 'pq']) {
    assert.equal((await api('POST', keyUrl(k), { value: k })).status, 201);
  }
  // "." and ".." cannot be sent as a path segment by a browser (or Node's fetch): URL rules
  // make them path steps. The page reaches them through POST /_tx; so does this test.
  const dots = await api('POST', '/_tx', { ops: [{ op: 'set', key: '..', value: 'dots' }] });
  assert.equal(dots.status, 200);
  await page.fill('#limit', '2');
  await listAll('p/');
  assert.deepEqual(await listedKeys(), ['p/1', 'p/2']);
  await waitForText('#list-status', '2 keys shown with prefix "p/"; more on the next page.');
  await page.focus('#next-page');
  while (await page.isVisible('#next-page')) {
    const count = await listButtons().count();
    await page.keyboard.press('Enter');
    await page.waitForFunction((n) => document.querySelectorAll('#key-list button.key-item').length > n
      || document.querySelector('#next-page').hidden, count);
  }
  assert.deepEqual(await listedKeys(), ['p/1', 'p/2', 'p/3', 'p/4', 'p/5']);
  await waitForText('#list-status', '5 keys shown with prefix "p/".');
  // Focus stayed in the list when the button went away; arrows move, Enter opens.
  assert.equal(await page.evaluate(() => document.activeElement.dataset.key), 'p/5');
  await page.keyboard.press('Home');
  await page.keyboard.press('ArrowDown');
  assert.equal(await page.evaluate(() => document.activeElement.dataset.key), 'p/2');
  await page.keyboard.press('Enter');
  await waitForText('#key-title', 'p/2');
  assert.equal(await text('#key-value'), '"p/2"');
  await page.fill('#limit', '50');
  await listAll('.');
  assert.deepEqual(await listedKeys(), ['..']);
  await listItem('..').click();
  await waitForText('#key-value', '"dots"');
  await page.click('#edit-button');
  await page.fill('#edit-value', '["still", "dots"]');
  await page.click('#save-button');
  await waitForText('#key-value', '[\n  "still",\n  "dots"\n]');
  await page.click('#delete-button');
  await page.click('#delete-button');
  await waitForText('#message', '".." was deleted.');
  const gone = await api('POST', '/_tx', { ops: [{ op: 'get', key: '..' }] });
  assert.deepEqual(gone.json.results, [null]);
  await listAll();
});

test('a key with a 2 s TTL counts down and the page shows it gone', async () => {
  await page.click('#new-key');
  await page.fill('#edit-key', 'short-lived');
  await page.fill('#edit-value', '"soon gone"');
  await page.fill('#edit-ttl', '2');
  const start = Date.now();
  await page.press('#edit-key', 'Enter');
  await waitForText('#key-title', 'short-lived');
  await waitForText('#key-ttl', /^[12] s$/);
  await listItem('short-lived').waitFor();
  await waitForText('#stats', /1 expiring/, 7000); // the poll runs every 5 s
  await waitForText('#message', '"short-lived" has expired.', 6000);
  const seconds = (Date.now() - start) / 1000;
  assert.ok(seconds >= 1.9, `expired after ${seconds}s`);
  assert.equal(await page.isVisible('#key-view'), false);
  assert.equal(await page.isVisible('#empty-detail'), true);
  assert.equal(await listItem('short-lived').count(), 0);
  assert.equal((await api('GET', '/short-lived/')).status, 404);
  await waitForText('#stats', /0 expiring/);
});

test('delete asks for a second press, then removes the key', async () => {
  await listItem('greeting').click();
  await waitForText('#key-title', 'greeting');
  await page.click('#delete-button');
  await waitForText('#delete-button', 'Confirm delete');
  assert.equal((await api('GET', '/greeting/')).status, 200, 'one press does not delete');
  await page.click('#delete-button');
  await waitForText('#message', '"greeting" was deleted.');
  assert.equal(await listItem('greeting').count(), 0);
  assert.equal(await page.isVisible('#key-view'), false);
  assert.equal((await api('GET', '/greeting/')).status, 404);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'new-key');
});

test('the list and the selected key follow changes made through the API (GET /_watch)', async () => {
  // Listing a prefix opens one watch on it (no values: a change to the open key is read again).
  const watchRequest = page.waitForRequest((r) => new URL(r.url()).pathname === '/_watch');
  await listAll('live/');
  const watchUrl = new URL((await watchRequest).url());
  assert.equal(watchUrl.searchParams.get('prefix'), 'live/');
  assert.equal(watchUrl.searchParams.get('values'), 'false');
  assert.equal(watchUrl.searchParams.get('access_token'), null, 'no API key, no access_token');
  await waitForText('#live', 'live', LIVE_MS);
  await waitForText('#list-status', 'No keys with prefix "live/".');

  // New keys appear in byte order; keys outside the prefix do not.
  assert.equal((await api('POST', keyUrl('live/b'), { value: 'b' })).status, 201);
  await waitForKeys(['live/b']);
  assert.equal((await api('POST', '/elsewhere/', { value: 1 })).status, 201);
  assert.equal((await api('POST', keyUrl('live/a'), { value: 'a' })).status, 201);
  await waitForKeys(['live/a', 'live/b']); // the events come in order: "elsewhere" was skipped
  await waitForText('#list-status', '2 keys shown with prefix "live/".');

  // With more pages to come, a key after the last one shown waits for its page.
  await api('POST', keyUrl('live/d'), { value: 'd' });
  await page.fill('#limit', '2');
  await listAll('live/');
  await waitForKeys(['live/a', 'live/b']);
  await api('POST', keyUrl('live/c'), { value: 'c' });
  await api('POST', keyUrl('live/aa'), { value: 'aa' });
  await waitForKeys(['live/a', 'live/aa', 'live/b']);
  await page.click('#next-page');
  await waitForKeys(['live/a', 'live/aa', 'live/b', 'live/c', 'live/d']);
  await page.fill('#limit', '50');
  await listAll('live/');

  // The open key shows a new value, version and TTL.
  await listItem('live/a').click();
  await waitForText('#key-title', 'live/a');
  const changed = await api('POST', keyUrl('live/a'), { value: { n: 2 }, ttl: 3600 });
  assert.equal(changed.status, 200);
  await waitForText('#key-value', '{\n  "n": 2\n}', LIVE_MS);
  await waitForText('#key-version', String(changed.json.version));
  await waitForText('#key-ttl', /^(1 h 0 min 0 s|59 min \d+ s)$/);
  await waitForText('#message', `"live/a" was changed by someone else: now at version ${changed.json.version}.`);

  // During an edit the form is kept and a notice says the key changed; the save is refused.
  await page.click('#edit-button');
  await page.fill('#edit-value', '"mine"');
  const theirs = await api('POST', keyUrl('live/a'), { value: 'theirs' });
  await waitForText(
    '#edit-notice',
    new RegExp(
      `^"live/a" was changed by someone else while you were editing: ` +
        `it is now at version ${theirs.json.version}, you loaded version ${changed.json.version}\\.`,
    ),
    LIVE_MS,
  );
  assert.equal(await page.inputValue('#edit-value'), '"mine"', 'the edit is kept');
  assert.equal(await page.isVisible('#edit-form'), true);
  await page.click('#save-button');
  await waitForText('#edit-error', /^Conflict \(412\)/);
  assert.equal((await api('GET', keyUrl('live/a'))).json.value, 'theirs');
  await page.click('#cancel-edit'); // shows what it is now
  await waitForText('#key-value', '"theirs"');
  await waitForText('#key-version', String(theirs.json.version));

  // Deleted elsewhere: the view says so and the list drops it.
  assert.equal((await api('DELETE', keyUrl('live/a'))).status, 200);
  await waitForText('#message', '"live/a" was deleted by someone else.', LIVE_MS);
  await waitForText('#gone-note', '"live/a" was deleted by someone else.');
  assert.equal(await page.isVisible('#key-view'), false);
  assert.equal(await page.isVisible('#gone-note'), true);
  await waitForKeys(['live/aa', 'live/b', 'live/c', 'live/d']);
  await shot('desktop-live-deleted');

  // A key that expires leaves the list (the server's expiry timer sends `expired`).
  const posted = Date.now();
  assert.equal((await api('POST', keyUrl('live/flash'), { value: 'soon gone', ttl_ms: 1500 })).status, 201);
  await waitForKeys(['live/aa', 'live/b', 'live/c', 'live/d', 'live/flash']);
  await waitForKeys(['live/aa', 'live/b', 'live/c', 'live/d']);
  const seconds = (Date.now() - posted) / 1000;
  assert.ok(seconds >= 1.4, `gone after ${seconds}s`);
  assert.equal((await api('GET', keyUrl('live/flash'))).status, 404);

  // A key outside the listed prefix, opened by its address, is watched too.
  const keyWatch = page.waitForRequest((r) => new URL(r.url()).searchParams.get('key') === 'elsewhere');
  await page.evaluate(() => {
    location.hash = '#key=elsewhere';
  });
  await waitForText('#key-title', 'elsewhere');
  const keyWatchUrl = new URL((await keyWatch).url());
  assert.equal(keyWatchUrl.searchParams.get('prefix'), 'live/');
  const later = await api('POST', '/elsewhere/', { value: [1, 2] });
  await waitForText('#key-value', '[\n  1,\n  2\n]', LIVE_MS);
  await waitForText('#key-version', String(later.json.version));
  await waitForText('#live', 'live');

  for (const k of ['live/aa', 'live/b', 'live/c', 'live/d', 'elsewhere']) await api('DELETE', keyUrl(k));
  await waitForText('#message', '"elsewhere" was deleted by someone else.', LIVE_MS);
  await waitForKeys([]);
  await listAll();
});

test('hostile keys and values are shown as text and never run', async () => {
  const hostile = [
    ['<img src=x onerror="window.__pwned=1;alert(1)">', {
      html: '<img src=x onerror=window.__pwned=2;alert(2)>',
      script: '<script>window.__pwned=3;alert(3)</script>',
    }],
    ['<script>window.__pwned=4;alert(4)</script>', '</pre><img src=x onerror=alert(5)><b>bold</b>'],
    ['"><svg onload=alert(6)>', { '<b onmouseover=alert(7)>key</b>': '&lt;escaped&gt; &amp;' }],
  ];
  for (const [key, value] of hostile) {
    assert.equal((await api('POST', keyUrl(key), { value })).status, 201);
  }
  await listAll();
  const listed = await listedKeys();
  for (const [key] of hostile) assert.ok(listed.includes(key), `listed as text: ${key}`);
  for (const [key, value] of hostile) {
    await listItem(key).click();
    await waitForText('#key-title', key);
    assert.deepEqual(JSON.parse(await text('#key-value')), value);
    await listItem(key).hover(); // would fire an injected onmouseover
  }
  // The same through the address bar (#key=…), then after a reload.
  await page.goto(`${BASE}/_ui#key=${encodeURIComponent(hostile[0][0])}`);
  await waitForText('#key-title', hostile[0][0]);
  await page.reload();
  await waitForText('#key-title', hostile[0][0]);
  await listItem(hostile[1][0]).waitFor();
  await page.click('#edit-button');
  assert.equal(await page.inputValue('#edit-key'), hostile[0][0]);
  await page.click('#cancel-edit');
  await shot('desktop-hostile');
  const dom = await page.evaluate(() => ({
    pwned: window.__pwned,
    imgs: document.querySelectorAll('img, svg, b, script:not([src])').length,
  }));
  assert.equal(dom.pwned, undefined, 'no injected script ran');
  assert.equal(dom.imgs, 0, 'no element was made from data');
  assert.deepEqual(dialogs, [], 'no dialog was opened');
  for (const [key] of hostile) await api('DELETE', keyUrl(key));
});

test('asks for an API key on 401 and then sends it as a Bearer token', async () => {
  // This server has no keys configured: a 401 is played by the browser's router.
  let sawBearer = null;
  await page.route('**/_stats', async (route) => {
    const auth = route.request().headers().authorization;
    if (auth !== 'Bearer ui-secret') {
      await route.fulfill({
        status: 401,
        contentType: 'application/json',
        headers: { 'WWW-Authenticate': 'Bearer realm="kvstore"' },
        body: '{"error":"missing or invalid API key","code":"unauthorized"}',
      });
    } else {
      sawBearer = auth;
      await route.continue();
    }
  });
  await page.goto(`${BASE}/_ui`);
  await page.locator('#auth-dialog').waitFor();
  await waitForText('#auth-reason', /needs an API key \(401\)/);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'auth-key');
  await page.fill('#auth-key', 'ui-secret');
  await page.press('#auth-key', 'Enter');
  await waitForText('#stats', /^\d+ keys? · \d+ expiring/);
  assert.equal(sawBearer, 'Bearer ui-secret');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('kvstore.apiKey')), 'ui-secret');
  assert.equal(await page.isVisible('#auth-dialog'), false);
  assert.equal(await text('#api-key-button'), 'API key (set)');
  // Every API call carries it, not only the one that failed.
  const listRequest = page.waitForRequest((r) => r.url().includes('/_keys'));
  await page.press('#prefix', 'Enter');
  assert.equal((await listRequest).headers().authorization, 'Bearer ui-secret');
  // Forget it again.
  await page.unroute('**/_stats');
  await page.click('#api-key-button');
  await page.click('#auth-forget');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('kvstore.apiKey')), null);
});

test('with a server that requires API keys: assets load without a key, the API with one', async (t) => {
  if (!AUTH_BASE) return t.skip('KV_AUTH_URL not set');
  const probe = await api('GET', `${AUTH_BASE}/_stats`);
  if (probe.status !== 401) return t.skip(`this build does not enforce API keys yet (GET /_stats: ${probe.status})`);
  assert.equal((await api('GET', `${AUTH_BASE}/_ui`)).status, 200);
  assert.equal((await api('GET', `${AUTH_BASE}/_ui/app.js`)).status, 200);
  const context = await browser.newContext({ viewport: DESKTOP });
  const authPage = await context.newPage();
  watch(authPage);
  const watchUrls = [];
  authPage.on('request', (r) => {
    if (new URL(r.url()).pathname === '/_watch') watchUrls.push(new URL(r.url()));
  });
  const auth = { Authorization: `Bearer ${API_KEY}` };
  try {
    await authPage.goto(`${AUTH_BASE}/_ui`);
    await authPage.locator('#auth-dialog').waitFor();
    await authPage.fill('#auth-key', 'wrong-key');
    await authPage.press('#auth-key', 'Enter');
    await authPage.waitForFunction(() => /refused this API key/.test(document.querySelector('#auth-reason').textContent));
    await authPage.fill('#auth-key', API_KEY);
    await authPage.press('#auth-key', 'Enter');
    await authPage.waitForFunction(() => /^\d+ keys? · /.test(document.querySelector('#stats').textContent));
    await authPage.click('#new-key');
    await authPage.fill('#edit-key', 'made-with-a-key');
    await authPage.fill('#edit-value', '{"ok": true}');
    await authPage.press('#edit-key', 'Enter');
    await authPage.waitForFunction(() => document.querySelector('#key-title').textContent === 'made-with-a-key');
    const stored = await api('GET', `${AUTH_BASE}/made-with-a-key/`, undefined, auth);
    assert.deepEqual(stored.json.value, { ok: true });

    // Live updates with the key: EventSource sends no headers, so it goes as access_token.
    await authPage.waitForFunction(() => document.querySelector('#live').textContent === 'live', null, {
      timeout: LIVE_MS,
    });
    assert.equal((await api('POST', `${AUTH_BASE}/live-with-a-key/`, { value: 1 }, auth)).status, 201);
    const authItem = (key) => authPage.locator('#key-list').getByRole('button', { name: key, exact: true });
    await authItem('live-with-a-key').waitFor({ timeout: LIVE_MS });
    const changed = await api('POST', `${AUTH_BASE}/made-with-a-key/`, { value: { ok: 'still' } }, auth);
    await authPage.waitForFunction(
      (v) => document.querySelector('#key-version').textContent === String(v),
      changed.json.version,
      { timeout: LIVE_MS },
    );
    assert.equal(await authPage.locator('#key-value').textContent(), '{\n  "ok": "still"\n}');
    assert.ok(watchUrls.length > 0, 'the page watched');
    for (const url of watchUrls) assert.equal(url.searchParams.get('access_token'), API_KEY);
    // Without a working key there was nothing to watch: no stream was tried with the wrong one.
    assert.equal(watchUrls.filter((u) => u.searchParams.get('access_token') === 'wrong-key').length, 0);
  } finally {
    await context.close();
  }
});

test('screenshots for review: desktop and phone', async () => {
  await api('POST', '/user%3A1001/', {
    value: { name: 'Ada Lovelace', email: 'ada@example.com', roles: ['admin', 'editor'], visits: 42 },
  });
  await api('POST', '/session%3Aabc123/', { value: { user: 1001, csrf: 'f3a9c2' }, ttl: 1800 });
  await api('POST', '/counter%3Apage-views/', { value: 1234567 });
  await page.setViewportSize(DESKTOP);
  await page.goto(`${BASE}/_ui#key=${encodeURIComponent('session:abc123')}`);
  await page.reload();
  await waitForText('#key-title', 'session:abc123');
  await waitForText('#stats', /expiring/);
  await shot('desktop-view');
  await page.click('#edit-button');
  await shot('desktop-edit');
  await page.click('#cancel-edit');

  await page.setViewportSize(PHONE);
  await page.goto(`${BASE}/_ui`);
  await listItem('user:1001').waitFor();
  await shot('phone-list');
  await listItem('user:1001').click();
  await waitForText('#key-title', 'user:1001');
  await shot('phone-view');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no sideways scrolling on a phone (overflow ${overflow}px)`);
  await page.click('#edit-button');
  await shot('phone-edit');
  await page.click('#cancel-edit');
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.setViewportSize(DESKTOP);
  await shot('desktop-dark');
  await page.emulateMedia({ colorScheme: 'light' });
});

test('keyboard: the skip link focuses the selected key without changing the address', async () => {
  const url = page.url();
  await page.focus('#api-key-button');
  await page.keyboard.press('Shift+Tab'); // the first stop on the page
  assert.equal(await page.evaluate(() => document.activeElement.className), 'skip');
  await page.keyboard.press('Enter');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'key-title');
  assert.equal(page.url(), url);
});

test('no script errors, CSP violations or dialogs during the whole run', () => {
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(consoleErrors, []);
  assert.deepEqual(dialogs, []);
});
