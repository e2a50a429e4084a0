// One trace: its root, its spans as a waterfall (bars placed by offset and duration; a row opens
// its attributes), and the log lines it wrote.

import { api } from '../api.js';
import { h, replace, pageHeader, section, kv, badge, time, code, link, millis, guard, emptyState, jsonBlock } from '../ui.js';
import { logLine } from './observability.js';

export async function render(main, { params }) {
  const body = h('div', { id: 'trace' });
  main.append(pageHeader('Trace', link('/dashboard/observability', '← Observability')), body);
  await guard(body, async () => {
    const { data } = await api(`/management/v1/traces/${encodeURIComponent(params.id)}`);
    replace(body, view(data));
  });
}

function view(t) {
  const root = t.root || {};
  const spans = t.spans || [];
  return [
    section(null,
      h('div', { class: 'page-head' }, h('h2', null, root.name || t.trace_id), badge(root.status || 'unknown', root.status === 'error' ? 'bad' : 'ok')),
      kv([
        ['Trace id', code(t.trace_id)],
        ['Request', [root.method, root.route].filter(Boolean).join(' ') || null],
        ['HTTP status', root.http_status ? String(root.http_status) : null],
        ['Provider', root.provider],
        ['User', root.user_id],
        ['Started', time(root.started_at)],
        ['Duration', millis(root.duration_ms)],
      ])),
    section(`Timeline (${spans.length} span${spans.length === 1 ? '' : 's'})`, spans.length ? waterfall(spans, root.duration_ms) : emptyState('This trace has no spans.')),
    section('Logs', (t.logs || []).length ? h('div', { class: 'chat' }, t.logs.map(logLine)) : emptyState('No log line belongs to this trace.')),
  ];
}

/** Spans ordered by start, indented by depth, each bar placed on a shared time axis. */
export function waterfall(spans, rootDuration) {
  const byId = new Map(spans.map((s) => [s.span_id, s]));
  const depth = (s) => {
    let d = 0;
    for (let p = byId.get(s.parent_id); p && d < 32; p = byId.get(p.parent_id)) d += 1;
    return d;
  };
  const total = Math.max(rootDuration || 0, ...spans.map((s) => (s.offset_ms || 0) + (s.duration_ms || 0)), 1);
  const ordered = [...spans].sort((a, b) => (a.offset_ms || 0) - (b.offset_ms || 0));
  return h('div', { class: 'waterfall', role: 'list', 'aria-label': `Spans over ${millis(total)}` }, ordered.map((s) => {
    const bar = h('span', { class: `span-bar ${s.status === 'error' ? 'error' : ''}` });
    // Placement through the CSSOM (the CSP forbids style attributes, not this).
    bar.style.left = `${((s.offset_ms || 0) / total) * 100}%`;
    bar.style.width = `${Math.max(((s.duration_ms || 0) / total) * 100, 0.4)}%`;
    const name = h('span', { class: 'span-name', title: s.name }, `${'· '.repeat(depth(s))}${s.name}`);
    name.style.paddingLeft = `${depth(s) * 0.6}rem`;
    const attributes = h('div', { class: 'span-attributes', hidden: true },
      kv([['Span id', code(s.span_id)], ['Started', time(s.started_at)], ['Offset', millis(s.offset_ms)], ['Status', s.status]]),
      s.attributes && Object.keys(s.attributes).length ? jsonBlock(s.attributes) : null);
    const row = h('button', { type: 'button', class: 'span-row', 'aria-expanded': 'false', dataset: { span: s.span_id } },
      name, h('span', { class: 'span-track', 'aria-hidden': 'true' }, bar), h('span', { class: 'span-ms' }, millis(s.duration_ms)));
    row.addEventListener('click', () => {
      attributes.hidden = !attributes.hidden;
      row.setAttribute('aria-expanded', String(!attributes.hidden));
    });
    return h('div', { role: 'listitem' }, row, attributes);
  }));
}
