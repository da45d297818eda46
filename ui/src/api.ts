/**
 * The one way the app talks to the server: the public API under /api, JSON in and out, the
 * credentials as headers. Every failure becomes an ApiFailure carrying the API's own message, so
 * the page can show exactly what the server said.
 */
import { authHeaders, loadCredentials, saveCredentials } from './auth.js';
import { emit } from './events.js';

export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly body: unknown,
  ) {
    super(message);
  }
}

export interface Reply<T = unknown> {
  readonly status: number;
  readonly body: T;
  readonly headers: Headers;
}

type Query = Record<string, string | number | boolean | null | undefined>;

export function apiUrl(path: string, query?: Query): string {
  const clean = path.replace(/^\/+/, '').replace(/\/?$/, '/');
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined && v !== null && v !== '') params.set(k, String(v));
  const qs = params.toString();
  return `/api/${clean}${qs ? `?${qs}` : ''}`;
}

/** Path segments are user data (hostnames, names): always encoded. */
export function seg(s: string | number): string {
  return encodeURIComponent(String(s));
}

function fieldErrors(obj: Record<string, unknown>): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(obj)) {
    const msgs = Array.isArray(v) ? v.map(String).join(' ') : typeof v === 'string' ? v : JSON.stringify(v);
    parts.push(k === 'non_field_errors' ? msgs : `${k}: ${msgs}`);
  }
  return parts.join('; ');
}

/**
 * The API's message for a failed answer: `{"detail"}` bodies, FAILURE envelopes with a string,
 * field errors or a task result (`message`, else `detail`).
 */
export function errorMessage(body: unknown, status: number): string {
  if (body && typeof body === 'object') {
    const b = body as Record<string, unknown>;
    if (typeof b['detail'] === 'string' && !('status' in b)) return b['detail'];
    if (b['detail'] && typeof b['detail'] === 'object') return fieldErrors(b['detail'] as Record<string, unknown>);
    if ('result' in b) {
      const r = b['result'];
      if (typeof r === 'string') return r;
      if (r && typeof r === 'object') {
        const o = r as Record<string, unknown>;
        if (typeof o['message'] === 'string' && o['message'] !== '') return o['message'];
        if (typeof o['detail'] === 'string' && o['detail'] !== '') return o['detail'];
        return fieldErrors(o);
      }
    }
  }
  if (typeof body === 'string' && body.trim() !== '') return body.trim();
  return `The server answered ${status} without a message.`;
}

/** 403 answers that mean the credentials are gone (expired token, revoked key). */
const SIGNED_OUT = new Set(['Authentication credentials were not provided.', 'Invalid token.', 'Invalid API key', 'User inactive or deleted.']);

export async function parseBody(res: Response): Promise<unknown> {
  const text = await res.text();
  if (text === '') return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

export interface RequestOptions {
  readonly query?: Query;
  readonly body?: unknown;
  readonly headers?: Record<string, string>;
  /** Anonymous request (login). */
  readonly anonymous?: boolean;
  /** Checking new credentials: a 403 is the sign-in form's one message, not a sign-out. */
  readonly signingIn?: boolean;
}

/**
 * The answer public/early.js requested before this script ran, when it asked for exactly `url`
 * (once: a later request goes to the server).
 */
function takeEarly(url: string): Promise<Response> | null {
  const w = window as unknown as { __esnapEarly?: { url: string; res: Promise<Response> } };
  const early = w.__esnapEarly;
  if (early?.url !== url) return null;
  delete w.__esnapEarly;
  return early.res;
}

export async function rawRequest(method: string, path: string, opts: RequestOptions = {}): Promise<Response> {
  const early = method === 'GET' && !opts.anonymous ? takeEarly(apiUrl(path, opts.query)) : null;
  if (early) return early;
  const headers: Record<string, string> = { Accept: 'application/json', ...(opts.anonymous ? {} : authHeaders(loadCredentials())), ...opts.headers };
  let body: string | undefined;
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  return fetch(apiUrl(path, opts.query), { method, headers, body, cache: 'no-store', credentials: 'omit' });
}

/** Checks an answer: throws ApiFailure (and signs out on dead credentials) for 4xx/5xx. */
export function check<T>(res: Response, body: unknown, anonymous = false): Reply<T> {
  if (res.status >= 400) {
    const message = errorMessage(body, res.status);
    if (res.status === 403 && !anonymous && SIGNED_OUT.has(message)) {
      saveCredentials(null);
      emit('signed-out', { message });
    }
    throw new ApiFailure(res.status, message, body);
  }
  return { status: res.status, body: body as T, headers: res.headers };
}

export async function request<T = unknown>(method: string, path: string, opts: RequestOptions = {}): Promise<Reply<T>> {
  let res: Response;
  try {
    res = await rawRequest(method, path, opts);
  } catch (err) {
    throw new ApiFailure(0, `The server cannot be reached (${(err as Error).message}).`, null);
  }
  return check<T>(res, await parseBody(res), opts.anonymous === true || opts.signingIn === true);
}

/** GET of a view answering Danube's envelope: the `result`. */
export async function getResult<T>(path: string, query?: Query): Promise<T> {
  const r = await request<{ result: T }>('GET', path, query ? { query } : {});
  return r.body.result;
}
