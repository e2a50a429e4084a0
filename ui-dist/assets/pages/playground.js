// Playground: a streaming chat run as the Dashboard Admin user, with provider and model pickers;
// each turn shows the files it modified and their diff when it completes.

import { api, stream } from '../api.js';
import { h, replace, pageHeader, section, badge, field, link, diffView, errorState, guard } from '../ui.js';

export async function render(main) {
  const controller = { abort: null };
  const providerSelect = h('select', { name: 'provider', id: 'pg-provider' });
  const modelSelect = h('select', { name: 'model', id: 'pg-model' });
  const transcript = h('div', { class: 'chat', id: 'transcript', 'aria-live': 'polite' });
  const input = h('textarea', { name: 'message', id: 'pg-message', required: true, placeholder: 'Ask the agent to do something in its workspace…' });
  const send = h('button', { type: 'submit', class: 'primary' }, 'Send');
  const stop = h('button', { type: 'button', hidden: true }, 'Stop');
  const label = h('code', { id: 'pg-session' });
  let inventory = [];
  let messages = [];
  const fresh = () => {
    if (controller.abort) controller.abort.abort();
    messages = [];
    label.textContent = `playground-${Date.now().toString(36)}`;
    replace(transcript, h('p', { class: 'state empty' }, 'No message yet. Turns run in the Dashboard Admin user\'s workspace.'));
  };
  const fillModels = () => {
    const p = inventory.find((x) => x.provider === providerSelect.value);
    replace(modelSelect, (p ? p.models : []).map((m) => h('option', { value: m, selected: p && m === p.default_model }, m)));
  };
  providerSelect.addEventListener('change', fillModels);

  const form = h('form', { class: 'composer', id: 'pg-form' },
    field('Message', input, 'Ctrl+Enter sends'),
    h('div', { class: 'actions' }, send, stop));
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) { event.preventDefault(); form.requestSubmit(); }
  });
  stop.addEventListener('click', () => controller.abort && controller.abort.abort());
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text || controller.abort) return;
    if (!messages.length) transcript.replaceChildren();
    messages.push({ role: 'user', content: text });
    transcript.append(bubble('user', 'You', text));
    input.value = '';
    const reply = h('div', { class: 'body' });
    const meta = h('span', null, badge('streaming…', 'info'));
    const result = h('div', { class: 'turn-result' });
    const assistant = h('div', { class: 'message assistant', dataset: { state: 'streaming' } },
      h('div', { class: 'who' }, h('strong', null, `${providerSelect.value} · ${modelSelect.value}`), meta), reply, result);
    transcript.append(assistant);
    controller.abort = new AbortController();
    send.disabled = true;
    stop.hidden = false;
    let final = null;
    let failure = null;
    try {
      await stream('/management/v1/playground/chat', {
        provider: providerSelect.value,
        model: modelSelect.value,
        messages,
        stream: true,
        client_session_id: label.textContent,
      }, (frame) => {
        if (frame.error) { failure = frame; return; }
        const delta = frame.choices && frame.choices[0] && frame.choices[0].delta;
        if (delta && delta.content) reply.append(delta.content);
        if (frame.extensions) final = frame;
      }, controller.abort.signal);
      if (failure) throw Object.assign(new Error(failure.error.message), { frame: failure });
      messages.push({ role: 'assistant', content: reply.textContent });
      assistant.dataset.state = 'done';
      replace(meta, badge('done', 'ok'));
      if (final) replace(result, outcome(final));
    } catch (error) {
      messages.pop();
      assistant.dataset.state = 'error';
      if (error.name === 'AbortError') {
        replace(meta, badge('stopped', 'warn'));
        replace(result, h('p', { class: 'muted' }, 'Stopped watching. The turn finishes on the gateway and is stored in its session.'));
      } else {
        replace(meta, badge('failed', 'bad'));
        replace(result,
          error.frame
            ? h('p', { class: 'state error', role: 'alert', dataset: { state: 'error' } }, `The turn failed: ${error.message}`)
            : errorState(error),
          error.frame && error.frame.extensions ? outcome(error.frame) : null);
      }
    } finally {
      controller.abort = null;
      send.disabled = false;
      stop.hidden = true;
      input.focus();
    }
  });

  const setup = h('div', { id: 'pg-setup' });
  main.append(pageHeader('Playground', h('button', { type: 'button', onClick: fresh }, 'New conversation')),
    section(null, h('p', { class: 'muted' }, 'Runs as the Dashboard Admin user (listed in Users). Conversation: ', label),
      setup, transcript, form));
  fresh();
  await guard(setup, async () => {
    const { data } = await api('/management/v1/providers/models');
    inventory = data.filter((p) => p.enabled);
    replace(providerSelect, inventory.map((p) => h('option', { value: p.provider }, p.runtime_available ? p.provider : `${p.provider} (CLI not found)`)));
    fillModels();
    replace(setup, h('div', { class: 'filters' }, field('Provider', providerSelect), field('Model', modelSelect)));
    if (!inventory.length) replace(setup, h('p', { class: 'state empty' }, 'No provider is enabled.'));
  });
  return () => controller.abort && controller.abort.abort();
}

const bubble = (kind, who, text) => h('div', { class: `message ${kind}` }, h('div', { class: 'who' }, h('strong', null, who)), h('div', { class: 'body' }, text));

/** What a completed turn changed: its files and diff, and where it is stored. */
function outcome(frame) {
  const x = frame.extensions || frame;
  const files = x.modified_files || [];
  const usage = x.usage || frame.usage;
  return h('div', { class: 'outcome' },
    h('p', { class: 'muted' },
      x.session_id ? ['Session ', link(`/dashboard/sessions/${encodeURIComponent(x.session_id)}`, x.session_id)] : null,
      x.resumed ? [' ', badge('resumed', 'info')] : null,
      usage ? ` · ${usage.prompt_tokens} tokens in, ${usage.completion_tokens} out` : null),
    h('h3', null, files.length ? `Modified files (${files.length})` : 'Modified files'),
    diffView(x.diff, files));
}
