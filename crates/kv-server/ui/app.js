// kvstore key browser: plain JavaScript, no dependencies, served by kv-server at /_ui.
//
// It uses the public HTTP API only. Data from the server is put into the page with
// textContent or form values, never parsed as HTML, so keys and values that contain markup
// are shown as text. Values are shown and edited as the exact JSON text the server returned
// (re-indented, literals untouched), so large integers are not rounded by JSON.parse.
'use strict';

const API_KEY_STORAGE = 'kvstore.apiKey';
const STATS_EVERY_MS = 5000;
const TICK_MS = 250;
const DELETE_CONFIRM_MS = 6000;

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

async function refreshStats({ background = false } = {}) {
  if (background && document.hidden) return;
  const line = $('stats');
  try {
    const { data } = await api('GET', '/_stats', { background });
    line.textContent = `${plural(data.keys, 'key', 'keys')} · ${data.expiring} expiring · version ${data.version} · ${data.database}`;
    line.classList.remove('stale');
  } catch (err) {
    line.textContent = `Stats unavailable: ${describe(err)}`;
    line.classList.add('stale');
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
  const list = $('key-list');
  const params = new URLSearchParams();
  if (state.prefix) params.set('prefix', state.prefix);
  params.set('limit', String(state.limit));
  if (more && state.cursor) params.set('cursor', state.cursor);
  list.setAttribute('aria-busy', 'true');
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
  } catch (err) {
    if (gen === state.listGen) $('list-status').textContent = `Cannot list keys: ${describe(err)}`;
  } finally {
    if (gen === state.listGen) list.removeAttribute('aria-busy');
  }
}

function removeFromList(key) {
  for (const b of keyButtons()) {
    if (b.dataset.key === key) {
      b.parentElement.remove();
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
  try {
    const { data, raw } = await getKey(key);
    if (gen !== state.viewGen) return;
    showKey(data, raw);
    if (focus) $('key-title').focus();
  } catch (err) {
    if (gen !== state.viewGen) return;
    if (err.status === 404) keyGone(key, err.code === 'expired' ? 'has expired' : 'does not exist');
    else showMessage(`Cannot load "${key}": ${describe(err)}`, 'error');
  }
}

function showKey(data, raw) {
  disarmDelete();
  state.current = {
    key: data.key,
    version: data.version,
    raw,
    ttlMs: data.ttl_remaining_ms,
    loadedAt: performance.now(),
    expiresAt: data.expires_at,
  };
  state.editing = null;
  $('key-title').textContent = data.key;
  $('key-version').textContent = String(data.version);
  $('key-expires').textContent = data.expires_at === null ? 'never' : data.expires_at;
  $('key-value').textContent = prettyJson(raw);
  showPane('view');
  markSelected(data.key);
  setHash(data.key);
  startTicker();
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
  if (state.current && state.current.key === key) {
    if (state.editing === 'edit') {
      stopTicker();
      $('expiry-keep-detail').textContent = '(it has expired)';
      showMessage(`"${key}" ${what}. Saving your edit will fail; Cancel to close.`, 'error');
      return;
    }
    clearSelection();
  }
  showMessage(`"${key}" ${what}.`, 'info');
  refreshStats();
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
  if (mode === 'edit' && !c) return;
  state.editing = mode;
  clearFieldErrors();
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
  if (state.current) {
    showPane('view');
    $(mode === 'edit' ? 'edit-button' : 'key-title').focus();
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
    save.disabled = false;
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

function refreshAll() {
  refreshStats();
  listKeys();
  if (state.current && !state.editing) openKey(state.current.key, { focus: false });
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

  refreshStats();
  setInterval(() => refreshStats({ background: true }), STATS_EVERY_MS);
  listKeys();
  const key = hashKey();
  if (key !== null) openKey(key, { focus: false });
}

init();
