// DOM helpers shared by the pages: element builder (never HTML strings), states (loading,
// empty, error), tables that become cards on a phone, paged lists, dialogs, notices, times in
// the browser's zone with relative ages, and the diff view.

import { describe, nextCursor } from './api.js';

/** An element: `props` are properties or attributes (`onClick` listens), then children. */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === 'class') {
      el.className = value;
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key in el && !key.includes('-') && key !== 'list' && key !== 'form') {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

/** Appends children: nodes, strings, numbers, arrays of them; null and false are skipped. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replaces the children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

// ---- states -------------------------------------------------------------------------------

export const loading = (what = 'Loading…') =>
  h('p', { class: 'state loading', role: 'status', dataset: { state: 'loading' } }, what);

export const emptyState = (text) => h('p', { class: 'state empty', dataset: { state: 'empty' } }, text);

/** An error in plain words, with a retry button when given one. */
export function errorState(error, retry) {
  return h('div', { class: 'state error', role: 'alert', dataset: { state: 'error' } },
    h('p', null, describe(error)),
    retry && h('button', { type: 'button', onClick: retry }, 'Try again'));
}

/** Replaces `el` with a loading state, runs `work`, and on failure shows the error there. */
export async function guard(el, work) {
  replace(el, loading());
  try {
    await work();
  } catch (error) {
    if (error.status === 401) return;
    replace(el, errorState(error, () => guard(el, work)));
  }
}

// ---- notices ------------------------------------------------------------------------------

/** A short notice in the live region (kind: ok | error). */
export function notify(message, kind = 'ok') {
  const region = document.getElementById('notices');
  if (!region) return;
  const note = h('div', { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    h('span', null, message),
    h('button', { type: 'button', class: 'link', 'aria-label': 'Dismiss', onClick: () => note.remove() }, '×'));
  region.append(note);
  setTimeout(() => note.remove(), kind === 'error' ? 12000 : 6000);
}

/** A button that runs an async action once at a time, showing its error as a notice. */
export function action(label, run, { kind = '', title, disabled } = {}) {
  const button = h('button', { type: 'button', class: kind, title, disabled }, label);
  button.addEventListener('click', async () => {
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
    try {
      await run(button);
    } catch (error) {
      if (error.status !== 401) notify(describe(error), 'error');
    } finally {
      button.disabled = false;
      button.removeAttribute('aria-busy');
    }
  });
  return button;
}

/** Handles a form's submit with `run(form)`: buttons disabled meanwhile, errors as notices. */
export function onSubmit(form, run) {
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const buttons = [...form.querySelectorAll('button')];
    for (const b of buttons) b.disabled = true;
    try {
      await run(form);
    } catch (error) {
      if (error.status !== 401) notify(describe(error), 'error');
    } finally {
      for (const b of buttons) b.disabled = false;
    }
  });
  return form;
}

// ---- layout bits --------------------------------------------------------------------------

/** The page heading (focused after navigation) with optional actions on its right. */
export function pageHeader(title, ...actions) {
  document.title = `${title} · Codara`;
  return h('div', { class: 'page-head' },
    h('h1', { tabindex: '-1', id: 'page-title' }, title),
    actions.length ? h('div', { class: 'actions' }, actions) : null);
}

export const section = (title, ...children) =>
  h('section', { class: 'card' }, title ? h('h2', null, title) : null, children);

/** A definition list of [label, value] pairs; values that are null or '' read "—". */
export function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.filter(Boolean).map(([label, value]) => [
    h('dt', null, label),
    h('dd', null, value === null || value === undefined || value === '' ? '—' : value),
  ]));
}

export const badge = (text, kind = '') => h('span', { class: `badge ${kind}` }, text);

export const code = (text) => h('code', null, text);

/** A labelled form control. */
export const field = (label, control, hint) =>
  h('label', { class: 'field' }, h('span', null, label), control, hint ? h('small', null, hint) : null);

export const jsonBlock = (value) => h('pre', { class: 'json' }, JSON.stringify(value, null, 2));

/** A link inside the app (the router intercepts it). */
export const link = (href, text) => h('a', { href }, text);

// ---- numbers and times --------------------------------------------------------------------

export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

/** Seconds as "2 d 3 h", "4 h 5 min", "5 min 2 s", "12 s". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  let s = Math.max(0, Math.round(Number(seconds)));
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hours = Math.floor(s / 3600); s -= hours * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return `${d} d ${hours} h`;
  if (hours) return `${hours} h ${m} min`;
  if (m) return `${m} min ${s} s`;
  return `${s} s`;
}

export const millis = (ms) => (ms === null || ms === undefined ? '—' : ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`);

const relativeFormat = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
const absoluteFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
export const timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone || 'local time';

/** "3 minutes ago" / "in 2 hours" for an epoch-ms moment. */
export function relative(ms) {
  const diff = (ms - Date.now()) / 1000;
  const steps = [[60, 'second'], [3600, 'minute'], [86400, 'hour'], [86400 * 30, 'day'], [86400 * 365, 'month']];
  for (const [limit, unit] of steps) {
    if (Math.abs(diff) < limit) {
      const size = { second: 1, minute: 60, hour: 3600, day: 86400, month: 86400 * 30 }[unit];
      return relativeFormat.format(Math.round(diff / size), unit);
    }
  }
  return relativeFormat.format(Math.round(diff / (86400 * 365)), 'year');
}

