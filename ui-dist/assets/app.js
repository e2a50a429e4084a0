// The dashboard's entry: sign-in, the layout (header, navigation, notices), and the router that
// maps /dashboard/... paths to page modules (loaded on first use).

import { api, clearToken, describe, onUnauthorized, setToken, token, tokenExpiry } from './api.js';
import { h, replace, loading, errorState, timeZone } from './ui.js';

const BASE = '/dashboard';

/** [path pattern, page module, navigation label (top-level pages only)]. */
const ROUTES = [
  ['', 'overview', 'Overview'],
  ['accounts', 'accounts', 'Accounts'],
  ['users', 'users', 'Users'],
  ['users/:id', 'user'],
  ['sessions', 'sessions', 'Sessions'],
  ['sessions/:id', 'session'],
  ['workspaces', 'workspaces', 'Workspaces'],
  ['workspaces/:id', 'workspace'],
  ['playground', 'playground', 'Playground'],
  ['observability', 'observability', 'Observability'],
  ['observability/traces/:id', 'trace'],
  ['audit', 'audit', 'Audit'],
  ['settings', 'settings', 'Settings'],
];

const version = document.querySelector('meta[name="codara-version"]')?.content || '';
const root = document.getElementById('app');
let cleanup = null;
let renderCount = 0;

/** The route of a path under /dashboard: {module, params, section}. */
function match(pathname) {
  const rest = pathname.replace(/^\/dashboard\/?/, '').replace(/\/+$/, '');
  let parts;
  try {
    parts = rest ? rest.split('/').map(decodeURIComponent) : [];
  } catch {
    return null; // a malformed escape: no such page
  }
  for (const [pattern, module] of ROUTES) {
    const want = pattern ? pattern.split('/') : [];
    if (want.length !== parts.length) continue;
    const params = {};
    if (want.every((seg, i) => (seg.startsWith(':') ? ((params[seg.slice(1)] = parts[i]), true) : seg === parts[i]))) {
      return { module, params, section: want[0] || '' };
    }
  }
  return null;
}

/** Goes to `href` (a /dashboard path, with query) without reloading. */
export function navigate(href, { replaceState = false } = {}) {
  if (replaceState) history.replaceState(null, '', href);
  else history.pushState(null, '', href);
  window.scrollTo(0, 0);
  render(true);
}

// ---- sign-in ------------------------------------------------------------------------------

function signIn(message, kind = 'error') {
  if (cleanup) { cleanup(); cleanup = null; }
  document.title = 'Sign in · Codara';
  const secret = h('input', { id: 'secret', name: 'secret', type: 'password', autocomplete: 'current-password', required: true, autofocus: true });
  const status = h('p', { id: 'signin-message', class: `signin-message ${message ? kind : ''}`, role: kind === 'error' ? 'alert' : 'status' }, message || '');
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h('form', { class: 'signin', 'aria-labelledby': 'signin-title' },
    h('h1', { id: 'signin-title' }, 'Codara'),
    h('p', { class: 'muted' }, 'Sign in with the operator secret (API_TOKEN, or the one printed at first start).'),
    h('label', { for: 'secret' }, 'Operator secret'),
    secret, submit, status);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    submit.disabled = true;
    status.className = 'signin-message';
    status.textContent = 'Signing in…';
    try {
      const { data } = await api('/management/v1/auth/token', { method: 'POST', body: { operator_secret: secret.value }, auth: false });
      setToken(data.access_token, data.expires_at);
      render(true);
    } catch (error) {
      status.className = 'signin-message error';
      status.textContent = error.status === 401
        ? 'That secret is not right. Check API_TOKEN (or data/operator.secret) and try again.'
        : describe(error);
      submit.disabled = false;
      secret.select();
    }
  });
  replace(root, h('main', { class: 'signin-page', id: 'main' }, form));
  secret.focus();
}

onUnauthorized(() => {
  if (!token()) return;
  clearToken();
  signIn('Your session has expired or was revoked. Sign in again to continue.');
});

