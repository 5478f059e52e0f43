// kvstore key browser: plain JavaScript, no dependencies, served by kv-server at /_ui.
//
// It uses the public HTTP API only. Data from the server is put into the page with
// textContent or form values, never parsed as HTML, so keys and values that contain markup
// are shown as text. Values are shown and edited as the exact JSON text the server returned
// (re-indented, literals untouched), so large integers are not rounded by JSON.parse.
// The list and the selected key follow the store live through the change feed (GET /_watch,
// Server-Sent Events).
'use strict';

const API_KEY_STORAGE = 'kvstore.apiKey';
const STATS_EVERY_MS = 5000;
const TICK_MS = 250;
const DELETE_CONFIRM_MS = 6000;
const WATCH_RETRY_MS = 2000; // after the server refused the watch; doubles up to the maximum
const WATCH_RETRY_MAX_MS = 60000;
const REFRESH_DELAY_MS = 100; // change events for the selected key within this read it once

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const state = {
  apiKey: readStoredKey(),
  authDismissed: false, // the user closed the key prompt: background polling does not reopen it
  prefix: '',
  limit: 50,
  cursor: null,
  shown: 0,
  listGen: 0, // answers to an older listing are dropped
  viewGen: 0, // likewise for the selected key
  current: null, // { key, version, raw, ttlMs, loadedAt, expiresAt }
  editing: null, // null | 'new' | 'edit'
  ticker: null,
  deleteTimer: null,
  writing: null, // { key, seen }: this page's own save or delete; its change events are not news
  pendingEvents: null, // change events that came while a listing loaded, applied after it
  refreshTimer: null,
};

// The change feed: one EventSource at a time, on the listed prefix (plus the selected key when
// the prefix does not cover it).
const watch = {
  source: null,
  query: null, // its filters, while it is open or waiting to be opened again
  position: null, // the last version it reported: the list and the view are current up to it
  synced: false, // opened at a known version; else its first `ready` lists again
  retryTimer: null,
  retryMs: WATCH_RETRY_MS,
};

// ---- storage -------------------------------------------------------------------------------

function readStoredKey() {
  try {
    return sessionStorage.getItem(API_KEY_STORAGE);
  } catch {
    return null;
  }
}

function storeKey(key) {
  state.apiKey = key;
  try {
    if (key) sessionStorage.setItem(API_KEY_STORAGE, key);
    else sessionStorage.removeItem(API_KEY_STORAGE);
  } catch {
    // Storage disabled: the key lives until the page is closed.
  }
  $('api-key-button').textContent = key ? 'API key (set)' : 'API key';
}

// ---- HTTP ----------------------------------------------------------------------------------

/** The path of a key: one percent-encoded segment (`a/b` is `/a%2Fb/`). */
function keyPath(key) {
  return `/${encodeURIComponent(key)}/`;
}

/** Calls the API. Resolves to `{ status, data, text }` for 2xx; rejects with an ApiError
 *  carrying the server's `{"error", "code"}` otherwise. A 401 opens the API key prompt. */
