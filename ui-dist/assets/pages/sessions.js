// Sessions: filter by text, user and provider (kept in the address); paged newest first.

import { api } from '../api.js';
import { h, pageHeader, section, badge, field, pagedList, apiPages, time, code, link } from '../ui.js';

export async function render(main, { query, setQuery }) {
  const q = h('input', { type: 'search', name: 'q', value: query.get('q') || '', placeholder: 'label, id, path, model' });
  const user = h('input', { name: 'user_id', value: query.get('user_id') || '', placeholder: 'uag_usr_…', autocomplete: 'off' });
  const provider = h('select', { name: 'provider' },
    ['', 'codex', 'gemini', 'opencode'].map((p) => h('option', { value: p, selected: p === (query.get('provider') || '') }, p || 'any')));
  const list = h('div', { id: 'session-list' });
  const filters = h('form', { class: 'filters', role: 'search', id: 'session-filters' },
    field('Search', q), field('User id', user), field('Provider', provider),
    h('div', null, h('button', { type: 'submit', class: 'primary' }, 'Filter')));
  const run = () => {
    const values = { q: q.value.trim(), user_id: user.value.trim(), provider: provider.value };
    setQuery(values);
    list.replaceChildren(pagedList({
      load: apiPages((cursor) => api('/management/v1/sessions', { query: { ...values, limit: 25, cursor } })),
      columns: [
        { label: 'Conversation', cell: (s) => h('span', null, link(`/dashboard/sessions/${encodeURIComponent(s.id)}`, s.client_session_id), h('br'), h('small', { class: 'muted' }, s.id)) },
        { label: 'User', cell: (s) => link(`/dashboard/users/${encodeURIComponent(s.user_id)}`, s.user_id) },
        { label: 'Provider', cell: (s) => `${s.provider} · ${s.model}` },
        { label: 'Workspace', cell: (s) => code(s.workspace_path) },
        { label: 'Turns', cell: (s) => h('span', null, String(s.turn_count), s.dirty ? [' ', badge('dirty', 'warn')] : null) },
        { label: 'Updated', cell: (s) => time(s.updated_at) },
      ],
      empty: values.q || values.user_id || values.provider ? 'No session matches these filters.' : 'No session yet: run a turn (the Playground is one way).',
      caption: 'Sessions',
    }));
  };
  filters.addEventListener('submit', (event) => { event.preventDefault(); run(); });
  main.append(pageHeader('Sessions'), section(null, filters, list));
  run();
}
