// Workspaces and projects: the inventory with git metadata, creating a project from a template,
// reset (sessions wiped, files kept) and delete from disk, both confirmed.

import { api } from '../api.js';
import { h, replace, pageHeader, section, badge, field, action, notify, onSubmit, confirmAction, pagedList, arrayPages, time, code, link, guard } from '../ui.js';

const TEMPLATES = ['default', 'python', 'docs', 'empty'];

/** Git facts of a workspace in one cell. */
export function git(g) {
  if (!g.is_git_repo) return h('span', { class: 'muted' }, 'not a git repository');
  return h('span', null,
    code(`${g.branch || 'HEAD'}${g.short_commit ? ` @ ${g.short_commit}` : ''}`), ' ',
    g.dirty === true ? badge('uncommitted changes', 'warn') : g.dirty === false ? badge('clean', 'ok') : null,
    g.head_summary ? [h('br'), h('small', null, g.head_summary)] : null,
    g.head_committed_at ? [h('br'), h('small', null, time(g.head_committed_at))] : null,
    g.remote_url ? [h('br'), h('small', null, code(g.remote_url))] : null);
}

/** Reset and delete of one workspace record, confirmed; `done` runs after either. */
export function workspaceActions(w, done) {
  const path = `/management/v1/workspaces/${encodeURIComponent(w.workspace_id)}`;
  const relative = w.relative_path;
  return h('div', { class: 'actions' },
    action('Reset', async () => {
      if (!await confirmAction({ title: 'Reset workspace', message: `Wipe the ${w.bound_sessions_count} session(s) bound to ${relative} or below it? The files stay; the next turn starts fresh.`, confirm: 'Reset', danger: true })) return;
      const { data } = await api(`${path}/reset`, { method: 'POST' });
      notify(`${relative}: ${data.sessions_wiped} session(s) wiped, files kept.`);
      await done('reset');
    }),
    action('Delete', async () => {
      if (!await confirmAction({ title: 'Delete workspace from disk', message: `Delete ${w.path} with every file in it, its snapshots and its ${w.bound_sessions_count} session(s)? This cannot be undone.`, confirm: 'Delete from disk', danger: true, typed: relative })) return;
      await api(path, { method: 'DELETE', body: { confirm: relative } });
      notify(`${relative} deleted.`);
      await done('deleted');
    }, { kind: 'danger' }));
}

export async function render(main) {
  const projects = h('div', { id: 'project-list' });
  const workspaces = h('div', { id: 'workspace-list' });
  const templateSelect = h('select', { name: 'template' }, TEMPLATES.map((t) => h('option', { value: t }, t)));
  const filter = h('input', { type: 'search', name: 'filter', placeholder: 'name or path' });

  const load = () => guard(projects, async () => {
    const [p, w] = await Promise.all([api('/management/v1/projects'), api('/management/v1/workspaces')]);
    const templates = (p.meta && p.meta.templates) || TEMPLATES;
    replace(templateSelect, templates.map((t) => h('option', { value: t }, t)));
    replace(projects, pagedList({
      load: arrayPages(p.data, 20),
      columns: [
        { label: 'Project', cell: (r) => link(`/dashboard/workspaces/${encodeURIComponent(r.workspace_id)}`, r.project ? r.project.name : r.name) },
        { label: 'Template', cell: (r) => (r.project ? r.project.template : '—') },
        { label: 'Provider', cell: (r) => (r.project && r.project.provider) || 'any' },
        { label: 'Git', cell: (r) => git(r.git) },
        { label: 'Sessions', cell: (r) => String(r.bound_sessions_count) },
      ],
      empty: 'No project yet. Create one above.',
      caption: 'Projects',
    }));
    const show = () => {
      const needle = filter.value.trim().toLowerCase();
      const rows = w.data.filter((r) => !needle || `${r.name} ${r.relative_path}`.toLowerCase().includes(needle));
      replace(workspaces, pagedList({
        load: arrayPages(rows, 25),
        columns: [
          { label: 'Workspace', cell: (r) => h('span', null, link(`/dashboard/workspaces/${encodeURIComponent(r.workspace_id)}`, r.relative_path), r.project ? [' ', badge('project', 'info')] : null) },
          { label: 'Git', cell: (r) => git(r.git) },
          { label: 'Sessions', cell: (r) => String(r.bound_sessions_count) },
          { label: 'Actions', class: 'actions-cell', cell: (r) => workspaceActions(r, load) },
        ],
        empty: needle ? 'No workspace matches.' : 'No workspace yet.',
        caption: 'Workspaces',
      }));
    };
    filter.oninput = show;
    show();
  });

  const name = h('input', { name: 'name', required: true, maxLength: 80, placeholder: 'news-pulse', autocomplete: 'off' });
  const provider = h('select', { name: 'provider' }, ['', 'codex', 'gemini', 'opencode'].map((p) => h('option', { value: p }, p || 'any')));
  const form = h('form', { class: 'form', id: 'create-project' },
    field('Name', name, 'Letters, digits, . _ -'), field('Template', templateSelect), field('Default provider', provider),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Create project')));
  onSubmit(form, async () => {
    const body = { name: name.value.trim(), template: templateSelect.value };
    if (provider.value) body.provider = provider.value;
    const { data } = await api('/management/v1/projects', { method: 'POST', body });
    notify(`Project ${data.project ? data.project.name : data.name} created at ${data.relative_path}.`);
    form.reset();
    await load();
  });

  main.append(pageHeader('Workspaces and projects'),
    section('Create a project', form),
    section('Projects', projects),
    section('All workspaces', h('div', { class: 'filters' }, field('Filter', filter)), workspaces));
  await load();
}