async function api(method, path, { body, headers = {}, background = false } = {}) {
  const h = new Headers(headers);
  h.set('Accept', 'application/json');
  if (state.apiKey) h.set('Authorization', `Bearer ${state.apiKey}`);
  if (body !== undefined) h.set('Content-Type', 'application/json');
  let res;
  try {
    res = await fetch(path, { method, headers: h, body, cache: 'no-store', credentials: 'omit' });
  } catch {
    throw new ApiError(0, 'network_error', 'cannot reach the server');
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (res.ok) return { status: res.status, data, text };
  const message = data && typeof data.error === 'string' ? data.error : `HTTP ${res.status}`;
  const code = data && typeof data.code === 'string' ? data.code : `http_${res.status}`;
  if (res.status === 401 && !(background && state.authDismissed)) {
    askForKey(
      state.apiKey
        ? 'The server refused this API key (401). Paste another one.'
        : 'This server needs an API key (401). Paste one to continue.',
    );
  }
  throw new ApiError(res.status, code, message);
}

// ---- one key: GET / POST / DELETE /<key>/ ------------------------------------------------
//
// The keys "." and ".." cannot travel as a path segment: by the URL rules browsers follow,
// /./ and /../ (also spelled %2E) are path steps, resolved away before the request is sent.
// Those two keys go through POST /_tx instead, which carries the key in the body.
const DOT_KEYS = new Set(['.', '..']);

function txBody(ops) {
  return `{"ops":[${ops.join(',')}]}`;
}

/** The key's view (`{key, value, ttl_remaining_ms, expires_at, version}`) and the raw JSON
 *  text of its value. A missing key rejects with a 404 ApiError. */
async function getKey(key, options = {}) {
  if (!DOT_KEYS.has(key)) {
    const res = await api('GET', keyPath(key), options);
    return { data: res.data, raw: rawMember(res.text, 'value') };
  }
  const res = await api('POST', '/_tx', {
    ...options,
    body: txBody([`{"op":"get","key":${JSON.stringify(key)}}`]),
  });
  const item = res.data.results[0];
  if (item === null) throw new ApiError(404, 'not_found', 'Key not found');
  return { data: item, raw: rawMember(rawElement(rawMember(res.text, 'results'), 0), 'value') };
}

/** Sets the key to `valueText` (JSON text) with `optionsText` (`,"ttl":5` or empty), only if
 *  it is at `version` (or absent, for `null`). A mismatch rejects with a 412 ApiError. */
async function setKey(key, valueText, optionsText, version) {
  if (!DOT_KEYS.has(key)) {
    const headers = version === null ? { 'If-None-Match': '*' } : { 'If-Match': `"${version}"` };
    const body = `{"value":${valueText}${optionsText}}`;
    return (await api('POST', keyPath(key), { body, headers })).data;
  }
  const k = JSON.stringify(key);
  const body = txBody([
    `{"op":"check","key":${k},"version":${version === null ? 'null' : version}}`,
    `{"op":"set","key":${k},"value":${valueText}${optionsText}}`,
  ]);
  return (await api('POST', '/_tx', { body })).data.results[1];
}

/** Deletes the key if it is still at `version`. */
async function deleteKey(key, version) {
  if (!DOT_KEYS.has(key)) {
    await api('DELETE', keyPath(key), { headers: { 'If-Match': `"${version}"` } });
    return;
  }
  const k = JSON.stringify(key);
  const res = await api('POST', '/_tx', {
    body: txBody([`{"op":"check","key":${k},"version":${version}}`, `{"op":"delete","key":${k}}`]),
  });
  if (!res.data.results[1].deleted) throw new ApiError(404, 'not_found', 'Key not found');
}

function describe(err) {
  if (!(err instanceof ApiError)) return String(err && err.message ? err.message : err);
  if (err.status === 0) return 'cannot reach the server';
  if (err.status === 401) return 'an API key is needed (401)';
  if (err.status === 403) return 'this API key is read-only (403)';
  return `${err.message} (${err.status} ${err.code})`;
}

// ---- JSON text, exactly as the server sent it ---------------------------------------------

function skipSpace(t, i) {
  while (i < t.length && (t[i] === ' ' || t[i] === '\n' || t[i] === '\r' || t[i] === '\t')) i++;
  return i;
}

/** `t[i]` is the opening quote; returns the index after the closing one. */
function skipString(t, i) {
  for (i += 1; i < t.length; i++) {
    if (t[i] === '\\') i++;
    else if (t[i] === '"') return i + 1;
  }
  throw new SyntaxError('unterminated string');
}

/** Returns the index after the JSON value that starts at `i` (valid JSON assumed). */
function skipValue(t, i) {
  i = skipSpace(t, i);
  const c = t[i];
  if (c === '"') return skipString(t, i);
  if (c === '{' || c === '[') {
    let depth = 0;
    for (; i < t.length; i++) {
      const d = t[i];
      if (d === '"') i = skipString(t, i) - 1;
      else if (d === '{' || d === '[') depth++;
      else if (d === '}' || d === ']') {
        depth--;
        if (depth === 0) return i + 1;
      }
    }
    throw new SyntaxError('unterminated container');
  }
  while (i < t.length && !',}] \n\r\t'.includes(t[i])) i++;
  return i;
}

/** The raw JSON text of the member `name` of the JSON object `text`. */
function rawMember(text, name) {
  let i = skipSpace(text, 0);
  if (text[i] !== '{') throw new SyntaxError('not an object');
  i++;
  for (;;) {
    i = skipSpace(text, i);
    if (text[i] !== '"') return undefined;
    const end = skipString(text, i);
    const member = JSON.parse(text.slice(i, end));
    i = skipSpace(text, end) + 1; // the ':'
    const start = skipSpace(text, i);
    const stop = skipValue(text, start);
    if (member === name) return text.slice(start, stop);
    i = skipSpace(text, stop);
    if (text[i] === ',') i++;
  }
}

/** The raw JSON text of element `n` of the JSON array `text`. */
function rawElement(text, n) {
  let i = skipSpace(text, 0) + 1; // after '['
  for (let k = 0; ; k++) {
    const start = skipSpace(text, i);
    const stop = skipValue(text, start);
    if (k === n) return text.slice(start, stop);
    i = skipSpace(text, stop) + 1; // after ','
  }
}

/** Re-indents JSON text by two spaces; strings and numbers are copied byte for byte. */
function prettyJson(raw) {
  let out = '';
  let depth = 0;
  const newline = () => `\n${'  '.repeat(depth)}`;
  for (let i = 0; i < raw.length; ) {
    const c = raw[i];
    if (c === '"') {
      const end = skipString(raw, i);
      out += raw.slice(i, end);
      i = end;
    } else if (c === ' ' || c === '\n' || c === '\r' || c === '\t') {
      i++;
    } else if (c === '{' || c === '[') {
      const next = skipSpace(raw, i + 1);
      if (raw[next] === (c === '{' ? '}' : ']')) {
        out += c + raw[next];
        i = next + 1;
      } else {
        depth++;
        out += c + newline();
        i++;
      }
    } else if (c === '}' || c === ']') {
      depth--;
      out += newline() + c;
      i++;
    } else if (c === ',') {
      out += `,${newline()}`;
      i++;
    } else if (c === ':') {
      out += ': ';
      i++;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

// ---- messages ------------------------------------------------------------------------------

function showMessage(text, kind = 'info') {
  const m = $('message');
  m.textContent = text;
  m.className = `message ${kind}`;
  m.hidden = false;
}

function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

function formatDuration(ms) {
  // A countdown: whole seconds rounded up, so it reads "1 s" until the key is gone.
  let s = Math.ceil(ms / 1000);
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (d) return `${d} d ${h} h ${m} min`;
  if (h) return `${h} h ${m} min ${s} s`;
  if (m) return `${m} min ${s} s`;
  return `${s} s`;
}

// ---- stats ---------------------------------------------------------------------------------

/** Shows the stats line; resolves to the store's version, or null. */
async function refreshStats({ background = false } = {}) {
  if (background && document.hidden) return null;
  const line = $('stats');
  try {
    const { data } = await api('GET', '/_stats', { background });
    line.textContent = `${plural(data.keys, 'key', 'keys')} · ${data.expiring} expiring · version ${data.version} · ${data.database}`;
    line.classList.remove('stale');
    return data.version;
  } catch (err) {
    line.textContent = `Stats unavailable: ${describe(err)}`;
    line.classList.add('stale');
    return null;
  }
}

// ---- key list ------------------------------------------------------------------------------

function keyButtons() {
  return Array.from($('key-list').querySelectorAll('button.key-item'));
}

function keyItem(key) {
  const li = document.createElement('li');
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'key-item';
  button.textContent = key;
  button.dataset.key = key;
  if (state.current && state.current.key === key) button.setAttribute('aria-current', 'true');
  li.append(button);
  return li;
}

const utf8 = new TextEncoder();

/** Byte order of the keys' UTF-8, the server's order (JavaScript's < compares UTF-16 units). */
function compareKeys(a, b) {
  const x = utf8.encode(a);
  const y = utf8.encode(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

function updateListStatus() {
  const more = state.cursor !== null;
  let text = state.shown === 0 && !more ? 'No keys' : plural(state.shown, 'key', 'keys') + ' shown';
  if (state.prefix) text += ` with prefix "${state.prefix}"`;
  text += more ? '; more on the next page.' : '.';
  $('list-status').textContent = text;
  $('next-page').hidden = !more;
}

/** Lists keys from the start (or the next page, appended, with `more`). */
async function listKeys({ more = false } = {}) {
  const gen = ++state.listGen;
  const from = watch.position; // the listing is current at least up to here
  const list = $('key-list');
  const params = new URLSearchParams();
  if (state.prefix) params.set('prefix', state.prefix);
  params.set('limit', String(state.limit));
  if (more && state.cursor) params.set('cursor', state.cursor);
  list.setAttribute('aria-busy', 'true');
  state.pendingEvents = [];
  try {
    const { data } = await api('GET', `/_keys?${params}`);
    if (gen !== state.listGen) return;
    const hadFocus = document.activeElement === $('next-page');
    if (!more) {
      list.replaceChildren();
      state.shown = 0;
    }
    const first = list.children.length;
    for (const key of data.keys) list.append(keyItem(key));
    state.shown += data.keys.length;
    state.cursor = data.cursor;
    updateListStatus();
    if (hadFocus && state.cursor === null) {
      // The button is gone: keep focus in the list, on the first key of this page.
      const target = list.children[first] || list.lastElementChild;
      if (target) target.firstElementChild.focus();
      else $('prefix').focus();
    }
    // The API answered: watch what is shown (a no-op when the watch already does).
    ensureWatch(from);
  } catch (err) {
    if (gen === state.listGen) $('list-status').textContent = `Cannot list keys: ${describe(err)}`;
  } finally {
    if (gen === state.listGen) {
      list.removeAttribute('aria-busy');
      const pending = state.pendingEvents || [];
      state.pendingEvents = null;
      for (const event of pending) applyToList(event);
    }
  }
}

/** Adds a key that was just set, in its place, if it belongs to the listing: under the
 *  prefix and, while more pages remain, before the last key shown (later keys come with the
 *  next page). */
function addToList(key) {
  if (!key.startsWith(state.prefix)) return;
  let before = null;
  for (const b of keyButtons()) {
    const order = compareKeys(key, b.dataset.key);
    if (order === 0) return;
    if (order < 0) {
      before = b.parentElement;
      break;
    }
  }
  if (before === null && state.cursor !== null) return;
  $('key-list').insertBefore(keyItem(key), before);
  state.shown += 1;
  updateListStatus();
}

function removeFromList(key) {
  for (const b of keyButtons()) {
    if (b.dataset.key === key) {
      const li = b.parentElement;
      if (document.activeElement === b) {
        // Keep focus in the list: on the next key, else the previous one.
        const near = li.nextElementSibling || li.previousElementSibling;
        (near ? near.firstElementChild : $('prefix')).focus();
      }
      li.remove();
      state.shown = Math.max(0, state.shown - 1);
    }
  }
  updateListStatus();
}

function markSelected(key) {
  for (const b of keyButtons()) {
    if (b.dataset.key === key) b.setAttribute('aria-current', 'true');
    else b.removeAttribute('aria-current');
  }
}

// ---- the selected key ----------------------------------------------------------------------

function showPane(name) {
  $('empty-detail').hidden = name !== 'empty';
  $('gone-note').hidden = name !== 'empty' || $('gone-note').textContent === '';
  $('key-view').hidden = name !== 'view';
  $('edit-form').hidden = name !== 'edit';
}

function setHash(key) {
  const url = key === null ? location.pathname + location.search : `#key=${encodeURIComponent(key)}`;
  history.replaceState(null, '', url);
}

function hashKey() {
  const m = /^#key=(.*)$/.exec(location.hash);
  if (!m) return null;
  try {
    return decodeURIComponent(m[1]);
  } catch {
    return null;
  }
}

async function openKey(key, { focus = true } = {}) {
  const gen = ++state.viewGen;
  const from = watch.position;
  try {
    const { data, raw } = await getKey(key);
    if (gen !== state.viewGen) return;
    showKey(data, raw);
    ensureWatch(from); // the key may be outside the listed prefix
    if (focus) $('key-title').focus();
  } catch (err) {
    if (gen !== state.viewGen) return;
    if (err.status === 404) keyGone(key, err.code === 'expired' ? 'has expired' : 'does not exist');
    else showMessage(`Cannot load "${key}": ${describe(err)}`, 'error');
  }
}

function showKey(data, raw) {
  disarmDelete();
  const type = typeof data.type === 'string' ? data.type : 'string';
  state.current = {
    key: data.key,
    version: data.version,
    raw,
    type,
    // A collection's members shown so far (raw JSON pieces) and the cursor that continues.
    pages: [raw],
    shownMembers: memberCount(raw),
    length: Number.isSafeInteger(data.length) ? data.length : null,
    cursor: typeof data.cursor === 'string' ? data.cursor : null,
    ttlMs: data.ttl_remaining_ms,
    loadedAt: performance.now(),
    expiresAt: data.expires_at,
  };
  state.editing = null;
  $('gone-note').textContent = '';
  $('key-title').textContent = data.key;
  $('key-version').textContent = String(data.version);
  $('key-expires').textContent = data.expires_at === null ? 'never' : data.expires_at;
  $('key-type').textContent = type;
  renderMembers();
  showPane('view');
  markSelected(data.key);
  setHash(data.key);
  startTicker();
}

/** How many members a collection page's raw JSON holds (a hash's fields, an array's items). */
function memberCount(raw) {
  let i = skipSpace(raw, 0);
  const open = raw[i];
  if (open !== '[' && open !== '{') return 0;
  i = skipSpace(raw, i + 1);
  if (raw[i] === (open === '[' ? ']' : '}')) return 0;
  for (let n = 1; ; n++) {
    if (open === '{') i = skipSpace(raw, skipSpace(raw, skipString(raw, i)) + 1); // past "name":
    i = skipSpace(raw, skipValue(raw, i));
    if (raw[i] !== ',') return n;
    i = skipSpace(raw, i + 1);
  }
}

/** The collection's pages joined into one raw JSON value (arrays and objects spliced, so
 *  large integers stay exact). */
function joinedPages(pages) {
  if (pages.length === 1) return pages[0];
  const inner = pages.map((p) => p.trim().slice(1, -1).trim()).filter((p) => p !== '');
  const open = pages[0].trim()[0];
  return open + inner.join(',') + (open === '{' ? '}' : ']');
}

/** Shows the selected key's value, and for a collection its members so far and what is left. */
function renderMembers() {
  const c = state.current;
  const collection = c.type !== 'string';
  $('key-value').textContent = prettyJson(joinedPages(c.pages));
  $('key-length-row').hidden = !collection;
  $('edit-button').hidden = collection;
  if (!collection) {
    $('members-note').hidden = true;
    $('more-row').hidden = true;
    return;
  }
  $('key-length').textContent = String(c.length);
  const note = c.cursor === null
    ? `All ${c.shownMembers} members shown.`
    : `${c.shownMembers} of ${c.length} members shown.`;
  $('members-note').textContent = `${note} Edit a ${c.type} through /${c.type === 'hash' ? 'fields' : c.type === 'list' ? 'items' : 'members'} routes or /_upstash.`;
  $('members-note').hidden = false;
  $('more-row').hidden = c.cursor === null;
}

/** Loads the next page of the selected collection's members. */
async function loadMoreMembers() {
  const c = state.current;
  if (!c || c.cursor === null) return;
  const gen = state.viewGen;
  try {
    const res = await api('GET', `${keyPath(c.key)}?cursor=${encodeURIComponent(c.cursor)}`);
    if (gen !== state.viewGen || state.current !== c) return;
    const raw = rawMember(res.text, 'value');
    c.pages.push(raw);
    c.shownMembers += memberCount(raw);
    c.cursor = typeof res.data.cursor === 'string' ? res.data.cursor : null;
    c.length = Number.isSafeInteger(res.data.length) ? res.data.length : c.length;
    renderMembers();
  } catch (err) {
    showMessage(`Cannot load more of "${c.key}": ${describe(err)}`, 'error');
  }
}

function clearSelection() {
  stopTicker();
  disarmDelete();
  state.current = null;
  state.editing = null;
  state.viewGen++;
  markSelected(null);
  setHash(null);
  showPane('empty');
}

/** The key is no longer there (expired, deleted, or never was). */
function keyGone(key, what) {
  removeFromList(key);
  const c = state.current;
  if (c && c.key === key) {
    if (state.editing) {
      // An open form is left as it is; the key's view goes when the form closes.
      c.gone = what;
      stopTicker();
      if (state.editing === 'edit') {
        $('expiry-keep-detail').textContent = `(it ${what})`;
        const text = `"${key}" ${what}. Saving your edit will fail; Cancel to close.`;
        showEditNotice(text);
        showMessage(text, 'error');
        return;
      }
    } else {
      clearSelection();
      showGoneNote(`"${key}" ${what}.`);
    }
  }
  showMessage(`"${key}" ${what}.`, 'info');
  refreshStats();
}

/** Says in the empty detail pane what became of the key that was shown there. */
function showGoneNote(text) {
  $('gone-note').textContent = text;
  $('gone-note').hidden = !$('key-view').hidden || !$('edit-form').hidden;
}

function showEditNotice(text) {
  $('edit-notice').textContent = text;
  $('edit-notice').hidden = false;
}

function remainingMs() {
  const c = state.current;
  return c.ttlMs - (performance.now() - c.loadedAt);
}

function renderTtl() {
  const c = state.current;
  if (!c) return;
  if (c.ttlMs < 0) {
    $('key-ttl').textContent = 'no expiry';
    return;
  }
  const ms = remainingMs();
  if (ms <= 0) {
    $('key-ttl').textContent = 'expired';
    stopTicker();
    confirmExpired(c.key, c.version);
    return;
  }
  $('key-ttl').textContent = formatDuration(ms);
  if (state.editing === 'edit') $('expiry-keep-detail').textContent = `(expires in ${formatDuration(ms)})`;
}

function startTicker() {
  stopTicker();
  renderTtl();
  if (state.current && state.current.ttlMs >= 0) state.ticker = setInterval(renderTtl, TICK_MS);
}

function stopTicker() {
  if (state.ticker !== null) clearInterval(state.ticker);
  state.ticker = null;
}

/** The countdown reached zero: ask the server (whose clock decides). */
async function confirmExpired(key, version) {
  try {
    const { data, raw } = await getKey(key, { background: true });
    const c = state.current;
    if (!c || c.key !== key || state.editing) return;
    if (data.version !== version) showKey(data, raw);
    // Still there by the server's clock: look again a little later.
    else setTimeout(() => confirmExpired(key, version), Math.max(TICK_MS, data.ttl_remaining_ms));
  } catch (err) {
    if (err.status === 404) keyGone(key, 'has expired');
  }
}

// ---- delete --------------------------------------------------------------------------------

function disarmDelete() {
  if (state.deleteTimer !== null) clearTimeout(state.deleteTimer);
  state.deleteTimer = null;
  const b = $('delete-button');
  b.textContent = 'Delete';
  b.classList.remove('armed');
}

async function onDelete() {
  const c = state.current;
  if (!c) return;
  const button = $('delete-button');
  if (state.deleteTimer === null) {
    button.textContent = 'Confirm delete';
    button.classList.add('armed');
    showMessage(`Press "Confirm delete" to delete "${c.key}".`, 'info');
    state.deleteTimer = setTimeout(disarmDelete, DELETE_CONFIRM_MS);
    return;
  }
  disarmDelete();
  startWrite(c.key);
  try {
    await deleteKey(c.key, c.version);
    keyGone(c.key, 'was deleted');
    $('new-key').focus();
  } catch (err) {
    if (err.status === 404) keyGone(c.key, 'was already gone');
    else if (err.status === 412) {
      showMessage(
        `Not deleted: "${c.key}" changed after you loaded version ${c.version} (412). It was reloaded; check it and delete again.`,
        'error',
      );
      openKey(c.key);
    } else showMessage(`Cannot delete "${c.key}": ${describe(err)}`, 'error');
  } finally {
    endWrite();
  }
}

// ---- create / edit -------------------------------------------------------------------------

function clearFieldErrors() {
  for (const id of ['edit-key', 'edit-value', 'edit-ttl']) $(id).removeAttribute('aria-invalid');
  $('edit-error').hidden = true;
  $('edit-error').textContent = '';
}

function formError(text, fieldId) {
  const e = $('edit-error');
  e.textContent = text;
  e.hidden = false;
  if (fieldId) {
    $(fieldId).setAttribute('aria-invalid', 'true');
    $(fieldId).focus();
  }
}

function openEditor(mode) {
  disarmDelete();
  const c = state.current;
  if (mode === 'edit' && (!c || c.gone)) return;
  state.editing = mode;
  clearFieldErrors();
  $('edit-notice').hidden = true;
  $('gone-note').textContent = '';
  const keyInput = $('edit-key');
  $('edit-ttl').value = '';
  $('expiry-keep-detail').textContent = '';
  if (mode === 'new') {
    $('edit-title').textContent = 'New key';
    keyInput.readOnly = false;
    keyInput.value = state.prefix;
    $('edit-value').value = '';
    $('expiry-keep-label').hidden = true;
    $('expiry-none').checked = true;
    $('save-button').textContent = 'Create';
  } else {
    $('edit-title').textContent = 'Edit key';
    keyInput.readOnly = true;
    keyInput.value = c.key;
    $('edit-value').value = prettyJson(c.raw);
    const expiring = c.ttlMs >= 0;
    $('expiry-keep-label').hidden = !expiring;
    (expiring ? $('expiry-keep') : $('expiry-none')).checked = true;
    $('save-button').textContent = 'Save';
    renderTtl();
  }
  showPane('edit');
  (mode === 'new' ? keyInput : $('edit-value')).focus();
}

function closeEditor() {
  const mode = state.editing;
  state.editing = null;
  clearFieldErrors();
  $('edit-notice').hidden = true;
  const c = state.current;
  if (c && c.gone) {
    // Deleted or expired while the form was open.
    clearSelection();
    showGoneNote(`"${c.key}" ${c.gone}.`);
  }
  if (state.current) {
    showPane('view');
    $(mode === 'edit' ? 'edit-button' : 'key-title').focus();
    // Changed while the form was open: show what it is now.
    if (c.changed) refreshOpenKey(c.key);
  } else {
    showPane('empty');
    $('new-key').focus();
  }
}

function fieldForCode(code) {
  if (/key/.test(code)) return 'edit-key';
  if (/ttl|expir/.test(code)) return 'edit-ttl';
  if (/json|value|depth/.test(code)) return 'edit-value';
  return undefined;
}

async function saveEditor(event) {
  event.preventDefault();
  const mode = state.editing;
  if (!mode) return;
  clearFieldErrors();
  const key = mode === 'new' ? $('edit-key').value : state.current.key;
  if (key === '') return formError('Enter a key.', 'edit-key');
  const text = $('edit-value').value.trim();
  try {
    JSON.parse(text);
  } catch (err) {
    return formError(
      text === '' ? 'Enter a JSON value (for example "text", 42 or null).' : `The value is not valid JSON: ${err.message}`,
      'edit-value',
    );
  }
  const expiry = document.querySelector('input[name="expiry"]:checked');
  let options = '';
  if (expiry && expiry.value === 'ttl') {
    const ttl = $('edit-ttl').value.trim();
    if (!/^[1-9][0-9]*$/.test(ttl)) return formError('The TTL is a whole number of seconds, 1 or more.', 'edit-ttl');
    options = `,"ttl":${ttl}`;
  } else if (expiry && expiry.value === 'keep' && mode === 'edit') {
    options = ',"keep_ttl":true';
  }
  // The value goes to the server as the text the user typed (it parsed above), so numbers
  // JavaScript cannot represent exactly are kept. New keys must be absent (If-None-Match: *),
  // edits must still be at the loaded version (If-Match).
  const loaded = mode === 'edit' ? state.current.version : null;
  const save = $('save-button');
  save.disabled = true;
  startWrite(key);
  try {
    const data = await setKey(key, text, options, loaded);
    state.editing = null;
    showMessage(`${mode === 'new' ? 'Created' : 'Saved'} "${key}" (version ${data.version}).`, 'ok');
    await openKey(key);
    if (mode === 'new') listKeys();
    refreshStats();
  } catch (err) {
    if (err.status === 412 && mode === 'new') {
      formError(`A key named "${key}" already exists (412). Open it from the list to edit it.`, 'edit-key');
    } else if (err.status === 412) {
      let now = '';
      try {
        const { data } = await getKey(key);
        now = ` It is now at version ${data.version}.`;
      } catch (e) {
        if (e.status === 404) now = ' It has since been deleted or has expired.';
      }
      formError(
        `Conflict (412): "${key}" was changed by someone else after you loaded version ${loaded}.${now} ` +
          'Nothing was saved. Copy your text if you need it, then Cancel and Reload.',
        'edit-value',
      );
    } else if (err.status === 400) {
      formError(describe(err), fieldForCode(err.code));
    } else {
      formError(`Not saved: ${describe(err)}`);
    }
  } finally {
    endWrite();
    save.disabled = false;
  }
}

// ---- live updates: GET /_watch ------------------------------------------------------------
//
// One EventSource on the listed prefix (`values=false`: a change to the selected key is read
// again with GET, which also gives the TTL by the server's clock). A new watch starts after
// the version the page was current at when it listed or read the key (`since`), so nothing
// between that answer and the watch is missed; events it repeats change nothing. EventSource
// reconnects by itself after a dropped connection and resumes after its last id
// (Last-Event-ID). A refusal (401, 403, 503) makes it give up: the page tries again later.

function setLive(kind, text) {
  const el = $('live');
  el.dataset.state = kind;
  el.textContent = text;
}

/** The watch's filters: the listed prefix (empty: every key), and the selected key if the
 *  prefix does not cover it. */
function watchQuery() {
  const params = new URLSearchParams();
  params.set('prefix', state.prefix);
  const c = state.current;
  if (c && !c.key.startsWith(state.prefix)) params.append('key', c.key);
  params.set('values', 'false');
  return params.toString();
}

/** Opens the watch for what the page shows unless the open one covers it. `from`: a version
 *  the list and the view are known to be current at (null: none known). */
function ensureWatch(from = watch.position) {
  const query = watchQuery();
  if (watch.query === query && (watch.source !== null || watch.retryTimer !== null)) return;
  openWatch(query, from);
}

function closeWatch() {
  if (watch.source !== null) watch.source.close();
  watch.source = null;
  if (watch.retryTimer !== null) clearTimeout(watch.retryTimer);
  watch.retryTimer = null;
  watch.query = null;
  setLive('off', 'offline');
}

function openWatch(query, from) {
  closeWatch();
  const params = new URLSearchParams(query);
  if (from !== null) params.set('since', String(from));
  // EventSource cannot send headers: the key goes in the address, which only /_watch accepts
  // (the server masks it in its log).
  if (state.apiKey) params.set('access_token', state.apiKey);
  const source = new EventSource(`/_watch?${params}`);
  watch.source = source;
  watch.query = query;
  watch.position = from;
  watch.synced = from !== null;
  setLive('connecting', 'connecting…');
  // Events of a watch that was replaced are dropped.
  const current = (handler) => (m) => {
    if (watch.source === source) handler(m);
  };
  source.addEventListener('ready', current(onWatchReady));
  source.addEventListener('reset', current(onWatchReset));
  source.addEventListener('progress', current(notePosition));
  source.addEventListener('message', current(onWatchEvent));
  source.addEventListener('error', current(() => onWatchError(source)));
}

function notePosition(m) {
  const version = Number(m.lastEventId);
  if (m.lastEventId !== '' && Number.isSafeInteger(version)) watch.position = version;
}

function onWatchReady(m) {
  notePosition(m);
  watch.retryMs = WATCH_RETRY_MS;
  setLive('live', 'live');
  if (!watch.synced) {
    // Started without a version: what changed before it is unknown.
    watch.synced = true;
    resync();
  }
}

/** The server no longer has the changes since the last version seen: start over. */
function onWatchReset(m) {
  notePosition(m);
  watch.synced = true;
  watch.retryMs = WATCH_RETRY_MS;
  setLive('live', 'live');
  resync();
}

function resync() {
  listKeys();
  const c = state.current;
  if (!c) return;
  if (state.editing) c.changed = true;
  else refreshOpenKey(c.key);
}

function onWatchError(source) {
  if (source.readyState !== EventSource.CLOSED) {
    // The connection dropped: EventSource connects again by itself (after the server's
    // `retry:`, 2 s) and resumes after its last id.
    setLive('reconnecting', 'reconnecting…');
    return;
  }
  // Refused (a wrong API key, too many watchers…): EventSource gives up for good. Try again
  // later from the last version seen, waiting twice as long each time.
  source.close();
  watch.source = null;
  const delay = watch.retryMs;
  watch.retryMs = Math.min(delay * 2, WATCH_RETRY_MAX_MS);
  setLive('off', `offline, retrying in ${Math.round(delay / 1000)} s`);
  watch.retryTimer = setTimeout(() => {
    watch.retryTimer = null;
    openWatch(watchQuery(), watch.position);
  }, delay);
}

/** One change: `{version, op: "set" | "delete" | "expired", key}`. */
function onWatchEvent(m) {
  notePosition(m);
  let event;
  try {
    event = JSON.parse(m.data);
  } catch {
    return;
  }
  if (!event || typeof event.key !== 'string' || !Number.isSafeInteger(event.version)) return;
  // A listing on its way may not have it yet: apply it after the listing.
  if (state.pendingEvents !== null) state.pendingEvents.push(event);
  else applyToList(event);
  applyToView(event);
}

function applyToList(event) {
  if (event.op === 'set') addToList(event.key);
  else removeFromList(event.key);
}

function applyToView(event) {
  const c = state.current;
  if (!c || c.key !== event.key || event.version <= c.version || c.gone) return;
  if (state.writing && state.writing.key === event.key) {
    // Most likely this page's own write; endWrite looks again.
    state.writing.seen = Math.max(state.writing.seen, event.version);
    return;
  }
  if (event.op !== 'set') keyGone(event.key, event.op === 'expired' ? 'has expired' : 'was deleted by someone else');
  else if (state.editing) changedWhileEditing(event.version);
  else scheduleRefresh(event.key);
}

/** The selected key changed while a form is open: say so, and leave the form alone (saving
 *  an edit still sends If-Match with the loaded version, and gets the 412). */
function changedWhileEditing(version) {
  const c = state.current;
  c.changed = true;
  if (state.editing !== 'edit') return;
  showEditNotice(
    `"${c.key}" was changed by someone else while you were editing: it is now at version ${version}, ` +
      `you loaded version ${c.version}. Saving will be refused; copy your text if you need it, ` +
      'then Cancel to see the new value.',
  );
}

function startWrite(key) {
  state.writing = { key, seen: 0 };
}

function endWrite() {
  const { key, seen } = state.writing;
  state.writing = null;
  const c = state.current;
  if (!c || c.key !== key || seen <= c.version || c.gone) return;
  // Someone else wrote too, after what the page shows.
  if (state.editing) c.changed = true;
  else scheduleRefresh(key);
}

function scheduleRefresh(key) {
  if (state.refreshTimer !== null) return;
  state.refreshTimer = setTimeout(() => {
    state.refreshTimer = null;
    refreshOpenKey(key);
  }, REFRESH_DELAY_MS);
}

/** Reads the selected key again after a change and shows it (unless a form is open). */
async function refreshOpenKey(key) {
  const c = state.current;
  if (!c || c.key !== key) return;
  if (state.editing) {
    c.changed = true;
    return;
  }
  const gen = ++state.viewGen;
  try {
    const { data, raw } = await getKey(key, { background: true });
    if (gen !== state.viewGen || !state.current || state.current.key !== key) return;
    if (state.editing) {
      state.current.changed = true;
      return;
    }
    if (data.version === state.current.version) return;
    showKey(data, raw);
    showMessage(`"${key}" was changed by someone else: now at version ${data.version}.`, 'info');
  } catch (err) {
    if (gen === state.viewGen && err.status === 404) {
      keyGone(key, err.code === 'expired' ? 'has expired' : 'was deleted by someone else');
    }
  }
}

// ---- API key prompt ------------------------------------------------------------------------

function askForKey(reason) {
  const dialog = $('auth-dialog');
  $('auth-reason').textContent = reason;
  if (!dialog.open) {
    $('auth-key').value = '';
    dialog.showModal();
  }
  $('auth-key').focus();
}

/** Stats first, then the list and the key: the first watch starts at the stats' version, so
 *  a change between the listing and the watch's start is not missed. */
async function loadAll(key) {
  const version = await refreshStats();
  if (version !== null && watch.position === null && watch.source === null) watch.position = version;
  listKeys();
  if (key !== null) openKey(key, { focus: false });
}

function refreshAll() {
  closeWatch(); // opened again, with the new key, once the listing answers
  loadAll(state.current && !state.editing ? state.current.key : null);
}

function onAuthSubmit(event) {
  event.preventDefault();
  const key = $('auth-key').value.trim();
  if (!/^[\x21-\x7e]+$/.test(key)) {
    $('auth-reason').textContent = 'An API key is printable ASCII without spaces.';
    $('auth-key').setAttribute('aria-invalid', 'true');
    $('auth-key').focus();
    return;
  }
  $('auth-key').removeAttribute('aria-invalid');
  storeKey(key);
  state.authDismissed = false;
  $('auth-dialog').close();
  showMessage('API key set for this tab.', 'ok');
  refreshAll();
}

// ---- wiring --------------------------------------------------------------------------------

function onListSubmit(event) {
  event.preventDefault();
  const limit = Number($('limit').value);
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
    $('limit').setAttribute('aria-invalid', 'true');
    $('list-status').textContent = 'Page size is a whole number from 1 to 1000.';
    $('limit').focus();
    return;
  }
  $('limit').removeAttribute('aria-invalid');
  state.limit = limit;
  state.prefix = $('prefix').value;
  listKeys();
}

function onListKey(event) {
  const buttons = keyButtons();
  const i = buttons.indexOf(document.activeElement);
  if (i < 0) return;
  let next = null;
  if (event.key === 'ArrowDown') next = buttons[i + 1];
  else if (event.key === 'ArrowUp') next = buttons[i - 1];
  else if (event.key === 'Home') next = buttons[0];
  else if (event.key === 'End') next = buttons[buttons.length - 1];
  else return;
  event.preventDefault();
  if (next) next.focus();
}

function init() {
  storeKey(state.apiKey);
  // The skip link moves focus without touching the address (which holds the selected key).
  document.querySelector('.skip').addEventListener('click', (event) => {
    event.preventDefault();
    const target = state.editing ? $('edit-title') : state.current ? $('key-title') : $('detail');
    target.focus();
  });
  $('list-form').addEventListener('submit', onListSubmit);
  $('key-list').addEventListener('click', (event) => {
    const button = event.target.closest('button.key-item');
    if (button) openKey(button.dataset.key);
  });
  $('key-list').addEventListener('keydown', onListKey);
  $('next-page').addEventListener('click', () => listKeys({ more: true }));
  $('new-key').addEventListener('click', () => openEditor('new'));
  $('edit-button').addEventListener('click', () => openEditor('edit'));
  $('reload-button').addEventListener('click', () => state.current && openKey(state.current.key));
  $('more-members').addEventListener('click', loadMoreMembers);
  $('delete-button').addEventListener('click', onDelete);
  $('delete-button').addEventListener('blur', disarmDelete);
  $('edit-form').addEventListener('submit', saveEditor);
  $('cancel-edit').addEventListener('click', closeEditor);
  $('edit-form').addEventListener('keydown', (event) => {
    if (event.key === 'Escape') {
      event.preventDefault();
      closeEditor();
    }
  });
  $('edit-value').addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      $('edit-form').requestSubmit();
    }
  });
  $('edit-ttl').addEventListener('input', () => {
    $('expiry-ttl').checked = true;
  });
  $('api-key-button').addEventListener('click', () =>
    askForKey(
      'If the server is started with API keys, paste one here. It is kept in this tab only ' +
        '(session storage) and sent as "Authorization: Bearer …".',
    ),
  );
  $('auth-form').addEventListener('submit', onAuthSubmit);
  $('auth-forget').addEventListener('click', () => {
    storeKey(null);
    state.authDismissed = false;
    $('auth-dialog').close();
    showMessage('API key forgotten.', 'info');
    refreshAll();
  });
  // Closed without a new key (Cancel or Escape): the stats poll stops asking until the next
  // action of the user's gets a 401.
  $('auth-cancel').addEventListener('click', () => {
    state.authDismissed = true;
    $('auth-dialog').close();
  });
  $('auth-dialog').addEventListener('cancel', () => {
    state.authDismissed = true;
  });
  // Back / forward, or a #key= link pasted into the address bar.
  window.addEventListener('hashchange', () => {
    const key = hashKey();
    if (key === null || state.editing || (state.current && state.current.key === key)) return;
    openKey(key, { focus: false });
  });
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) refreshStats();
  });
  // Leaving the page ends the watch; coming back to it (back/forward cache) resumes it.
  window.addEventListener('pagehide', closeWatch);
  window.addEventListener('pageshow', (event) => {
    if (event.persisted) ensureWatch();
  });

  setInterval(() => refreshStats({ background: true }), STATS_EVERY_MS);
  loadAll(hashKey());
}

init();
