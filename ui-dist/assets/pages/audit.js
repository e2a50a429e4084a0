// Audit: text search with actor, action (exact or a prefix like `user.`), target and time filters,
// kept in the address; paged newest first; each entry opens its before/after states.

import { api } from '../api.js';
import { h, pageHeader, section, field, pagedList, apiPages, time, code, jsonBlock } from '../ui.js';

const FIELDS = [
  ['q', 'Search', 'any text'],
  ['actor', 'Actor', 'operator, system, user:…'],
  ['action', 'Action', 'user.created or user.'],
  ['target_type', 'Target type', 'user, account, workspace…'],
  ['target_id', 'Target id', ''],
];

export async function render(main, { query, setQuery }) {
  const inputs = Object.fromEntries(FIELDS.map(([name, , placeholder]) =>
    [name, h('input', { type: name === 'q' ? 'search' : 'text', name, value: query.get(name) || '', placeholder, autocomplete: 'off' })]));
  const since = h('input', { type: 'date', name: 'since', value: query.get('since') || '' });
  const until = h('input', { type: 'date', name: 'until', value: query.get('until') || '' });
  const list = h('div', { id: 'audit-list' });
  const form = h('form', { class: 'filters', role: 'search', id: 'audit-filters' },
    FIELDS.map(([name, label]) => field(label, inputs[name])),
    field('From (day)', since), field('Until (day)', until),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'primary' }, 'Filter'),
      h('button', { type: 'button', onClick: () => { form.reset(); for (const i of Object.values(inputs)) i.value = ''; since.value = ''; until.value = ''; run(); } }, 'Clear')));
  const run = () => {
    const values = Object.fromEntries(Object.entries(inputs).map(([k, i]) => [k, i.value.trim()]));
    setQuery({ ...values, since: since.value, until: until.value });
    // Days in the browser's zone: from the start of `since` to the end of `until`.
    const bounds = {
      since: since.value ? new Date(`${since.value}T00:00:00`).toISOString() : '',
      until: until.value ? new Date(new Date(`${until.value}T00:00:00`).getTime() + 86400000).toISOString() : '',
    };
    const filtered = Object.values(values).some(Boolean) || since.value || until.value;
    list.replaceChildren(pagedList({
      load: apiPages((cursor) => api('/management/v1/audit', { query: { ...values, ...bounds, limit: 50, cursor } })),
      columns: [
        { label: 'When', cell: (e) => time(e.at) },
        { label: 'Actor', cell: (e) => code(e.actor) },
        { label: 'Action', cell: (e) => code(e.action) },
        { label: 'Target', cell: (e) => h('span', null, e.target_type, ' ', code(e.target_id)) },
        { label: 'Details', cell: (e) => (e.before || e.after
          ? h('details', null, h('summary', null, 'Before / after'), jsonBlock({ before: e.before, after: e.after, request_id: e.request_id }))
          : (e.request_id ? code(e.request_id) : '—')) },
      ],
      empty: filtered ? 'No entry matches these filters.' : 'The audit log is empty.',
      caption: 'Audit entries',
    }));
  };
  form.addEventListener('submit', (event) => { event.preventDefault(); run(); });
  main.append(pageHeader('Audit log'), section(null, form, list));
  run();
}
