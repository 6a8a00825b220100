// The chat page of the server (GET /): it speaks only the server's own API, GET /v1/models for
// the model picker and POST /v1/chat/completions with `stream: true`, reading the server-sent
// events from fetch's body stream; Stop aborts that fetch, which cancels the generation on the
// server. The API key, when the user gives one, lives in this browser's localStorage and goes
// out as `Authorization: Bearer KEY`. Model output is untrusted: it reaches the page through
// renderMarkdown (DOM nodes, never HTML) or textContent.
import { renderMarkdown } from './markdown.js';

const STORAGE = { apiKey: 'mistralrs-ui.api-key', settings: 'mistralrs-ui.settings' };
/** The parameters panel: each input's id, the request field it fills, and how its text is read. */
const PARAMETERS = [
  { id: 'temperature', field: 'temperature', parse: Number.parseFloat },
  { id: 'top-p', field: 'top_p', parse: Number.parseFloat },
  { id: 'max-tokens', field: 'max_tokens', parse: (v) => Number.parseInt(v, 10) },
  { id: 'seed', field: 'seed', parse: (v) => Number.parseInt(v, 10) },
];

const $ = (id) => document.getElementById(id);
const ui = {
  model: $('model'),
  status: $('status'),
  conversation: $('conversation'),
  composer: $('composer'),
  prompt: $('prompt'),
  send: $('send'),
  stop: $('stop'),
  newChat: $('new-chat'),
  settingsToggle: $('settings-toggle'),
  settings: $('settings'),
  system: $('system'),
  apiKey: $('api-key'),
  forgetKey: $('forget-key'),
};

/** The conversation sent with each request: `{role, content}` of every finished turn. */
const history = [];
/** The request in flight: Stop aborts it. */
let controller = null;
/** Counts "New chat"es: a reply that was running when one was pressed leaves the new history alone. */
let chatNumber = 0;

// ---- settings: kept in localStorage, read on every request ----

function loadSettings() {
  let saved = {};
  try {
    saved = JSON.parse(localStorage.getItem(STORAGE.settings) ?? '{}') ?? {};
  } catch {
    saved = {};
  }
  for (const { id } of PARAMETERS) if (typeof saved[id] === 'string') $(id).value = saved[id];
  if (typeof saved.system === 'string') ui.system.value = saved.system;
  ui.apiKey.value = localStorage.getItem(STORAGE.apiKey) ?? '';
  return saved;
}

function saveSettings() {
  const settings = { system: ui.system.value, model: ui.model.value };
  for (const { id } of PARAMETERS) settings[id] = $(id).value;
  localStorage.setItem(STORAGE.settings, JSON.stringify(settings));
}

function headers() {
  const key = ui.apiKey.value.trim();
  return { 'Content-Type': 'application/json', ...(key ? { Authorization: `Bearer ${key}` } : {}) };
}

// ---- errors: OpenAI's `{error: {message, type, code}}`, from a response or a stream event ----

class ApiFailure extends Error {
  constructor(error, status) {
    const code = error?.code ?? error?.type;
    super(`${status ? `${status} ` : ''}${code ? `${code}: ` : ''}${error?.message ?? 'request failed'}`);
    this.status = status;
    this.code = error?.code;
  }
}

async function failure(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    if (body?.error) return new ApiFailure(body.error, response.status);
  } catch {}
  return new ApiFailure({ message: text.slice(0, 500) || response.statusText }, response.status);
}

function showStatus(message, isError = false) {
  ui.status.textContent = message;
  ui.status.classList.toggle('error', isError);
  ui.status.hidden = !message;
}

// ---- the model picker ----

async function loadModels(preferred) {
  try {
    const response = await fetch('/v1/models', { headers: headers() });
    if (!response.ok) throw await failure(response);
    const { data } = await response.json();
    const wanted = preferred ?? ui.model.value;
    ui.model.replaceChildren();
    for (const model of data) {
      const option = document.createElement('option');
      option.value = model.id;
      option.textContent = model.status && model.status !== 'loaded' ? `${model.id} (${model.status})` : model.id;
      ui.model.append(option);
    }
    if (data.some((m) => m.id === wanted)) ui.model.value = wanted;
    showStatus('');
  } catch (error) {
    const hint = error instanceof ApiFailure && error.status === 401 ? ' (enter the API key in Settings)' : '';
    showStatus(`Could not list the models: ${error.message}${hint}`, true);
    if (hint) ui.settings.hidden = false;
  }
}

