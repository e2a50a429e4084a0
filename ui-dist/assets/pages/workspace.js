// One workspace: its record (path, git metadata, project) and the sessions bound to it or
// below it, with reset and delete.

import { api } from '../api.js';
import { h, replace, pageHeader, section, kv, badge, pagedList, arrayPages, time, code, link, guard } from '../ui.js';
import { git, workspaceActions } from './workspaces.js';

export async function render(main, { params, navigate }) {
  const body = h('div', { id: 'workspace' });
  const load = () => guard(body, async () => {
    const { data } = await api(`/management/v1/workspaces/${encodeURIComponent(params.id)}`);
    replace(body, view(data, async (what) => (what === 'deleted' ? navigate('/dashboard/workspaces') : load())));
  });
  main.append(pageHeader('Workspace', link('/dashboard/workspaces', '← All workspaces')), body);
  await load();
}

function view(w, done) {
  const p = w.project;
  return [
    section(null,
      h('div', { class: 'page-head' }, h('h2', null, w.relative_path, p ? [' ', badge('project', 'info')] : null), workspaceActions(w, done)),
      kv([
        ['Path', code(w.path)],
        ['Id', code(w.workspace_id)],
        ['Git', git(w.git)],
        ['Sessions', String(w.bound_sessions_count)],
        p && ['Project', `${p.name} · template ${p.template}${p.provider ? ` · ${p.provider}` : ''}`],
        p && ['Project created', p.created_at ? time(p.created_at) : null],
        p && ['Metadata', code(p.metadata_path)],
      ])),
    section('Sessions', pagedList({
      load: arrayPages(w.sessions, 20),
      columns: [
        { label: 'Conversation', cell: (s) => link(`/dashboard/sessions/${encodeURIComponent(s.id)}`, s.client_session_id) },
        { label: 'User', cell: (s) => link(`/dashboard/users/${encodeURIComponent(s.user_id)}`, s.user_id) },
        { label: 'Provider', cell: (s) => `${s.provider} · ${s.model}` },
        { label: 'Turns', cell: (s) => String(s.turn_count) },
        { label: 'Updated', cell: (s) => time(s.updated_at) },
      ],
      empty: 'No session is bound to this workspace.',
      caption: 'Sessions',
    })),
  ];
}
