/**
 * The `ES-STREAM` wait (spec 12.3): the response starts as 201 with `es_stream: True`, single
 * spaces keep it alive, and when the task ends the final status code (only for `ES-STREAM: es`)
 * and the `/task/<id>/status` JSON follow. Completion wakes the stream at once through TaskEvents;
 * the timer only paces keep-alives. After the configured timeout the stream ends with a proper
 * `201` status line and the pending JSON.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AppContext } from '../app-context.js';
import { renderJson } from './envelope.js';

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
  });
  raw.flushHeaders();
  const closed = new AbortController();
  raw.on('close', () => closed.abort());
  const started = Date.now();
  const deadline = started + app.settings.streamTimeoutS * 1000;
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
      if (now >= deadline) {
        finish(raw, request, 201, status.body, withStatusLine);
        return;
      }
      const delay = Math.min(keepAliveDelayMs(now - started), deadline - now);
      let timer: NodeJS.Timeout | undefined;
      const tick = new Promise<'tick'>((resolve) => {
        timer = setTimeout(() => resolve('tick'), delay);
      });
      const what = await Promise.race([woken.then(() => 'woken' as const), tick]);
      clearTimeout(timer);
      if (what === 'tick' && !closed.signal.aborted) raw.write(' ');
    }
  } catch (err) {
    app.log.error({ err, taskId }, 'ES-STREAM wait failed');
    if (!raw.writableEnded) raw.end();
  } finally {
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
