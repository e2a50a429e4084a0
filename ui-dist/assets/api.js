// The management API: the operator token in sessionStorage, requests in the `{ok,data,meta}`
// envelope, errors as ApiError with a sentence a person can act on, and SSE streams.

const TOKEN = 'codara.token';
const EXPIRES = 'codara.expires_at';

/** An API failure: HTTP status (0 when the gateway could not be reached), code and message. */
export class ApiError extends Error {
  constructor(status, code, message, requestId) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId || '';
  }
}

let unauthorized = () => {};

/** Registers what happens when the token stops working (401): the sign-in screen. */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

export const token = () => sessionStorage.getItem(TOKEN);
export const tokenExpiry = () => sessionStorage.getItem(EXPIRES);

export function setToken(value, expiresAt) {
  sessionStorage.setItem(TOKEN, value);
  sessionStorage.setItem(EXPIRES, expiresAt || '');
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN);
  sessionStorage.removeItem(EXPIRES);
}

/** `path` with the non-empty entries of `query` as its query string. */
export function withQuery(path, query) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== '') params.set(key, value);
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

async function send(path, { method = 'GET', body, query, signal, auth = true } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const bearer = token();
  if (auth && bearer) headers.Authorization = `Bearer ${bearer}`;
  try {
    return await fetch(withQuery(path, query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: 'no-store',
    });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, 'unreachable', 'The gateway could not be reached.');
  }
}

async function failure(response) {
  const text = await response.text().catch(() => '');
  let body = {};
  try { body = JSON.parse(text); } catch { /* not JSON */ }
  const error = body.error || {};
  const requestId = (body.meta && body.meta.request_id) || response.headers.get('X-Request-Id');
  const message = error.message || response.statusText || `HTTP ${response.status}`;
  const failed = new ApiError(response.status, error.code || 'http_' + response.status, message, requestId);
  const retry = response.headers.get('Retry-After');
  if (retry) failed.retryAfter = Number(retry);
  return failed;
}

/**
 * Calls the management API and returns `{data, meta}`. A 401 (token expired, revoked or missing)
 * returns the dashboard to the sign-in screen.
 */
export async function api(path, options = {}) {
  const response = await send(path, options);
  if (!response.ok) {
    const error = await failure(response);
    if (response.status === 401 && options.auth !== false) unauthorized(error);
    throw error;
  }
  const body = await response.json().catch(() => {
    throw new ApiError(response.status, 'bad_response', 'The gateway sent an answer that is not JSON.');
  });
  return { data: body.data, meta: body.meta || {} };
}

/** The next page's cursor of a list answer, or null. */
export const nextCursor = (meta) => (meta && meta.page && meta.page.has_more && meta.page.next_cursor) || null;

/**
 * POSTs `body` and reads the Server-Sent Events answer, calling `onFrame` with each `data:`
 * JSON frame (the `[DONE]` marker ends it). Errors before the stream starts throw ApiError.
 */
export async function stream(path, body, onFrame, signal) {
  const response = await send(path, { method: 'POST', body, signal });
  if (!response.ok) {
    const error = await failure(response);
    if (response.status === 401) unauthorized(error);
    throw error;
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event
        .split('\n')
        .filter((line) => line.startsWith('data:'))
        .map((line) => line.slice(5).trimStart())
        .join('\n');
      if (!data) continue; // a keep-alive comment
      if (data === '[DONE]') return;
      try {
        onFrame(JSON.parse(data));
      } catch (error) {
        if (error instanceof SyntaxError) continue;
        throw error;
      }
    }
  }
}

/** An error as a sentence for the person at the screen. */
export function describe(error) {
  if (!(error instanceof ApiError)) {
    return `The dashboard hit a problem: ${error && error.message ? error.message : error}`;
  }
  const id = error.requestId ? ` (request id ${error.requestId})` : '';
  switch (true) {
    case error.status === 0:
      return 'The gateway could not be reached. Check that it is running and that this machine can reach it, then try again.';
    case error.status === 401:
      return 'Your sign-in is no longer valid. Sign in again.';
    case error.status === 403:
      return `This is not allowed: ${error.message}`;
    case error.status === 404:
      return `Not found: ${error.message}`;
    case error.status === 409:
      return `This conflicts with the current state: ${error.message}`;
    case error.status === 429:
      return `Too many requests: ${error.message}${error.retryAfter ? ` Try again in ${error.retryAfter} s.` : ''}`;
    case error.status >= 500:
      return `The gateway could not do this: ${error.message}${id}`;
    default:
      return error.message;
  }
}