/** A moment (RFC 3339 or epoch ms) in the browser's zone with its relative age, kept fresh. */
export function time(value) {
  if (value === null || value === undefined || value === '') return '—';
  const ms = typeof value === 'number' ? value : Date.parse(value);
  if (Number.isNaN(ms)) return String(value);
  const iso = new Date(ms).toISOString();
  const el = h('time', { datetime: iso, title: `${absoluteFormat.format(ms)} (${timeZone})`, dataset: { at: String(ms) } });
  el.textContent = stamp(ms);
  return el;
}

const stamp = (ms) => `${absoluteFormat.format(ms)} · ${relative(ms)}`;

/** "in 2 h 5 min" until a moment, kept fresh (for quota resets and cooldowns). */
export function countdown(value) {
  if (!value) return '—';
  const ms = typeof value === 'number' ? value : Date.parse(value);
  const el = h('time', { datetime: new Date(ms).toISOString(), title: `${absoluteFormat.format(ms)} (${timeZone})`, dataset: { until: String(ms) } });
  el.textContent = until(ms);
  return el;
}

const until = (ms) => (ms <= Date.now() ? 'now' : `in ${duration((ms - Date.now()) / 1000)}`);

setInterval(() => {
  for (const el of document.querySelectorAll('time[data-at]')) el.textContent = stamp(Number(el.dataset.at));
  for (const el of document.querySelectorAll('time[data-until]')) el.textContent = until(Number(el.dataset.until));
}, 15000);

// ---- tables and paged lists ---------------------------------------------------------------

/**
 * A table; on a narrow screen every row becomes a card with each cell labelled.
 * `columns`: [{label, cell(row) → node|text, class?}].
 */
export function table(columns, rows, caption) {
  const body = h('tbody');
  appendRows(body, columns, rows);
  return h('div', { class: 'table-wrap' },
    h('table', null,
      caption ? h('caption', { class: 'sr-only' }, caption) : null,
      h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col' }, c.label)))),
      body));
}

function appendRows(body, columns, rows) {
  for (const row of rows) {
    body.append(h('tr', null, columns.map((c) =>
      h('td', { 'data-label': c.label, class: c.class || '' }, c.cell(row)))));
  }
}

/**
 * A list loaded page by page. `load(cursor)` resolves to `{items, next}` (`next` null at the
 * end); items render as table rows (`columns`) or through `render(item)`. Shows loading, empty
 * and error states and a "Load more" button.
 */
export function pagedList({ load, columns, render, empty = 'Nothing here yet.', caption }) {
  const root = h('div', { class: 'paged', dataset: { state: 'loading' } });
  let cursor = null;
  let container = null;
  const more = h('button', { type: 'button', class: 'more' }, 'Load more');
  const status = h('p', { class: 'sr-only', role: 'status' });
  const fetchPage = async (first) => {
    if (first) replace(root, loading());
    more.disabled = true;
    try {
      const { items, next } = await load(cursor);
      if (first) {
        replace(root);
        if (!items.length) {
          root.dataset.state = 'empty';
          root.append(emptyState(empty));
          return;
        }
        container = columns ? table(columns, [], caption) : h('ul', { class: 'cards' });
        root.append(container, status);
      }
      root.dataset.state = 'ready';
      if (columns) appendRows(container.querySelector('tbody'), columns, items);
      else for (const item of items) container.append(h('li', null, render(item)));
      status.textContent = `${container.querySelectorAll(columns ? 'tbody tr' : 'li').length} shown`;
      cursor = next;
      if (next) root.append(more); else more.remove();
    } catch (error) {
      if (error.status === 401) return;
      if (first) {
        root.dataset.state = 'error';
        replace(root, errorState(error, () => fetchPage(true)));
      } else {
        notify(describe(error), 'error');
      }
    } finally {
      more.disabled = false;
    }
  };
  more.addEventListener('click', () => fetchPage(false));
  fetchPage(true);
  return root;
}

/** A `load` over the API: one page per call, following `meta.page.next_cursor`. */
export function apiPages(fetchPage) {
  return async (cursor) => {
    const { data, meta } = await fetchPage(cursor);
    return { items: data || [], next: nextCursor(meta) };
  };
}

/** A `load` over an array already in memory, `size` at a time. */
export function arrayPages(items, size = 25) {
  return async (cursor) => {
    const start = cursor || 0;
    const end = start + size;
    return { items: items.slice(start, end), next: end < items.length ? end : null };
  };
}

// ---- dialogs ------------------------------------------------------------------------------