// ---- the conversation ----

/** Whether the view follows the reply as it grows: not while the reader has scrolled up. */
let following = true;

function scrollToEnd(force = false) {
  if (force) following = true;
  if (following) ui.conversation.scrollTop = ui.conversation.scrollHeight;
}

function addMessage(role) {
  const node = document.createElement('article');
  node.className = `message ${role}`;
  const label = document.createElement('div');
  label.className = 'role';
  label.textContent = role === 'user' ? 'You' : 'Assistant';
  const content = document.createElement('div');
  content.className = 'content';
  node.append(label, content);
  ui.conversation.append(node);
  return { node, content };
}

function addUserMessage(text) {
  const { node, content } = addMessage('user');
  content.textContent = text;
  scrollToEnd(true);
  return node;
}

/** The assistant's reply as it streams: its reasoning (collapsible), its text, then a line of metadata. */
function addAssistantMessage() {
  const { node, content } = addMessage('assistant');
  node.dataset.state = 'streaming';
  node.dataset.deltas = '0';
  const reasoning = document.createElement('details');
  reasoning.className = 'reasoning';
  reasoning.open = true;
  reasoning.hidden = true;
  const summary = document.createElement('summary');
  summary.textContent = 'Thinking…';
  const reasoningBody = document.createElement('div');
  reasoningBody.className = 'reasoning-body';
  reasoning.append(summary, reasoningBody);
  let reasoningToggled = false;
  summary.addEventListener('click', () => {
    reasoningToggled = true;
  });
  const meta = document.createElement('div');
  meta.className = 'meta';
  node.insertBefore(reasoning, content);
  node.append(meta);
  content.classList.add('pending');
  return {
    node,
    render(reply) {
      if (reply.reasoning) {
        reasoning.hidden = false;
        reasoningBody.replaceChildren(renderMarkdown(reply.reasoning));
        if (reply.content) {
          summary.textContent = 'Reasoning';
          if (!reasoningToggled) reasoning.open = false;
        }
      }
      content.classList.toggle('pending', !reply.content && !reply.reasoning);
      content.replaceChildren(renderMarkdown(reply.content));
      node.dataset.deltas = String(reply.deltas);
      scrollToEnd();
    },
    finish(state, text) {
      node.dataset.state = state;
      content.classList.remove('pending');
      summary.textContent = 'Reasoning';
      meta.textContent = text;
      meta.classList.toggle('error', state === 'error');
      scrollToEnd();
    },
  };
}

