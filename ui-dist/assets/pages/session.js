// One session: its facts, wipe, and every turn (prompt, reply, actions, usage) with the diff of
// the files it changed, loaded when the turn is opened, and revert with confirmation.

import { api } from '../api.js';
import { h, replace, pageHeader, section, kv, badge, action, notify, confirmAction, time, code, link, millis, guard, diffView, loading, errorState, jsonBlock } from '../ui.js';

const STATUS = { ok: 'ok', error: 'bad', stalled: 'bad', timeout: 'bad', interrupted: 'warn' };

export async function render(main, { params, navigate }) {
  const body = h('div', { id: 'session' });
  const path = `/management/v1/sessions/${encodeURIComponent(params.id)}`;
  const load = () => guard(body, async () => {
    const { data } = await api(path);
    replace(body, view(data, path, navigate));
  });
  main.append(pageHeader('Session', link('/dashboard/sessions', '← All sessions')), body);
  await load();
}

function view(s, path, navigate) {
  const wipe = action('Wipe session', async () => {
    if (!await confirmAction({ title: 'Wipe session', message: `Delete session ${s.client_session_id} and its ${s.turn_count} turn(s)? The files in the workspace are kept; the next turn starts a fresh CLI session.`, confirm: 'Wipe', danger: true })) return;
    await api(path, { method: 'DELETE' });
    notify('Session wiped.');
    navigate('/dashboard/sessions');
  }, { kind: 'danger' });
  const last = s.turns.length ? s.turns[s.turns.length - 1].turn_index : 0;
  return [
    section(null,
      h('div', { class: 'page-head' }, h('h2', null, s.client_session_id, s.dirty ? [' ', badge('dirty', 'warn')] : null), h('div', { class: 'actions' }, wipe)),
      kv([
        ['Id', code(s.id)],
        ['User', link(`/dashboard/users/${encodeURIComponent(s.user_id)}`, s.user_id)],
        ['Provider', `${s.provider} · ${s.model}`],
        ['Workspace', code(s.workspace_path)],
        ['CLI session', s.cli_session_id && code(s.cli_session_id)],
        ['Account', s.account_id],
        ['Messages', String(s.message_count)],
        ['Created', time(s.created_at)],
        ['Updated', time(s.updated_at)],
      ])),
    h('h2', null, `Turns (${s.turns.length})`),
    s.turns.length ? s.turns.map((t) => turn(t, path, t.turn_index === last)) : h('p', { class: 'state empty' }, 'No turn.'),
  ];
}

function turn(t, path, open) {
  const files = Array.isArray(t.modified_files) ? t.modified_files : [];
  const diff = h('div', { class: 'turn-diff' });
  let loaded = false;
  const turnPath = `${path}/turns/${t.turn_index}`;
  const loadDiff = async () => {
    replace(diff, loading('Loading the diff…'));
    try {
      const { data } = await api(`${turnPath}/diff`);
      replace(diff, diffView(data.diff, data.modified_files));
      loaded = true;
    } catch (error) {
      if (error.status !== 401) replace(diff, errorState(error, loadDiff));
    }
  };
  const revert = action('Revert to before this turn', async () => {
    if (!await confirmAction({
      title: `Revert turn ${t.turn_index}`,
      message: `Restore the workspace's files to how they were before turn ${t.turn_index}? What this turn${files.length ? ` (${files.join(', ')})` : ''} and any later change did to them is undone. The session and its history stay.`,
      confirm: 'Revert files',
      danger: true,
    })) return;
    await api(`${turnPath}/revert`, { method: 'POST' });
    notify(`Workspace reverted to before turn ${t.turn_index}.`);
    replace(reverted, `Reverted: the workspace's files are back to how they were before this turn (`, time(Date.now()), ').');
  }, { kind: 'danger' });
  const reverted = h('p', { class: 'reverted muted', role: 'status' });
  const details = h('details', { class: 'turn', open, dataset: { turn: String(t.turn_index) } },
    h('summary', null,
      h('strong', null, `Turn ${t.turn_index}`),
      badge(t.status, STATUS[t.status]),
      t.resumed ? badge('resumed', 'info') : null,
      h('span', { class: 'muted' }, `${t.provider} · ${t.model} · ${millis(t.duration_ms)}`),
      files.length ? badge(`${files.length} file(s)`, 'info') : null,
      time(t.created_at)),
    t.error ? h('p', { class: 'state error', role: 'note' }, t.error) : null,
    h('h3', null, 'Prompt sent to the CLI'), h('pre', { class: 'text' }, t.prompt),
    h('h3', null, 'Reply'), h('pre', { class: 'text' }, t.reply || '(empty)'),
    Array.isArray(t.actions) && t.actions.length ? [h('h3', null, 'Actions'), h('ul', null, t.actions.map(actionItem))] : null,
    h('h3', null, 'Files changed'),
    diff,
    h('div', { class: 'actions' }, revert), reverted,
    h('details', null, h('summary', null, 'Usage and ids'), kv([
      ['Turn id', code(t.id)],
      ['Tokens', `${t.usage.prompt_tokens} in · ${t.usage.completion_tokens} out · ${t.usage.cached_tokens} cached`],
      ['Exit code', t.exit_code === null ? null : String(t.exit_code)],
      ['Account', t.account_id],
      ['CLI session', t.cli_session_id && code(t.cli_session_id)],
    ])));
  const ensure = () => { if (details.open && !loaded) loadDiff(); };
  details.addEventListener('toggle', ensure);
  if (open) queueMicrotask(ensure);
  return details;
}

function actionItem(a) {
  switch (a.type) {
    case 'file_change': return h('li', null, `${a.kind} `, code(a.path));
    case 'command': return h('li', null, 'ran ', code(a.command), a.ok ? '' : [' ', badge(`exit ${a.exit_code ?? '?'}`, 'bad')]);
    case 'tool': return h('li', null, `tool ${a.name}`, a.ok ? '' : [' ', badge('failed', 'bad')]);
    default: return h('li', null, jsonBlock(a));
  }
}