function dialog(title, content, buttons) {
  const form = h('form', { method: 'dialog' },
    h('h2', null, title), content,
    h('div', { class: 'actions' }, buttons));
  const el = h('dialog', { 'aria-label': title }, form);
  document.body.append(el);
  return new Promise((resolve) => {
    el.addEventListener('close', () => { resolve(el.returnValue); el.remove(); });
    el.showModal();
  });
}

/**
 * Asks before a destructive or important action; resolves true when confirmed. With `typed`,
 * the confirm button is enabled only once that exact text is typed. Focus starts on Cancel (or
 * the text box), so Enter alone never confirms.
 */
export async function confirmAction({ title, message, confirm = 'Confirm', danger = false, typed }) {
  const ok = h('button', { value: 'ok', class: danger ? 'danger' : 'primary', disabled: Boolean(typed) }, confirm);
  const cancel = h('button', { value: 'cancel', class: 'secondary', autofocus: !typed }, 'Cancel');
  const parts = [h('p', null, message)];
  if (typed) {
    const input = h('input', { type: 'text', autocomplete: 'off', spellcheck: false, autofocus: true });
    input.addEventListener('input', () => { ok.disabled = input.value !== typed; });
    parts.push(field(`Type ${typed} to confirm`, input));
  }
  // The confirm button comes first in the form (the default button), shown on the right.
  return (await dialog(title, parts, [ok, cancel])) === 'ok';
}

/** Asks for one line of text; resolves the text, or null when cancelled. */
export async function promptText({ title, label, value = '', confirm = 'Save' }) {
  const input = h('input', { type: 'text', value, required: true, autofocus: true });
  const answer = await dialog(title, field(label, input), [
    h('button', { value: 'ok', class: 'primary' }, confirm),
    h('button', { value: 'cancel', class: 'secondary', formNoValidate: true }, 'Cancel'),
  ]);
  return answer === 'ok' ? input.value.trim() : null;
}

/** Shows a secret once (an API key) with a copy button. */
export async function showSecret({ title, intro, secret }) {
  const input = h('input', { type: 'text', readOnly: true, value: secret, class: 'secret', 'aria-label': 'The key', spellcheck: false });
  const copied = h('span', { role: 'status', class: 'muted' });
  const copy = h('button', { type: 'button', class: 'secondary', onClick: async () => {
    input.select();
    try {
      await navigator.clipboard.writeText(secret);
      copied.textContent = 'Copied.';
    } catch {
      copied.textContent = document.execCommand('copy') ? 'Copied.' : 'Select the key and copy it.';
    }
  } }, 'Copy');
  await dialog(title, [
    h('p', null, intro),
    h('div', { class: 'copy-row' }, input, copy),
    copied,
  ], [h('button', { value: 'ok', class: 'primary' }, 'I stored it')]);
}

// ---- diffs --------------------------------------------------------------------------------

/** Splits a unified diff into files: [{path, lines, added, removed}]. */
export function parseDiff(text) {
  const files = [];
  let current = null;
  for (const line of (text || '').split('\n')) {
    const header = /^diff --git a\/(.*) b\/(.*)$/.exec(line);
    if (header || !current) {
      current = { path: header ? header[2] : '(changes)', lines: [], added: 0, removed: 0 };
      files.push(current);
      if (header) continue;
    }
    if (line.startsWith('+') && !line.startsWith('+++')) current.added += 1;
    else if (line.startsWith('-') && !line.startsWith('---')) current.removed += 1;
    current.lines.push(line);
  }
  for (const f of files) while (f.lines.length && !f.lines[f.lines.length - 1]) f.lines.pop();
  return files.filter((f) => f.lines.length);
}

function lineClass(line) {
  if (line.startsWith('+++') || line.startsWith('---') || /^(index|new file|deleted file|similarity|rename|old mode|new mode|Binary)/.test(line)) return 'meta';
  if (line.startsWith('@@')) return 'hunk';
  if (line.startsWith('+')) return 'add';
  if (line.startsWith('-')) return 'del';
  return 'ctx';
}

/** A diff: the file list with added/removed counts, then each file's lines coloured. */
export function diffView(text, modifiedFiles) {
  const files = parseDiff(text);
  if (!files.length) {
    const names = (modifiedFiles || []).length ? ` (${modifiedFiles.join(', ')})` : '';
    return emptyState(names ? `No textual changes to show${names}.` : 'This turn changed no files.');
  }
  const list = h('ul', { class: 'diff-files' }, files.map((f) => h('li', null,
    h('code', null, f.path), ' ',
    h('span', { class: 'count add' }, `+${f.added}`), ' ',
    h('span', { class: 'count del' }, `−${f.removed}`))));
  const blocks = files.map((f) => h('section', { class: 'diff-file' },
    h('h4', null, h('code', null, f.path)),
    h('pre', { class: 'diff' }, f.lines.map((line) =>
      h('span', { class: `line ${lineClass(line)}` }, line || ' ')))));
  return h('div', { class: 'diff-view' }, list, blocks);
}