async function signOut() {
  try {
    await api('/management/v1/auth/logout', { method: 'POST' });
  } catch { /* the token is dropped either way */ }
  clearToken();
  signIn('You are signed out.', 'ok');
}

// ---- layout -------------------------------------------------------------------------------

function layout() {
  const navList = h('ul', null, ROUTES.filter((r) => r[2]).map(([path, , label]) =>
    h('li', null, h('a', { href: path ? `${BASE}/${path}` : BASE, dataset: { section: path } }, label))));
  const nav = h('nav', { id: 'nav', 'aria-label': 'Main' }, navList);
  const toggle = h('button', { type: 'button', class: 'menu', 'aria-expanded': 'false', 'aria-controls': 'nav' }, 'Menu');
  toggle.addEventListener('click', () => {
    const open = toggle.getAttribute('aria-expanded') !== 'true';
    toggle.setAttribute('aria-expanded', String(open));
    nav.classList.toggle('open', open);
  });
  nav.addEventListener('click', (event) => {
    if (event.target.closest('a')) { toggle.setAttribute('aria-expanded', 'false'); nav.classList.remove('open'); }
  });
  const header = h('header', { class: 'top' },
    h('a', { class: 'skip', href: '#main' }, 'Skip to content'),
    h('a', { class: 'brand', href: BASE }, 'Codara', version ? h('span', { class: 'version' }, `v${version}`) : null),
    toggle, nav,
    h('button', { type: 'button', class: 'secondary signout', onClick: signOut }, 'Sign out'));
  const main = h('main', { id: 'main', tabindex: '-1' });
  const footer = h('footer', null, `Times are shown in ${timeZone}.`);
  replace(root, header, h('div', { id: 'notices', class: 'notices', 'aria-live': 'polite' }), main, footer);
  return main;
}

// ---- routing ------------------------------------------------------------------------------

/** Renders the page of the current address; `focusTitle` moves focus to its heading. */
async function render(focusTitle = false) {
  if (!token()) { signIn(''); return; }
  const expiry = Date.parse(tokenExpiry() || '');
  if (expiry && expiry <= Date.now()) {
    clearToken();
    signIn('Your session has expired. Sign in again to continue.');
    return;
  }
  if (cleanup) { cleanup(); cleanup = null; }
  const count = ++renderCount;
  let main = document.getElementById('main');
  if (!main || !document.getElementById('nav')) main = layout();
  const route = match(location.pathname);
  for (const a of document.querySelectorAll('#nav a')) {
    const current = route && a.dataset.section === route.section;
    if (current) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  replace(main, loading());
  if (!route) {
    document.title = 'Not found · Codara';
    replace(main, h('h1', { tabindex: '-1', id: 'page-title' }, 'Page not found'),
      h('p', null, 'No dashboard page lives at this address. ', h('a', { href: BASE }, 'Go to the overview.')));
    return;
  }
  try {
    const page = await import(`./pages/${route.module}.js`);
    if (count !== renderCount) return;
    const context = {
      params: route.params,
      query: new URLSearchParams(location.search),
      navigate,
      /** Keeps the current page's filters in the address (shareable, survives reload). */
      setQuery(query) {
        const params = new URLSearchParams();
        for (const [k, v] of Object.entries(query)) if (v) params.set(k, v);
        const text = params.toString();
        history.replaceState(null, '', location.pathname + (text ? `?${text}` : ''));
      },
    };
    replace(main);
    cleanup = (await page.render(main, context)) || null;
  } catch (error) {
    if (error.status === 401) return;
    replace(main, errorState(error, () => render(true)));
  }
  if (count === renderCount && (focusTitle || document.activeElement === document.body)) {
    document.getElementById('page-title')?.focus({ preventScroll: true });
  }
}

// Links inside the app navigate without a reload.
document.addEventListener('click', (event) => {
  const a = event.target.closest('a[href]');
  if (!a || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith(BASE) || a.target || a.hasAttribute('download')) return;
  if (a.classList.contains('skip')) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
});
window.addEventListener('popstate', () => render(true));

if (root) render(); else document.body.append(loading('The dashboard shell is missing its root element.'));
