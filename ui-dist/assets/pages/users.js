// Users: the list (paged) and creating a user, whose first API key is shown once.

import { api, withQuery } from '../api.js';
import { h, pageHeader, section, badge, field, notify, onSubmit, pagedList, apiPages, time, link, showSecret } from '../ui.js';

export const STATUS = { active: 'ok', suspended: 'warn', deleted: 'bad' };

/** Shows a newly issued key once. */
export const showKey = (key, who) => showSecret({
  title: 'Copy the API key now',
  intro: `This is the only time the key of ${who} is shown. Store it somewhere safe; the gateway keeps only its hash.`,
  secret: key,
});

export async function render(main, { navigate }) {
  const list = h('div', { id: 'user-list' });
  const reload = () => list.replaceChildren(pagedList({
    load: apiPages((cursor) => api('/management/v1/users', { query: { limit: 25, cursor } })),
    columns: [
      { label: 'Name', cell: (u) => h('span', null, link(`/dashboard/users/${encodeURIComponent(u.id)}`, u.display_name), h('br'), h('small', { class: 'muted' }, u.email)) },
      { label: 'Status', cell: (u) => badge(u.status, STATUS[u.status]) },
      { label: 'Concurrency', cell: (u) => String(u.max_concurrency) },
      { label: 'Daily budget', cell: (u) => (u.daily_token_budget === null ? 'unlimited' : `${u.daily_token_budget.toLocaleString()} tokens`) },
      { label: 'Created', cell: (u) => time(u.created_at) },
    ],
    empty: 'No user yet.',
    caption: 'Users',
  }));

  const email = h('input', { type: 'email', name: 'email', required: true, autocomplete: 'off' });
  const name = h('input', { name: 'display_name', required: true, autocomplete: 'off' });
  const concurrency = h('input', { type: 'number', name: 'max_concurrency', min: 1, max: 64, placeholder: 'default' });
  const budget = h('input', { type: 'number', name: 'daily_token_budget', min: 1, placeholder: 'unlimited' });
  const keyLabel = h('input', { name: 'key_label', placeholder: 'first key', autocomplete: 'off' });
  const form = h('form', { class: 'form', id: 'create-user' },
    field('E-mail', email), field('Display name', name),
    field('Max concurrent turns', concurrency), field('Daily token budget', budget),
    field('Key label', keyLabel),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Create user')));
  onSubmit(form, async () => {
    const body = { email: email.value.trim(), display_name: name.value.trim() };
    if (concurrency.value) body.max_concurrency = Number(concurrency.value);
    if (budget.value) body.daily_token_budget = Number(budget.value);
    if (keyLabel.value.trim()) body.key_label = keyLabel.value.trim();
    const { data } = await api('/management/v1/users', { method: 'POST', body });
    form.reset();
    await showKey(data.api_key.key, data.email);
    notify(`User ${data.email} created.`);
    reload();
  });

  const search = h('input', { type: 'search', name: 'id', placeholder: 'uag_usr_…', autocomplete: 'off' });
  const find = h('form', { class: 'filters', role: 'search' },
    field('Open a user by id', search),
    h('div', null, h('button', { type: 'submit' }, 'Open')));
  find.addEventListener('submit', (event) => {
    event.preventDefault();
    if (search.value.trim()) navigate(withQuery(`/dashboard/users/${encodeURIComponent(search.value.trim())}`));
  });

  main.append(pageHeader('Users'), section('Create a user', form), section('All users', find, list));
  reload();
}
