// Accounts: the Codex pool — state, quota windows with reset countdowns, cooldowns, the
// CLI-primary toggle, add/upload a credential, enable/disable, rename, recover, refresh usage,
// remove.

import { api } from '../api.js';
import { h, onSubmit, replace, pageHeader, section, kv, badge, field, action, notify, confirmAction, promptText, pagedList, arrayPages, time, countdown, code, guard } from '../ui.js';

const STATUS = { ready: 'ok', cooldown: 'warn', needs_reauth: 'bad', error: 'bad' };

export async function render(main) {
  const list = h('div', { id: 'account-list' });
  const load = () => guard(list, async () => {
    const { data } = await api('/management/v1/accounts');
    replace(list, pagedList({
      load: arrayPages(data, 20),
      render: (account) => card(account, load),
      empty: 'No account in the pool yet. Add a Codex login (auth.json) or an API key above.',
    }));
  });
  main.append(
    pageHeader('Accounts',
      action('Refresh usage of all', async () => {
        const { data } = await api('/management/v1/usage/refresh', { method: 'POST' });
        const failed = data.filter((r) => !r.ok);
        notify(failed.length
          ? `Usage refreshed; ${failed.length} failed: ${failed.map((r) => `${r.id}: ${r.error}`).join('; ')}`
          : `Usage refreshed for ${data.length} account(s).`, failed.length ? 'error' : 'ok');
        await load();
      })),
    section('Add an account', addForm(load)),
    list);
  await load();
}

function addForm(reload) {
  const id = h('input', { name: 'id', placeholder: 'codex-main', autocomplete: 'off' });
  const label = h('input', { name: 'label', placeholder: 'Team A', autocomplete: 'off' });
  const type = h('select', { name: 'auth_type' },
    h('option', { value: 'OAUTH_SESSION' }, 'Codex login (auth.json)'),
    h('option', { value: 'API_KEY' }, 'API key'));
  const credential = h('textarea', { name: 'credential', required: true, spellcheck: false, autocomplete: 'off', placeholder: 'Paste auth.json or the key, or choose a file' });
  const file = h('input', { type: 'file', name: 'file', accept: '.json,.txt,application/json,text/plain' });
  file.addEventListener('change', async () => {
    const chosen = file.files && file.files[0];
    if (chosen) credential.value = (await chosen.text()).trim();
  });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Add account');
  const form = h('form', { class: 'form', id: 'add-account' },
    field('Id', id, 'Optional; generated when empty'),
    field('Label', label, 'Optional; the login e-mail when empty'),
    field('Kind', type),
    field('Upload a file', file),
    h('div', { class: 'wide' }, field('Credential', credential, 'Sealed in the vault; never shown again.')),
    h('div', { class: 'actions wide' }, submit));
  onSubmit(form, async () => {
    let value = credential.value.trim();
    if (type.value === 'OAUTH_SESSION') {
      try {
        value = JSON.parse(value);
      } catch (error) {
        notify(`The credential is not valid JSON (an auth.json file is expected): ${error.message}`, 'error');
        return;
      }
    }
    const body = { auth_type: type.value, credential: value };
    if (id.value.trim()) body.id = id.value.trim();
    if (label.value.trim()) body.label = label.value.trim();
    const { data } = await api('/management/v1/accounts', { method: 'POST', body });
    notify(`Account ${data.id} added.`);
    form.reset();
    await reload();
  });
  return form;
}

function window_(name, w) {
  if (!w) return h('div', { class: 'quota' }, h('span', null, `${name}: unknown`));
  return h('div', { class: 'quota' },
    h('span', null, `${name}: ${Math.round(w.used_percent)}% used`, w.resets_at ? [' · resets ', countdown(w.resets_at)] : null),
    h('progress', { max: 100, value: Math.min(100, w.used_percent), 'aria-label': `${name} window used` }));
}

function card(a, reload) {
  const path = `/management/v1/accounts/${encodeURIComponent(a.id)}`;
  const call = (suffix, method, message, body) => async () => {
    await api(path + suffix, { method, body });
    notify(message);
    await reload();
  };
  const actions = [
    a.cli_primary
      ? action('Unset CLI-primary', call('/primary', 'DELETE', `${a.id} is no longer CLI-primary.`))
      : action('Make CLI-primary', call('/primary', 'POST', `${a.id} is now CLI-primary.`)),
    a.enabled
      ? action('Disable', async () => {
        if (!await confirmAction({ title: 'Disable account', message: `Turns stop using ${a.id} until it is enabled again.`, confirm: 'Disable' })) return;
        await call('', 'PATCH', `${a.id} disabled.`, { enabled: false })();
      })
      : action('Enable', call('', 'PATCH', `${a.id} enabled.`, { enabled: true })),
    action('Rename', async () => {
      const name = await promptText({ title: 'Rename account', label: 'Label', value: a.label });
      if (name) await call('', 'PATCH', 'Renamed.', { label: name })();
    }),
    a.status !== 'ready' ? action('Recover', call('/recover', 'POST', `${a.id} is back in rotation.`)) : null,
    action('Refresh usage', async () => {
      const { data } = await api('/management/v1/usage/refresh', { method: 'POST', query: { account_id: a.id } });
      const report = data.find((r) => r.id === a.id);
      notify(report && !report.ok ? `Refresh failed: ${report.error}` : 'Usage refreshed.', report && !report.ok ? 'error' : 'ok');
      await reload();
    }),
    action('Remove', async () => {
      if (!await confirmAction({ title: 'Remove account', message: `Remove ${a.id} (${a.label}) from the pool? Its sealed credential and CLI homes are deleted.`, confirm: 'Remove', danger: true })) return;
      await call('', 'DELETE', `${a.id} removed.`)();
    }, { kind: 'danger' }),
  ];
  return h('article', { class: 'card', dataset: { account: a.id } },
    h('div', { class: 'page-head' },
      h('h2', null, a.label || a.id, ' ', h('span', { class: 'muted' }, `(${a.id})`)),
      h('div', { class: 'actions' },
        badge(a.status.replace('_', ' '), STATUS[a.status] || ''),
        a.cli_primary ? badge('CLI-primary', 'info') : null,
        a.enabled ? null : badge('disabled'),
        a.usable ? badge('usable', 'ok') : badge('not usable', 'bad'))),
    h('div', { class: 'grid' },
      h('div', null, window_('5-hour', a.quota.five_hour), window_('Weekly', a.quota.weekly),
        h('small', { class: 'muted' }, 'Checked ', a.quota.checked_at ? time(a.quota.checked_at) : 'never')),
      kv([
        ['Provider', `${a.provider} · ${a.auth_type}`],
        ['Plan', a.plan],
        ['Cooldown', a.cooldown_until ? h('span', null, 'until ', time(a.cooldown_until), ' (', countdown(a.cooldown_until), ')') : null],
        ['Last error', a.last_error && code(a.last_error)],
        ['Last used', a.last_used_at && time(a.last_used_at)],
        ['Token expires', a.access_token_expires_at && time(a.access_token_expires_at)],
        ['Added', time(a.created_at)],
      ])),
    h('div', { class: 'actions' }, actions));
}
