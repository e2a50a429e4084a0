// Placeholder dashboard: sign in with the operator secret and show the overview.
(function () {
  const $ = (id) => document.getElementById(id);
  const api = async (path, options = {}) => {
    const token = sessionStorage.getItem('codara_token');
    const headers = Object.assign({ 'Content-Type': 'application/json' }, options.headers || {});
    if (token) headers.Authorization = 'Bearer ' + token;
    const response = await fetch(path, Object.assign({}, options, { headers }));
    const body = await response.json().catch(() => ({}));
    if (response.status === 401) sessionStorage.removeItem('codara_token');
    if (!response.ok) throw new Error((body.error && body.error.message) || response.statusText);
    return body.data;
  };
  const showOverview = async () => {
    const data = await api('/management/v1/overview');
    $('version').textContent = 'v' + data.version;
    const list = $('overview-list');
    list.innerHTML = '';
    const rows = [
      ['Uptime', data.uptime_seconds + ' s'],
      ['Database', data.storage.database_path],
      ['Workspaces', data.workspaces_root],
      ['Providers', data.providers.filter((p) => p.enabled).map((p) => p.name).join(', ')],
    ];
    for (const [k, v] of rows) {
      const dt = document.createElement('dt'); dt.textContent = k;
      const dd = document.createElement('dd'); dd.textContent = v;
      list.append(dt, dd);
    }
    $('login').hidden = true;
    $('overview').hidden = false;
  };
  $('login-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    $('login-error').textContent = '';
    try {
      const data = await api('/management/v1/auth/token', {
        method: 'POST', body: JSON.stringify({ operator_secret: $('secret').value }),
      });
      sessionStorage.setItem('codara_token', data.access_token);
      await showOverview();
    } catch (error) { $('login-error').textContent = error.message; }
  });
  $('logout').addEventListener('click', async () => {
    await api('/management/v1/auth/logout', { method: 'POST' }).catch(() => {});
    sessionStorage.removeItem('codara_token');
    $('overview').hidden = true; $('login').hidden = false;
  });
  if (sessionStorage.getItem('codara_token')) showOverview().catch(() => {});
})();
