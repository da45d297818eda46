/**
 * One HTTP exchange of es over node:http/https: no redirects followed, no connection reuse, an
 * optional socket-inactivity timeout (ES_TIMEOUT, like `requests`' timeout it also covers the
 * connect and every pause between bytes of the answer, so keep-alive spaces of a long wait reset
 * it), TLS verified unless turned off, and an abort signal for Ctrl-C.
 *
 * Why the failure is remembered: destroying a request surfaces on the response as a generic
 * "aborted" error; the exchange reports the cause it destroyed it with (interrupted, timed out).
 */
import { request as httpRequest, type IncomingMessage, type ClientRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { pipeline, type Readable } from 'node:stream';
import { rootCertificates } from 'node:tls';
import { constants as zlibConstants, createGunzip, createInflate } from 'node:zlib';

export interface HttpSpec {
  readonly method: string;
  readonly url: string;
  /** In the order sent; Content-Length included when there is a body. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  readonly body?: string;
  readonly timeoutS?: number;
  readonly sslVerify: boolean;
  /** PEM text of an extra CA (ES_CA_FILE). */
  readonly ca?: string;
}

/** Ctrl-C (exit 5). */
export class InterruptedError extends Error {
  constructor() {
    super('Request interrupted by user');
  }
}

/** No byte for ES_TIMEOUT seconds (exit 3). */
export class TimeoutError extends Error {
  constructor(url: string, seconds: number) {
    super(`Request to ${url} timed out. (timeout=${seconds})`);
  }
}

export class Exchange {
  private failure: Error | null = null;
  private readonly req: ClientRequest;
  /** Resolves with the status line and headers; the body is read with `chunks()`. */
  readonly response: Promise<IncomingMessage>;

  constructor(spec: HttpSpec, signal: AbortSignal) {
    const url = new URL(spec.url);
    const headers: Record<string, string> = {};
    for (const [k, v] of spec.headers) headers[k] = v;
    const common = {
      method: spec.method,
      headers,
      // A fresh connection per request, closed after it: nothing keeps the process alive.
      agent: false as const,
      ...(spec.timeoutS !== undefined ? { timeout: spec.timeoutS * 1000 } : {}),
    };
    const req =
      url.protocol === 'https:'
        ? httpsRequest(url, {
            ...common,
            rejectUnauthorized: spec.sslVerify,
            ...(spec.ca !== undefined ? { ca: [...rootCertificates, spec.ca] } : {}),
          })
        : httpRequest(url, common);
    this.req = req;
    this.response = new Promise<IncomingMessage>((resolve, reject) => {
      req.once('response', resolve);
      req.once('error', (err) => reject(this.failure ?? err));
    });
    // Unhandled if the response came first and the body is never read: keep it quiet.
    this.response.catch(() => undefined);
    req.on('timeout', () => this.fail(new TimeoutError(spec.url, spec.timeoutS ?? 0)));
    const onAbort = (): void => this.fail(new InterruptedError());
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    req.once('close', () => signal.removeEventListener('abort', onAbort));
    req.end(spec.body);
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.req.destroy(err);
  }

  /**
   * The body, chunk by chunk, decompressed (es asks for gzip and deflate, as `requests` does);
   * throws the cause when the exchange failed half-way.
   */
  async *chunks(res: IncomingMessage): AsyncGenerator<Buffer> {
    const encoding = String(res.headers['content-encoding'] ?? '').trim().toLowerCase();
    const source: Readable =
      encoding === 'gzip' || encoding === 'x-gzip'
        ? pipeline(res, createGunzip({ flush: zlibConstants.Z_SYNC_FLUSH }), () => undefined)
        : encoding === 'deflate'
          ? pipeline(res, createInflate({ flush: zlibConstants.Z_SYNC_FLUSH }), () => undefined)
          : res;
    try {
      for await (const chunk of source) yield chunk as Buffer;
    } catch (err) {
      throw this.failure ?? err;
    }
    if (this.failure) throw this.failure;
    if (!res.complete) throw new Error('Connection broken: the answer ended early');
  }

  /** Closes the connection (after the answer, or when giving up on it). */
  close(): void {
    this.req.destroy();
  }
}

/**
 * Response headers as `requests` shows them in `-d` output: the server's spelling, repeated
 * headers joined with ", ".
 */
export function displayHeaders(raw: readonly string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const index = new Map<string, number>();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const at = index.get(name.toLowerCase());
    if (at === undefined) {
      index.set(name.toLowerCase(), out.length);
      out.push([name, value]);
    } else out[at] = [out[at]![0], `${out[at]![1]}, ${value}`];
  }
  return out;
}
