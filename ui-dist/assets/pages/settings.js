// Settings and version: the running version with the release check, the effective
// configuration without secrets, and this browser's sign-in.

import { api, tokenExpiry } from '../api.js';
import { h, replace, pageHeader, section, kv, badge, action, table, code, time, guard, timeZone } from '../ui.js';

const list = (items) => (items && items.length ? items.map((x, i) => [i ? ', ' : '', code(String(x))]) : null);
const bool = (value) => (value ? 'yes' : 'no');

export async function render(main) {
  const version = h('div', { id: 'version' });
  const config = h('div', { id: 'config' });
  const showVersion = (data) => {
    const r = data.release_check || {};
    replace(version, kv([
      ['Version', h('strong', null, `${data.name} ${data.version}`)],
      ['Update check', r.status === 'ok'
        ? (r.update_available ? h('span', null, badge('update available', 'warn'), ` ${r.latest_version} `, r.release_url ? h('a', { href: r.release_url, rel: 'noreferrer' }, 'release notes') : null) : badge('up to date', 'ok'))
        : r.status === 'disabled' ? 'disabled ([release].enabled = false)' : `${r.status}${r.error ? `: ${r.error}` : ''}`],
      ['Repository', r.repository],
    ]));
  };
  main.append(pageHeader('Settings and version'),
    section('Version', version, h('div', { class: 'actions' }, action('Check for updates', async () => {
      const { data } = await api('/management/v1/version', { query: { check_updates: 'true' } });
      showVersion(data);
    }))),
    section('This browser', kv([
      ['Signed in until', tokenExpiry() ? time(tokenExpiry()) : null],
      ['Time zone', timeZone],
    ])),
    h('h2', null, 'Effective configuration'),
    h('p', { class: 'muted' }, 'As the server runs it (file, environment and defaults merged). Secrets are never shown.'),
    config);
  await Promise.all([
    guard(version, async () => showVersion((await api('/management/v1/version')).data)),
    guard(config, async () => replace(config, view((await api('/management/v1/config')).data))),
  ]);
}

function view(c) {
  const s = c.server;
  return [
    section('Server', kv([
      ['Config file', c.source ? code(c.source) : 'none (defaults)'],
      ['Listen', code(`${s.host}:${s.port}`)], ['Public URL', s.public_url],
      ['Workers', `${s.workers} (+ queue ${s.queue}), ${s.turn_workers} for turns`],
      ['Warm processes', String(s.max_warm_processes)],
      ['Body limit', `${s.max_body_bytes} bytes, ${s.body_timeout_seconds} s`],
      ['Connections per IP', String(s.max_connections_per_ip)],
      ['Image fetch from private addresses', bool(s.image_fetch_private)],
    ])),
    section('Storage and workspaces', kv([
      ['Data dir', code(c.storage.data_dir)], ['Database', code(c.storage.database_path)],
      ['Workspaces root', code(c.workspace.root)], ['Lock timeout', `${c.workspace.lock_timeout_seconds} s`],
      ['Default template', c.workspace.default_template],
      ['Default max concurrency', String(c.users.default_max_concurrency)],
    ])),
    section('Providers', table([
      { label: 'Provider', cell: (p) => h('strong', null, p.name) },
      { label: 'Enabled', cell: (p) => bool(p.enabled) },
      { label: 'Mode', cell: (p) => `${p.mode} (idle ${p.warm_idle_seconds} s)` },
      { label: 'Binary', cell: (p) => code(p.binary) },
      { label: 'Models', cell: (p) => h('span', null, list(p.models), p.allow_any_model ? ' (any accepted)' : '') },
      { label: 'Timeouts', cell: (p) => `stall ${p.stall_timeout_seconds} s, turn ${p.turn_timeout_seconds} s` },
      { label: 'Env (names)', cell: (p) => list(p.env) || '—' },
      { label: 'Extra args', cell: (p) => list(p.extra_args) || '—' },
    ], c.providers, 'Providers')),
    section('Accounts', kv([
      ['Refresh interval', c.accounts.refresh_interval_seconds ? `${c.accounts.refresh_interval_seconds} s` : 'off'],
      ['Usage endpoints', list(c.accounts.usage_endpoints)],
      ['Token URL', c.accounts.oauth_token_url && code(c.accounts.oauth_token_url)],
      ['Headroom threshold', `${c.accounts.headroom_threshold_percent} %`],
    ])),
    section('Logging and telemetry', kv([
      ['Log level', c.logging.level], ['Log dir', c.logging.root && code(c.logging.root)],
      ['Log retention', `${c.logging.retention_days} days`],
      ['Telemetry', bool(c.telemetry.enabled)], ['Trace dir', c.telemetry.trace_root && code(c.telemetry.trace_root)],
      ['Trace retention', `${c.telemetry.trace_retention_days} days`],
    ])),
    section('Release, channels, sandbox, secrets', kv([
      ['Release check', c.release.enabled ? `on (${c.release.repository || 'no repository'})` : 'off'],
      ['Telegram', c.channels.telegram.enabled ? `on, ${c.channels.telegram.receive_mode}, bots: ${c.channels.telegram.bots.join(', ') || 'none'}` : 'off'],
      ['Sandbox mode', c.sandbox.mode], ['Extra read paths', list(c.sandbox.read_paths)],
      ['Operator secret', c.secrets.operator_secret], ['Master key', c.secrets.master_key],
    ])),
  ];
}
