/**
 * One es call on the wire: the request Danube's es would make for an invocation, and the answer
 * read to its end (through an ES-STREAM wait when the server holds it open).
 */
import type { IncomingMessage } from 'node:http';
import type { Invocation } from './args.js';
import { readToken, type EsConfig } from './config.js';
import { ES_VERSION } from './help.js';
import type { Progress } from './progress.js';
import { pyJson } from './pyfmt.js';
import { InterruptedError, type Exchange } from './request.js';
import { StreamReader } from './stream.js';
import { buildUrl } from './url.js';

export interface Call {
  readonly url: string;
  /** In the order sent (and shown by `-d`). */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  readonly body?: string;
  readonly sentToken: boolean;
  readonly sentApiKey: boolean;
}

/**
 * GET-like actions (get, logout) put the parameters in the query string, the others send them as
 * a JSON body. A stored token goes with every action but login; an API key (`-api-key`, else
 * ES_API_KEY) is sent beside it, as Danube's es does: the server prefers the key (spec 3.2).
 */
export function composeCall(inv: Invocation, cfg: EsConfig, note: (line: string) => void): Call {
  // Python requests' header set and order, so that `-d` output matches Danube's es.
  const headers: Array<[string, string]> = [
    ['User-Agent', `es/${ES_VERSION}`],
    ['Accept-Encoding', 'gzip, deflate'],
    ['Accept', 'application/json; indent=4'],
    ['Connection', 'keep-alive'],
    ['Content-Type', 'application/json; indent=4'],
    ['ES-STREAM', 'es'],
  ];
  let sentToken = false;
  if (inv.action !== 'login') {
    const stored = readToken(cfg.tokenStore);
    if (stored.note) note(stored.note);
    if (stored.token) {
      headers.push(['Authorization', `Token ${stored.token}`]);
      sentToken = true;
    }
  }
  const apiKey = inv.apiKeyParam !== undefined ? inv.apiKeyParam : cfg.apiKey;
  if (apiKey) headers.push(['ES-API-KEY', apiKey]);
  const getLike = inv.action === 'get' || inv.action === 'logout';
  const url = buildUrl(cfg.apiUrl, inv.resource, getLike ? inv.params : null);
  const body = getLike ? undefined : pyJson(inv.params);
  if (body !== undefined) headers.push(['Content-Length', String(Buffer.byteLength(body))]);
  return { url, headers, ...(body !== undefined ? { body } : {}), sentToken, sentApiKey: Boolean(apiKey) };
}

export interface Reading {
  /** The final status: the stream's status line when there was one. */
  readonly status: number | string;
  readonly rawText: string;
  /** Why the answer ended early (Ctrl-C, timeout, broken connection); the text is then ''. */
  readonly failure?: Error;
}

export function headerValue(res: IncomingMessage, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}

export async function readAnswer(ex: Exchange, res: IncomingMessage, progress: Progress): Promise<Reading> {
  const httpStatus = res.statusCode ?? 0;
  try {
    if (headerValue(res, 'es_stream')) {
      progress.start(headerValue(res, 'es_task_id') ?? '');
      const reader = new StreamReader();
      const events = { keepAlive: () => progress.keepAlive(), end: () => progress.done() };
      for await (const chunk of ex.chunks(res)) reader.push(chunk, events);
      if (!reader.finished) progress.stop('no answer');
      const r = reader.result(httpStatus);
      return { status: r.status, rawText: r.text };
    }
    const parts: Buffer[] = [];
    for await (const chunk of ex.chunks(res)) parts.push(chunk);
    return { status: httpStatus, rawText: new TextDecoder().decode(Buffer.concat(parts)) };
  } catch (e) {
    // The answer began but did not end: Danube still printed it, with the HTTP status and no text.
    progress.stop(e instanceof InterruptedError ? 'interrupted' : 'connection lost');
    return { status: httpStatus, rawText: '', failure: e as Error };
  } finally {
    ex.close();
  }
}
