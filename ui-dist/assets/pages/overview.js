// Overview: health, counts, running turns, the pool at a glance, the sandbox, warm processes,
// providers and warnings. Refreshes itself every 15 s while shown.

import { api } from '../api.js';
import { h, replace, pageHeader, section, kv, badge, table, emptyState, errorState, loading, time, duration, bytes, code, link, action } from '../ui.js';

export async function render(main) {
  const body = h('div', { id: 'overview' }, loading());
  const refresh = async () => {
    try {
      const [overview, accounts] = await Promise.all([
        api('/management/v1/overview'),
        api('/management/v1/accounts').catch((error) => ({ error })),
      ]);
      replace(body, view(overview.data, accounts));
    } catch (error) {
      if (error.status !== 401) replace(body, errorState(error, refresh));
    }
  };
  main.append(pageHeader('Overview', action('Refresh', refresh)), body);
  await refresh();
  const timer = setInterval(refresh, 15000);
  return () => clearInterval(timer);
}

function view(o, accounts) {
  const counts = o.counts || {};
  const sandbox = o.sandbox || {};
  const warm = o.warm || { processes: [], max_processes: 0, retiring: 0 };
  const running = o.running_turns || [];
  return [
    (o.warnings || []).length
      ? h('section', { 'aria-label': 'Warnings' }, o.warnings.map((w) => h('p', { class: 'warning', role: 'note' }, w)))
      : null,
    h('div', { class: 'grid' },
      section('Health', kv([
        ['Status', badge('up', 'ok')],
        ['Version', o.version],
        ['Uptime', duration(o.uptime_seconds)],
        ['Started', time(o.started_at)],
        ['CLI processes', String(o.running_cli_processes ?? 0)],
      ])),
      section('Counts', kv([
        ['Users', `${counts.users_active ?? 0} active of ${counts.users_total ?? 0}`],
        ['Providers', `${counts.providers_enabled ?? 0} enabled`],
        ['Operator tokens', String(counts.operator_tokens_active ?? 0)],
        ['Running turns', String(running.length)],
      ])),
      section('Pool', pool(accounts)),
      section('Sandbox', kv([
        ['Confinement', sandbox.enforced ? badge('enforced', 'ok') : badge('not enforced', 'bad')],
        ['Mode', sandbox.mode],
        ['Landlock ABI', sandbox.landlock_abi === null || sandbox.landlock_abi === undefined ? null : String(sandbox.landlock_abi)],
        ['Status', sandbox.status],
      ])),
      section('Storage', kv([
        ['Database', o.storage && code(o.storage.database_path)],
        ['Size', bytes(o.storage && o.storage.database_bytes)],
        ['Schema', o.storage && String(o.storage.schema_version)],
        ['Workspaces', code(o.workspaces_root)],
      ]))),
    section('Running turns', running.length
      ? table([
        { label: 'Turn', cell: (t) => code(t.turn_id) },
        { label: 'User', cell: (t) => link(`/dashboard/users/${encodeURIComponent(t.user_id)}`, t.user_id) },
        { label: 'Provider', cell: (t) => `${t.provider} · ${t.model}` },
        { label: 'Conversation', cell: (t) => t.client_session_id || '(stateless)' },
        { label: 'Started', cell: (t) => time(t.started_at) },
      ], running, 'Turns running now')
      : emptyState('No turn is running.')),
    section(`Warm processes (${warm.processes.length} of at most ${warm.max_processes}${warm.retiring ? `, ${warm.retiring} retiring` : ''})`,
      warm.processes.length
        ? table([
          { label: 'Provider', cell: (p) => p.provider },
          { label: 'Owner', cell: (p) => code(p.owner) },
          { label: 'Account', cell: (p) => p.account || '—' },
          { label: 'PID', cell: (p) => String(p.pid) },
          { label: 'State', cell: (p) => (p.busy ? badge(`busy (${p.busy})`, 'info') : badge('idle')) },
          { label: 'Sessions', cell: (p) => String(p.sessions) },
          { label: 'Turns', cell: (p) => String(p.turns) },
          { label: 'Uptime', cell: (p) => duration(p.uptime_seconds) },
          { label: 'Idle', cell: (p) => duration(p.idle_seconds) },
          { label: 'Memory', cell: (p) => bytes(p.rss_bytes) },
        ], warm.processes, 'Warm agent processes')
        : emptyState('No warm agent process is running; one starts with the first turn of a provider in warm mode.')),
    section('Providers', table([
      { label: 'Provider', cell: (p) => h('strong', null, p.name) },
      { label: 'Enabled', cell: (p) => (p.enabled ? badge('yes', 'ok') : badge('no')) },
      { label: 'Mode', cell: (p) => p.mode || '—' },
      { label: 'Default model', cell: (p) => code(p.default_model) },
      { label: 'Binary', cell: (p) => code(p.binary) },
      { label: 'Exec fallbacks', cell: (p) => fallbacks(p.exec_fallbacks) },
    ], o.providers || [], 'Providers')),
  ];
}

function fallbacks(f) {
  if (!f || !f.count) return 'none';
  return h('span', null, `${f.count}`, f.last_reason ? [' · last: ', f.last_reason] : null,
    f.last_at_ms ? [' · ', time(f.last_at_ms)] : null);
}

function pool(accounts) {
  if (accounts.error) return errorState(accounts.error);
  const list = accounts.data || [];
  if (!list.length) return h('div', null, emptyState('No pooled account.'), h('p', null, link('/dashboard/accounts', 'Add one')));
  const by = (status) => list.filter((a) => a.status === status).length;
  const primary = list.find((a) => a.cli_primary);
  return h('div', null, kv([
    ['Accounts', `${list.length} (${list.filter((a) => a.usable).length} usable)`],
    ['Ready', String(by('ready'))],
    ['Cooling down', String(by('cooldown'))],
    ['Needs login', String(by('needs_reauth'))],
    ['CLI-primary', primary ? primary.label || primary.id : 'none'],
  ]), h('p', null, link('/dashboard/accounts', 'Manage accounts')));
}
