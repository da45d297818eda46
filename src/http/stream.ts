/**
 * The `ES-STREAM` wait (spec 12.3): the response starts as 201 with `es_stream: True`, single
 * spaces keep it alive, and when the task ends the final status code (only for `ES-STREAM: es`)
 * and the `/task/<id>/status` JSON follow. Completion wakes the stream at once through TaskEvents;
 * the timer only paces keep-alives. After the configured timeout the stream ends with a proper
 * `201` status line and the pending JSON.
 *
 * A server that stops (SIGTERM) ends its open streams the same way, at once (`endStreams`): a
 * stream may last ESNAP_STREAM_TIMEOUT_S (an hour), far past the stop's grace, and a client cut
 * off mid-stream would see a reset instead of an answer. With the pending `201` it knows the task
 * is still running and asks `/task/<id>/status/` later, as after a timeout.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AppContext } from '../app-context.js';
import type { TaskStatus } from '../tasks/task.types.js';
import { renderJson } from './envelope.js';

interface OpenStreams {
  /** Set by endStreams: a stream that starts afterwards ends at once. */
  stopping: boolean;
  readonly ends: Set<() => void>;
}

/** Per app (the server's context), so test servers in one process stop independently. */
const openStreams = new WeakMap<AppContext, OpenStreams>();

function streamsOf(app: AppContext): OpenStreams {
  let s = openStreams.get(app);
  if (!s) {
    s = { stopping: false, ends: new Set() };
    openStreams.set(app, s);
  }
  return s;
}

/**
 * Server stop: every open ES-STREAM of this app ends now with its task's current answer (the
 * `201` line and the pending JSON while it runs), and streams started from now on end as soon as
 * they begin. Returns how many were open.
 */
export function endStreams(app: AppContext): number {
  const s = streamsOf(app);
  s.stopping = true;
  const n = s.ends.size;
  for (const end of s.ends) end();
  return n;
}

/** Keep-alive pacing as Danube's server did: denser at first, sparser for long tasks. */
export function keepAliveDelayMs(elapsedMs: number): number {
  const s = elapsedMs / 1000;
  if (s < 5) return 1000;
  if (s < 30) return 3000;
  if (s < 60) return 6000;
  if (s < 1200) return 12000;
  return 30000;
}

export async function streamTask(
  app: AppContext,
  reply: FastifyReply,
  request: FastifyRequest,
  taskId: string,
  withStatusLine: boolean,
): Promise<void> {
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(201, {
    ...(reply.getHeaders() as Record<string, string>),
    'content-type': 'application/json',
    es_stream: 'True',
    es_task_id: taskId,
    es_task_response: 'true',
    // nginx buffers proxied responses by default, which would hold back the keep-alive spaces
    // and the final line; this header turns that off for this response only.
    'x-accel-buffering': 'no',
  });
  raw.flushHeaders();
  const closed = new AbortController();
  raw.on('close', () => closed.abort());
  const streams = streamsOf(app);
  let stopped!: () => void;
  const stopping = new Promise<'stop'>((resolve) => (stopped = () => resolve('stop')));
  if (streams.stopping) stopped();
  streams.ends.add(stopped);
  const started = Date.now();
  const deadline = started + app.settings.streamTimeoutS * 1000;
  let stop = streams.stopping;
  try {
    for (;;) {
      // Subscribe before reading the state, so a completion between the two is not missed.
      const woken = app.events.next(taskId, closed.signal);
      const status = await app.tasks.statusOf(taskId);
      if (status.done || closed.signal.aborted) {
        if (!closed.signal.aborted) finish(raw, request, status.httpStatus, status.body, withStatusLine);
        return;
      }
      const now = Date.now();
      // The timeout and a server stop end the stream alike: the task runs on, the client asks later.
      if (now >= deadline || stop) {
        finish(raw, request, 201, status.body, withStatusLine);
        return;
      }
      const delay = Math.min(keepAliveDelayMs(now - started), deadline - now);
      let timer: NodeJS.Timeout | undefined;
      const tick = new Promise<'tick'>((resolve) => {
        timer = setTimeout(() => resolve('tick'), delay);
      });
      const what = await Promise.race([woken.then(() => 'woken' as const), tick, stopping]);
      clearTimeout(timer);
      if (what === 'stop') stop = true;
      if (what === 'tick' && !closed.signal.aborted) raw.write(' ');
    }
  } catch (err) {
    app.log.error({ err, taskId }, 'ES-STREAM wait failed');
    if (!raw.writableEnded) raw.end();
  } finally {
    streams.ends.delete(stopped);
    closed.abort();
  }
}

function finish(
  raw: FastifyReply['raw'],
  request: FastifyRequest,
  httpStatus: number,
  body: unknown,
  withStatusLine: boolean,
): void {
  raw.end(`${withStatusLine ? `${httpStatus}\n` : ''}${renderJson(request, body)}`);
}

/**
 * Waits for a task to end, woken by its completion (no polling), for at most the stream timeout.
 * Null when it is still running then, or when the client went away. For views that answer with
 * the task's result instead of streaming (a disk create: 201 with the disk, or the pending task).
 */
export async function waitForTask(ctx: AppContext, http: FastifyRequest, taskId: string): Promise<TaskStatus | null> {
  const deadline = Date.now() + ctx.settings.streamTimeoutS * 1000;
  const gone = new AbortController();
  const onClose = (): void => gone.abort();
  // The socket, not the request: a request's 'close' fires once its body is read.
  const sock = http.raw.socket;
  sock.once('close', onClose);
  try {
    for (;;) {
      // Subscribe before reading the state, so a completion in between is not missed.
      const woken = ctx.events.next(taskId, gone.signal);
      const status = await ctx.tasks.statusOf(taskId);
      if (status.done) return status;
      const left = deadline - Date.now();
      if (gone.signal.aborted || left <= 0) return null;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([woken, new Promise<void>((resolve) => (timer = setTimeout(resolve, left)))]);
      clearTimeout(timer);
    }
  } finally {
    sock.off('close', onClose);
    gone.abort(); // releases the last subscription
  }
}
