// The Upstash-compatible endpoint called from a page on another origin, in headless Chromium:
// the browser's own CORS checks (preflight for Authorization, Upstash-Encoding and
// upstash-sync-token; the exposed upstash-sync-token) against a kv-server started with
// --cors-origin. Run by scripts/ui-test.sh, which sets:
//   KV_CORS_URL    a kv-server with `--cors-origin http://127.0.0.1:$KV_PAGE_PORT --api-key $KV_CORS_KEY`
//   KV_PAGE_PORT   the port this test serves the calling page on (its origin)
//   KV_CORS_KEY    that server's API key
//   KV_URL         a kv-server without --cors-origin
//   CHROMIUM_PATH  the browser (default /usr/bin/chromium)

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { chromium } from 'playwright-core';

const CORS_URL = process.env.KV_CORS_URL;
const PAGE_PORT = Number(process.env.KV_PAGE_PORT);
const KEY = process.env.KV_CORS_KEY;
const PLAIN_URL = process.env.KV_URL;
if (!CORS_URL || !PAGE_PORT || !KEY || !PLAIN_URL) {
  throw new Error('KV_CORS_URL, KV_PAGE_PORT, KV_CORS_KEY and KV_URL must be set (run scripts/ui-test.sh)');
}
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

let pageServer;
let browser;
let page;

before(async () => {
  pageServer = createServer((_, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end('<!doctype html><title>an app on another origin</title>');
  });
  await new Promise((resolve) => pageServer.listen(PAGE_PORT, '127.0.0.1', resolve));
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${PAGE_PORT}/`);
});

after(async () => {
  await browser?.close();
  await new Promise((resolve) => pageServer?.close(resolve));
});

/** Runs fetch in the page, with the headers @upstash/redis sends. */
function call(url, path, body, token = KEY, syncToken = undefined) {
  return page.evaluate(
    async ({ url, path, body, token, syncToken }) => {
      const headers = {
        Authorization: `Bearer ${token}`,
        'Content-Type': 'application/json',
        'Upstash-Encoding': 'base64',
        // Sent by default (telemetry on unless UPSTASH_DISABLE_TELEMETRY is set).
        'Upstash-Telemetry-Runtime': 'browser',
        'Upstash-Telemetry-Platform': 'unknown',
        'Upstash-Telemetry-Sdk': '@upstash/redis@v1.35.0',
      };
      if (syncToken) headers['upstash-sync-token'] = syncToken;
      try {
        const res = await fetch(url + path, { method: 'POST', headers, body: JSON.stringify(body) });
        return {
          status: res.status,
          syncToken: res.headers.get('upstash-sync-token'),
          body: await res.json(),
        };
      } catch (err) {
        return { failed: err.name };
      }
    },
    { url, path, body, token, syncToken },
  );
}

test('a page on an allowed origin runs commands and reads the sync token', async () => {
  const first = await call(CORS_URL, '/_upstash/pipeline', [['set', 'cors:k', 'v'], ['get', 'cors:k']]);
  assert.equal(first.status, 200, JSON.stringify(first));
  assert.deepEqual(first.body, [{ result: 'OK' }, { result: 'dg==' }]); // base64 of "v"
  assert.ok(first.syncToken, 'upstash-sync-token is exposed to the page');
  // The SDK sends the token back on the next request (a header the preflight must allow).
  const second = await call(CORS_URL, '/_upstash', ['incr', 'cors:n'], KEY, first.syncToken);
  assert.deepEqual(second.body, { result: 1 });
  assert.notEqual(second.syncToken, first.syncToken);
  // The same key for the REST API.
  const rest = await fetch(`${CORS_URL}/cors:k`, { headers: { Authorization: `Bearer ${KEY}` } });
  assert.equal((await rest.json()).value, 'v');
});

test('an error reply reaches the page with its text', async () => {
  const res = await call(CORS_URL, '/_upstash', ['incr', 'cors:k']);
  assert.equal(res.status, 400);
  assert.deepEqual(res.body, { error: 'ERR value is not an integer or out of range' });
});

test('a server without --cors-origin is not reachable from the page', async () => {
  const res = await call(PLAIN_URL, '/_upstash', ['ping']);
  assert.deepEqual(res, { failed: 'TypeError' });
});
