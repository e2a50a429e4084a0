// Observability: trace roots and log lines searched together by text and time range (quick
// ranges and a custom one), or each alone with its filters; a trace opens as a waterfall.
// A gateway without the traces and logs routes (404) gets a clear "not available" state.

import { api, ApiError, nextCursor } from '../api.js';
import { h, replace, pageHeader, section, badge, field, pagedList, time, code, link, millis, loading, errorState } from '../ui.js';

const RANGES = [['15m', '15 min'], ['1h', '1 hour'], ['24h', '24 hours'], ['7d', '7 days'], ['custom', 'Custom']];
const ENDPOINTS = {
  all: '/management/v1/observability/search',
  traces: '/management/v1/traces',
  logs: '/management/v1/logs',
};
const LEVELS = { error: 'bad', warn: 'warn', info: 'info' };

/** A local `datetime-local` value as RFC 3339, or ''. */
const iso = (local) => (local ? new Date(local).toISOString() : '');
/** An RFC 3339 time as a `datetime-local` value, or ''. */
function local(value) {
  if (!value) return '';
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export async function render(main, { query, setQuery }) {
  let range = query.get('range') || (query.get('since') ? 'custom' : '1h');
  const q = h('input', { type: 'search', name: 'q', value: query.get('q') || '', placeholder: 'route, message, user, trace id…' });
  const kind = h('select', { name: 'kind' }, [['all', 'Traces and logs'], ['traces', 'Traces'], ['logs', 'Logs']]
    .map(([v, t]) => h('option', { value: v, selected: v === (query.get('kind') || 'all') }, t)));
  const status = h('select', { name: 'status' }, [['', 'any'], ['ok', 'ok'], ['error', 'error']]
    .map(([v, t]) => h('option', { value: v, selected: v === (query.get('status') || '') }, t)));
  const provider = h('select', { name: 'provider' }, ['', 'codex', 'gemini', 'opencode']
    .map((v) => h('option', { value: v, selected: v === (query.get('provider') || '') }, v || 'any')));
  const user = h('input', { name: 'user', value: query.get('user') || '', placeholder: 'uag_usr_…', autocomplete: 'off' });
  const route = h('input', { name: 'route', value: query.get('route') || '', placeholder: '/v1/chat/completions', autocomplete: 'off' });
  const minMs = h('input', { type: 'number', name: 'min_ms', min: 0, value: query.get('min_ms') || '', placeholder: 'any' });
  const level = h('select', { name: 'level' }, ['', 'error', 'warn', 'info', 'debug']
    .map((v) => h('option', { value: v, selected: v === (query.get('level') || '') }, v || 'any')));
  const since = h('input', { type: 'datetime-local', name: 'since', value: local(query.get('since')) });
  const until = h('input', { type: 'datetime-local', name: 'until', value: local(query.get('until')) });
  const custom = h('div', { class: 'filters wide', hidden: range !== 'custom' }, field('From', since), field('To', until));
  const rangeButtons = RANGES.map(([value, text]) => h('button', { type: 'button', 'aria-pressed': String(value === range), dataset: { range: value } }, text));
  for (const button of rangeButtons) {
    button.addEventListener('click', () => {
      range = button.dataset.range;
      for (const b of rangeButtons) b.setAttribute('aria-pressed', String(b === button));
      custom.hidden = range !== 'custom';
      if (range !== 'custom') run();
    });
  }
  const traceFields = [field('Trace status', status), field('Provider', provider), field('User', user),
    field('Route', route), field('Slower than (ms)', minMs)];
  const levelField = field('Log level', level);
  const syncFields = () => {
    for (const f of traceFields) f.hidden = kind.value !== 'traces';
    levelField.hidden = kind.value !== 'logs';
  };
  kind.addEventListener('change', syncFields);
  syncFields();
  const results = h('div', { id: 'obs-results' });
  const form = h('form', { class: 'filters', role: 'search', id: 'obs-search' },
    field('Search', q), field('Show', kind), traceFields, levelField,
    h('div', null, h('button', { type: 'submit', class: 'primary' }, 'Search')));
  form.addEventListener('submit', (event) => { event.preventDefault(); run(); });

  async function run() {
    const params = { q: q.value.trim() };
    if (range === 'custom') {
      params.since = iso(since.value);
      params.until = iso(until.value);
    } else {
      params.range = range;
    }
    if (kind.value === 'traces') {
      Object.assign(params, { status: status.value, provider: provider.value, user: user.value.trim(), route: route.value.trim(), min_ms: minMs.value });
    }
    if (kind.value === 'logs') params.level = level.value;
    setQuery({ ...params, kind: kind.value === 'all' ? '' : kind.value, range: range === 'custom' ? '' : range });
    const endpoint = ENDPOINTS[kind.value];
    replace(results, loading('Searching…'));
    let first;
    try {
      first = await api(endpoint, { query: { ...params, limit: 50 } });
    } catch (error) {
      if (error.status === 401) return;
      if (error instanceof ApiError && error.status === 404) {
        replace(results, h('div', { class: 'state empty', dataset: { state: 'unavailable' }, role: 'note' },
          h('p', null, h('strong', null, 'Observability is not available on this gateway.')),
          h('p', null, `It does not serve ${endpoint} (404). Traces and log search come with a build that records them; nothing is wrong with your search.`)));
        return;
      }
      replace(results, errorState(error, run));
      return;
    }
    let pending = first;
    replace(results, pagedList({
      load: async (cursor) => {
        const page = pending || await api(endpoint, { query: { ...params, limit: 50, cursor } });
        pending = null;
        return { items: page.data || [], next: nextCursor(page.meta) };
      },
      render: (item) => (kind.value === 'logs' || item.kind === 'log' ? logLine(item) : traceRow(item)),
      empty: 'Nothing matches in this time range. Widen the range or change the search.',
    }));
  }

  main.append(pageHeader('Observability'),
    section(null,
      h('div', { class: 'ranges', role: 'group', 'aria-label': 'Time range' }, rangeButtons),
      custom, form, results));
  await run();
}

/** One trace root as a result. */
export function traceRow(t) {
  const request = [t.method, t.route].filter(Boolean).join(' ');
  const name = t.name || request || t.trace_id;
  return h('article', { class: 'result', dataset: { trace: t.trace_id } },
    h('div', { class: 'head' },
      badge('trace', 'info'),
      badge(t.status, t.status === 'error' ? 'bad' : 'ok'),
      h('strong', null, link(`/dashboard/observability/traces/${encodeURIComponent(t.trace_id)}`, name)),
      request && request !== name ? h('span', { class: 'muted' }, request) : null,
      t.http_status ? code(String(t.http_status)) : null,
      h('span', null, millis(t.duration_ms))),
    h('small', { class: 'muted' },
      time(t.started_at || t.ts),
      t.provider ? ` · ${t.provider}` : '',
      t.user_id ? ` · ${t.user_id}` : '',
      t.span_count !== undefined ? ` · ${t.span_count} span(s)` : ''));
}

/** One log line as a result. */
export function logLine(l) {
  return h('article', { class: 'result', dataset: { log: l.ts } },
    h('div', { class: 'head' },
      badge('log'),
      badge(l.level, LEVELS[(l.level || '').toLowerCase()] || ''),
      code(l.target || ''),
      h('span', null, l.message)),
    h('small', { class: 'muted' },
      time(l.ts),
      l.request_id ? [' · ', code(l.request_id)] : null,
      l.trace_id ? [' · ', link(`/dashboard/observability/traces/${encodeURIComponent(l.trace_id)}`, 'trace')] : null),
    l.fields && Object.keys(l.fields).length
      ? h('details', null, h('summary', null, 'Fields'), h('pre', { class: 'json' }, JSON.stringify(l.fields, null, 2)))
      : null);
}
