/**
 * Danube's "views": one path, a set of methods, each method a handler. A view answers 405 for a
 * method it lacks and OPTIONS with its description; DC-bound views are also reachable under
 * `/api/dc/<dc>/…`. Handlers get validated-at-the-edge input (`data`: the query string for GET, the
 * JSON body otherwise) and return a `ViewResult`; thrown ApiError/FailureError become answers.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AppContext } from '../app-context.js';
import type { Caller } from '../accounts/caller.js';
import { authenticate, resolveDc } from './auth.js';
import { sendResult } from './envelope.js';
import { waitForTask } from './stream.js';
import type { TaskStatus } from '../tasks/task.types.js';
import { ApiError } from '../domain/errors.js';

export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';
export const METHODS: readonly Method[] = ['GET', 'POST', 'PUT', 'DELETE'];

export type ViewResult =
  | { readonly type: 'sync'; readonly result: unknown; readonly status?: number }
  | { readonly type: 'task'; readonly taskId: string }
  | { readonly type: 'raw'; readonly status: number; readonly body: unknown; readonly headers?: Record<string, string> };

export interface ViewRequest {
  readonly method: Method;
  readonly params: Readonly<Record<string, string>>;
  /** Query string (GET) or JSON body (other methods); always an object. */
  readonly data: Readonly<Record<string, unknown>>;
  /** True when the JSON body was not an object (Danube: `non_field_errors: ["Invalid data"]`). */
  readonly invalidBody: boolean;
  readonly caller: Caller;
  readonly app: AppContext;
  readonly http: FastifyRequest;
  /** Waits for a task to end, at most the stream timeout; null if it still runs then or the client left. */
  waitForTask(taskId: string): Promise<TaskStatus | null>;
  /** Owner of the object acted on, for dummy task ids; handlers set it after a VM lookup. */
  ownerId: number | null;
}

export type Handler = (req: ViewRequest) => Promise<ViewResult>;

/** What a view's `fastGet` needs of the request. */
export interface FastRequest {
  readonly app: AppContext;
  readonly http: FastifyRequest;
  readonly params: Readonly<Record<string, string>>;
  readonly data: Readonly<Record<string, unknown>>;
  /** The DC the request names (`dc` parameter, else the `/api/dc/<dc>/` prefix), if any. */
  readonly dcName: string | undefined;
}

/**
 * A fast path's answer: the caller it resolved (for the `es_username`/`es_dc` headers and the
 * dummy task id), and the result or the error the handler would have thrown after resolving it.
 */
export interface FastAnswer {
  readonly caller: Caller;
  readonly ownerId: number | null;
  readonly result: ViewResult | ApiError;
}

export interface ViewDef {
  /** Path under /api without the leading /api, e.g. `/vm/:hostname/snapshot`. */
  readonly path: string;
  readonly name: string;
  readonly description: string;
  /** DC-bound views are also mounted under `/api/dc/:dc/…` and honour the `dc` parameter. */
  readonly dcBound: boolean;
  /** Public views need no credentials (login). */
  readonly public?: boolean;
  readonly methods: Partial<Record<Method, Handler>>;
  /**
   * GET in fewer round trips (the snapshot list, issue 17): authentication, the DC and the handler's
   * work together. It throws what `authenticate`/`resolveDc` throw, and answers exactly as the
   * general path would; `null` when it does not apply to the request (the general path runs).
   */
  readonly fastGet?: (req: FastRequest) => Promise<FastAnswer | null>;
}

function containsNul(v: unknown, depth = 0): boolean {
  if (typeof v === 'string') return v.includes('\u0000');
  if (depth > 32 || v === null || typeof v !== 'object') return false;
  const entries = Array.isArray(v) ? v : Object.entries(v).flat();
  return entries.some((x) => containsNul(x, depth + 1));
}

function allowHeader(view: ViewDef): string {
  return [...Object.keys(view.methods), 'OPTIONS'].join(', ');
}

export function registerViews(app: FastifyInstance, ctx: AppContext, views: readonly ViewDef[]): void {
  for (const view of views) {
    const handler = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
      await dispatch(ctx, view, request, reply);
    };
    const route = { method: ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH'], handler } as const;
    app.route({ ...route, method: [...route.method], url: `/api${view.path}` });
    if (view.dcBound) app.route({ ...route, method: [...route.method], url: `/api/dc/:dcPrefix${view.path}` });
  }
}

async function dispatch(ctx: AppContext, view: ViewDef, request: FastifyRequest, reply: FastifyReply): Promise<void> {
  void reply.header('Allow', allowHeader(view));
  void reply.header('es_version', '4.6');
  const method = (request.method === 'HEAD' ? 'GET' : request.method) as Method | 'OPTIONS' | 'PATCH';
  if (method === 'OPTIONS') {
    await sendResult(reply, request, null, {
      type: 'raw',
      status: 200,
      body: { name: view.name, description: view.description, renders: ['application/json'], parses: ['application/json'] },
    });
    return;
  }
  const handler = (view.methods as Record<string, Handler | undefined>)[method];
  if (!handler) {
    throw new ApiError(405, `Method "${request.method}" not allowed.`);
  }
  const params = { ...(request.params as Record<string, string>) };
  const rawData: unknown = method === 'GET' ? request.query : request.body;
  const invalidBody = rawData !== undefined && rawData !== null && (typeof rawData !== 'object' || Array.isArray(rawData));
  const data = !invalidBody && rawData && typeof rawData === 'object' ? (rawData as Record<string, unknown>) : {};
  // PostgreSQL text cannot hold NUL; refuse it once here instead of letting a query fail deep down.
  if (containsNul(params) || containsNul(data)) throw new ApiError(400, 'Invalid data: NUL characters are not allowed.');
  const dcName = view.dcBound ? (typeof data['dc'] === 'string' && data['dc'] !== '' ? data['dc'] : params['dcPrefix']) : undefined;
  const fast = method === 'GET' && view.fastGet ? await view.fastGet({ app: ctx, http: request, params, data, dcName }) : null;
  const caller = fast || view.public ? null : await authenticate(ctx, request);
  const resolved = fast ? fast.caller : caller ? await resolveDc(ctx, caller, dcName, view.dcBound) : null;
  if (resolved) {
    void reply.header('es_username', resolved.user.username);
    void reply.header('es_dc', resolved.dc.name);
  }
  const vreq: ViewRequest = {
    method: method as Method,
    params,
    data,
    invalidBody,
    caller: resolved as Caller,
    app: ctx,
    http: request,
    waitForTask: (taskId) => waitForTask(ctx, request, taskId),
    ownerId: null,
  };
  // Errors thrown by the handler are rendered by the app's error handler, which reads the
  // request's view context for dummy task ids.
  (request as FastifyRequest & { esnapView?: { vreq: ViewRequest; view: ViewDef } }).esnapView = { vreq, view };
  if (fast) vreq.ownerId = fast.ownerId;
  if (fast?.result instanceof ApiError) throw fast.result;
  const result = fast ? (fast.result as ViewResult) : await handler(vreq);
  await sendResult(reply, request, { vreq, view }, result);
}