/** The `data:` payloads of a server-sent event stream, a batch per read of the body. */
async function* sseBatches(body, signal) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
      const events = buffer.split('\n\n');
      buffer = events.pop();
      const payloads = [];
      for (const event of events) {
        const data = event
          .split('\n')
          .filter((line) => line.startsWith('data:'))
          .map((line) => line.slice(5).replace(/^ /, ''))
          .join('\n');
        if (data) payloads.push(data);
      }
      if (payloads.length > 0) yield payloads;
    }
  } finally {
    if (signal.aborted) reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

function requestBody() {
  const body = { model: ui.model.value || 'default', messages: [], stream: true, stream_options: { include_usage: true } };
  const system = ui.system.value.trim();
  if (system) body.messages.push({ role: 'system', content: system });
  body.messages.push(...history);
  for (const { id, field, parse } of PARAMETERS) {
    const text = $(id).value.trim();
    if (text === '') continue;
    const value = parse(text);
    if (!Number.isFinite(value)) throw new Error(`${$(id).labels[0]?.textContent ?? id}: "${text}" is not a number`);
    body[field] = value;
  }
  return body;
}

function describeFinish(reply) {
  const parts = [];
  if (reply.usage) parts.push(`${reply.usage.completion_tokens} tokens`);
  if (reply.finishReason === 'length') parts.push('stopped at max_tokens');
  else if (reply.finishReason === 'tool_calls') parts.push('tool call');
  return parts.join(' · ');
}

async function send(text) {
  const chat = chatNumber;
  const userNode = addUserMessage(text);
  history.push({ role: 'user', content: text });
  const view = addAssistantMessage();
  const reply = { content: '', reasoning: '', deltas: 0, finishReason: null, usage: null };
  controller = new AbortController();
  const { signal } = controller;
  setBusy(true);
  let outcome = 'done';
  let note = '';
  try {
    const response = await fetch('/v1/chat/completions', {
      method: 'POST',
      headers: headers(),
      body: JSON.stringify(requestBody()),
      signal,
    });
    if (!response.ok) throw await failure(response);
    let ended = false;
    stream: for await (const batch of sseBatches(response.body, signal)) {
      for (const data of batch) {
        if (data === '[DONE]') {
          ended = true;
          break stream;
        }
        const chunk = JSON.parse(data);
        if (chunk.error) throw new ApiFailure(chunk.error);
        if (chunk.id && !view.node.dataset.id) view.node.dataset.id = chunk.id;
        if (chunk.usage) reply.usage = chunk.usage;
        const choice = chunk.choices?.[0];
        if (!choice) continue;
        if (choice.delta?.reasoning_content) reply.reasoning += choice.delta.reasoning_content;
        if (choice.delta?.content) {
          reply.content += choice.delta.content;
          reply.deltas++;
        }
        if (choice.finish_reason) reply.finishReason = choice.finish_reason;
      }
      view.render(reply);
    }
    // The server ends every stream with [DONE]: without it the connection was cut.
    if (!ended) throw new Error('the connection closed before the reply was complete');
    note = describeFinish(reply);
  } catch (error) {
    if (signal.aborted) {
      outcome = 'stopped';
      note = 'Stopped';
    } else {
      outcome = 'error';
      note = error instanceof Error ? error.message : String(error);
    }
  } finally {
    controller = null;
  }
  view.render(reply);
  view.finish(outcome, note);
  setBusy(false);
  if (chat !== chatNumber) return;
  if (outcome !== 'done' && !reply.content) {
    // Nothing came back: the turn leaves the history; a failed one's text goes back to the box to retry.
    history.pop();
    userNode.classList.add('failed');
    if (outcome === 'error' && !ui.prompt.value) ui.prompt.value = text;
  } else {
    history.push({ role: 'assistant', content: reply.content });
  }
}

function setBusy(busy) {
  ui.send.disabled = busy;
  ui.stop.hidden = !busy;
  ui.send.hidden = busy;
  ui.conversation.setAttribute('aria-busy', String(busy));
  if (!busy) ui.prompt.focus();
}

// ---- wiring ----

ui.composer.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = ui.prompt.value.trim();
  if (!text || controller) return;
  ui.prompt.value = '';
  saveSettings();
  send(text);
});
// Enter sends, Shift+Enter is a new line; Escape stops the reply.
ui.prompt.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.composer.requestSubmit();
  }
});
ui.stop.addEventListener('click', () => controller?.abort());
document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && controller) controller.abort();
});
ui.conversation.addEventListener('scroll', () => {
  const { scrollHeight, scrollTop, clientHeight } = ui.conversation;
  following = scrollHeight - scrollTop - clientHeight < 40;
});
ui.newChat.addEventListener('click', () => {
  controller?.abort();
  chatNumber++;
  history.length = 0;
  ui.conversation.replaceChildren();
  ui.prompt.focus();
});
ui.settingsToggle.addEventListener('click', () => {
  ui.settings.hidden = !ui.settings.hidden;
});
ui.settings.addEventListener('change', saveSettings);
ui.model.addEventListener('change', saveSettings);
ui.apiKey.addEventListener('change', () => {
  const key = ui.apiKey.value.trim();
  if (key) localStorage.setItem(STORAGE.apiKey, key);
  else localStorage.removeItem(STORAGE.apiKey);
  loadModels();
});
ui.forgetKey.addEventListener('click', () => {
  ui.apiKey.value = '';
  localStorage.removeItem(STORAGE.apiKey);
  loadModels();
});

// For tests and the console: the renderer, and a copy of the conversation as it is sent.
window.mistralrsChat = { renderMarkdown, messages: () => structuredClone(history) };

const saved = loadSettings();
setBusy(false);
await loadModels(typeof saved.model === 'string' ? saved.model : undefined);
document.body.dataset.ready = 'true';
