/**
 * buildApp: the Fastify application with every view, the JSON parser of Danube's contract and the
 * one error handler. It never listens; `src/bin` does.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { AppContext } from '../app-context.js';
import { ApiError, FailureError } from '../domain/errors.js';
import { registerViews, type ViewDef, type ViewRequest } from './view.js';
import { dummyTaskId, sendJson } from './envelope.js';
import { isDatabaseUnavailable } from '../db/connect-error.js';

/** 503 body while the database cannot be reached (Django REST framework's ServiceUnavailable text). */
export const DB_UNAVAILABLE = 'Service temporarily unavailable, try again later.';

export const BODY_LIMIT = 1024 * 1024;

export interface BuildOptions {
  readonly views: readonly ViewDef[];
  /** Extra routes outside the view system (openapi, health). */
  readonly extra?: (app: FastifyInstance) => void;
  /** Fastify's own logger (pino); its per-request lines go at debug level. */
  readonly logger?: FastifyBaseLogger;
  /** PEM certificate and key: the server speaks HTTPS (HTTP/1.1, same routes). Fastify takes them only at construction. */
  readonly https?: { readonly cert: string; readonly key: string };
}

/**
 * Fastify's two info lines per request would bury the task lines (the audit trail) in journald:
 * one debug line per completed request instead. Errors reach esnap's own error handler.
 */
class DebugRequestLog extends LogController {
  override incomingRequest(): void {}

  override requestCompleted(error: Error | null, request: FastifyRequest, reply: FastifyReply): void {
    const line = { method: request.method, url: request.url, statusCode: reply.statusCode, durationMs: Math.round(reply.elapsedTime) };
    if (error) reply.log.warn({ ...line, err: error }, 'request errored');
    else reply.log.debug(line, 'request');
  }
}

export async function buildApp(ctx: AppContext, opts: BuildOptions): Promise<FastifyInstance> {
  const app = Fastify({
    ...(opts.logger ? { loggerInstance: opts.logger, logController: new DebugRequestLog() } : { logger: false }),
    bodyLimit: BODY_LIMIT,
    routerOptions: { ignoreTrailingSlash: true, ignoreDuplicateSlashes: false, maxParamLength: 1024 },
    // URLs the router cannot even parse (bad encoding, absurdly long segments) are unknown URLs.
    frameworkErrors: (error, request, reply) => {
      const status = error.code === 'FST_ERR_BAD_URL' ? 400 : 404;
      void (reply as unknown as FastifyReply)
        .code(status)
        .type('application/json')
        .send(JSON.stringify({ detail: status === 404 ? 'Not found' : 'Malformed URL' }));
      void request;
    },
    return503OnClosing: true,
    // Typed as Fastify's plain-HTTP instance either way: nothing here touches the server object.
    ...(opts.https ? { https: { cert: opts.https.cert, key: opts.https.key } } : {}),
  });

  app.removeAllContentTypeParsers();
  // JSON is the only parser (spec 3.1); `application/json; indent=4` included.
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') {
      done(null, undefined);
      return;
    }
    try {
      done(null, JSON.parse(text) as unknown);
    } catch (err) {
      done(new ApiError(400, `JSON parse error - ${(err as Error).message}`), undefined);
    }
  });
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (req, body, done) => {
    const len = Buffer.isBuffer(body) ? body.length : String(body).length;
    if (len === 0) {
      done(null, undefined);
      return;
    }
    const type = String(req.headers['content-type'] ?? '').split(';')[0]!.trim();
    done(new ApiError(415, `Unsupported media type "${type}" in request.`), undefined);
  });

  app.setNotFoundHandler(async (request, reply) => {
    await sendJson(reply, request, 404, { detail: 'Not found' });
  });

  app.setErrorHandler(async (error: FastifyError | Error, request, reply) => {
    const viewCtx = (request as FastifyRequest & { esnapView?: { vreq: ViewRequest; view: ViewDef } }).esnapView;
    if (error instanceof FailureError) {
      const taskId = dummyTaskId(viewCtx?.view ?? null, viewCtx?.vreq ?? null);
      await sendJson(reply, request, error.status, { status: 'FAILURE', result: error.result, task_id: taskId }, { es_task_id: taskId });
      return;
    }
    if (error instanceof ApiError) {
      await sendJson(reply, request, error.status, { detail: error.detail }, { ...error.headers, es_task_id: '' });
      return;
    }
    const fe = error as FastifyError;
    if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      await sendJson(reply, request, 413, { detail: 'Request body is too large.' });
      return;
    }
    if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
      await sendJson(reply, request, fe.statusCode, { detail: fe.message });
      return;
    }
    // The database is down or restarting: the request may be sent again (a 500 would say esnap is broken).
    if (isDatabaseUnavailable(error)) {
      ctx.log.warn({ err: error, url: request.url, method: request.method }, 'database unavailable');
      await sendJson(reply, request, 503, { detail: DB_UNAVAILABLE }, { 'retry-after': '1' });
      return;
    }
    // Internals never reach the client.
    ctx.log.error({ err: error, url: request.url, method: request.method }, 'request failed');
    await sendJson(reply, request, 500, { detail: 'Internal server error' });
  });

  registerViews(app, ctx, opts.views);
  opts.extra?.(app);
  await app.ready();
  return app;
}
