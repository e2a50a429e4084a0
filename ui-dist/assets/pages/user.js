// One user: profile and limits, suspend/unsuspend/delete, keys (create, rotate, revoke — new
// keys shown once), usage, sessions and recent activity.

import { api } from '../api.js';
import { h, replace, pageHeader, section, kv, badge, field, action, notify, onSubmit, confirmAction, pagedList, arrayPages, time, code, link, guard, jsonBlock } from '../ui.js';
import { STATUS, showKey } from './users.js';

export async function render(main, { params }) {
  const body = h('div', { id: 'user' });
  const path = `/management/v1/users/${encodeURIComponent(params.id)}`;
  const load = () => guard(body, async () => {
    const { data } = await api(path);
    replace(body, view(data, path, load));
    document.title = `${data.display_name} · Codara`;
  });
  main.append(pageHeader('User', link('/dashboard/users', '← All users')), body);
  await load();
}

function view(u, path, reload) {
  const deleted = u.status === 'deleted';
  const name = h('input', { name: 'display_name', value: u.display_name, required: true });
  const concurrency = h('input', { type: 'number', name: 'max_concurrency', min: 1, max: 64, value: u.max_concurrency, required: true });
  const budget = h('input', { type: 'number', name: 'daily_token_budget', min: 1, value: u.daily_token_budget ?? '', placeholder: 'unlimited' });
  const limits = h('form', { class: 'form', id: 'user-limits' },
    field('Display name', name), field('Max concurrent turns', concurrency),
    field('Daily token budget', budget, 'Empty: unlimited'),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', disabled: deleted }, 'Save')));
  onSubmit(limits, async () => {
    await api(path, { method: 'PATCH', body: {
      display_name: name.value.trim(),
      max_concurrency: Number(concurrency.value),
      daily_token_budget: budget.value ? Number(budget.value) : null,
    } });
    notify('Saved.');
    await reload();
  });

  const statusActions = deleted ? [] : [
    u.status === 'suspended'
      ? action('Unsuspend', async () => { await api(`${path}/unsuspend`, { method: 'POST' }); notify('Unsuspended.'); await reload(); })
      : action('Suspend', async () => {
        if (!await confirmAction({ title: 'Suspend user', message: `${u.email} gets 403 on every request until unsuspended.`, confirm: 'Suspend', danger: true })) return;
        await api(`${path}/suspend`, { method: 'POST' });
        notify('Suspended.');
        await reload();
      }),
    action('Delete', async () => {
      if (!await confirmAction({ title: 'Delete user', message: `Delete ${u.email}? Every key is revoked and every session ends; files are kept. A deleted user cannot be restored.`, confirm: 'Delete user', danger: true, typed: u.email })) return;
      await api(path, { method: 'DELETE' });
      notify(`${u.email} deleted.`);
      await reload();
    }, { kind: 'danger' }),
  ];

  const keyLabel = h('input', { name: 'label', placeholder: 'label', autocomplete: 'off' });
  const expires = h('input', { type: 'date', name: 'expires' });
  const newKey = h('form', { class: 'form', id: 'create-key' },
    field('Label', keyLabel), field('Expires', expires, 'Optional'),
    h('div', { class: 'actions' }, h('button', { type: 'submit', disabled: deleted }, 'Create key')));
  onSubmit(newKey, async () => {
    const body = {};
    if (keyLabel.value.trim()) body.label = keyLabel.value.trim();
    if (expires.value) body.expires_at = new Date(`${expires.value}T23:59:59`).toISOString();
    const { data } = await api(`${path}/keys`, { method: 'POST', body });
    newKey.reset();
    await showKey(data.key, u.email);
    await reload();
  });

  const keyActions = (k) => (k.status !== 'active' || deleted ? '—' : h('div', { class: 'actions' },
    action('Rotate', async () => {
      if (!await confirmAction({ title: 'Rotate key', message: `Key ${k.prefix}… stops working now and a new one is issued.`, confirm: 'Rotate', danger: true })) return;
      const { data } = await api(`${path}/keys/${encodeURIComponent(k.id)}/rotate`, { method: 'POST' });
      await showKey(data.key, u.email);
      await reload();
    }),
    action('Revoke', async () => {
      if (!await confirmAction({ title: 'Revoke key', message: `Key ${k.prefix}… stops working now. This cannot be undone.`, confirm: 'Revoke', danger: true })) return;
      await api(`${path}/keys/${encodeURIComponent(k.id)}`, { method: 'DELETE' });
      notify('Key revoked.');
      await reload();
    }, { kind: 'danger' })));

  const totals = u.usage.totals;
  return [
    section(null,
      h('div', { class: 'page-head' },
        h('h2', null, u.display_name, ' ', badge(u.status, STATUS[u.status])),
        h('div', { class: 'actions' }, statusActions)),
      kv([
        ['Id', code(u.id)], ['E-mail', u.email], ['Workspace', code(u.workspace_path)],
        ['Created', time(u.created_at)], ['Created by', u.created_by], ['Updated', time(u.updated_at)],
      ])),
    section('Limits', limits),
    section('API keys', newKey, h('div', { id: 'keys' }, pagedList({
      load: arrayPages(u.keys, 20),
      columns: [
        { label: 'Key', cell: (k) => code(`${k.prefix}…`) },
        { label: 'Label', cell: (k) => k.label || '—' },
        { label: 'Status', cell: (k) => badge(k.status, k.status === 'active' ? 'ok' : 'bad') },
        { label: 'Created', cell: (k) => time(k.created_at) },
        { label: 'Expires', cell: (k) => time(k.expires_at) },
        { label: 'Last used', cell: (k) => time(k.last_used_at) },
        { label: 'Actions', class: 'actions-cell', cell: keyActions },
      ],
      empty: 'No key.',
      caption: 'API keys',
    }))),
    section('Usage', kv([
      ['Turns', totals.requests.toLocaleString()],
      ['Prompt tokens', totals.prompt_tokens.toLocaleString()],
      ['Completion tokens', totals.completion_tokens.toLocaleString()],
      ['Cached tokens', totals.cached_tokens.toLocaleString()],
    ]), u.usage.by_day.length ? pagedList({
      load: arrayPages([...u.usage.by_day].reverse(), 14),
      columns: [
        { label: 'Day (UTC)', cell: (d) => d.day },
        { label: 'Provider', cell: (d) => d.provider },
        { label: 'Turns', cell: (d) => String(d.requests) },
        { label: 'Prompt', cell: (d) => d.prompt_tokens.toLocaleString() },
        { label: 'Completion', cell: (d) => d.completion_tokens.toLocaleString() },
      ],
      caption: 'Usage by day',
    }) : null),
    section('Sessions', h('p', null, link(`/dashboard/sessions?user_id=${encodeURIComponent(u.id)}`, 'Search all sessions of this user')), pagedList({
      load: arrayPages(u.sessions, 10),
      columns: [
        { label: 'Session', cell: (s) => link(`/dashboard/sessions/${encodeURIComponent(s.id)}`, s.client_session_id) },
        { label: 'Provider', cell: (s) => `${s.provider} · ${s.model}` },
        { label: 'Turns', cell: (s) => String(s.turn_count) },
        { label: 'Updated', cell: (s) => time(s.updated_at) },
      ],
      empty: 'No session.',
      caption: 'Sessions',
    })),
    section('Recent activity', pagedList({
      load: arrayPages(u.recent_activity, 10),
      columns: [
        { label: 'When', cell: (e) => time(e.at) },
        { label: 'Actor', cell: (e) => e.actor },
        { label: 'Action', cell: (e) => code(e.action) },
        { label: 'Change', cell: (e) => (e.after ? h('details', null, h('summary', null, 'Details'), jsonBlock({ before: e.before, after: e.after })) : '—') },
      ],
      empty: 'No activity.',
      caption: 'Recent activity',
    })),
  ];
}
