/**
 * Rendering of answers: Danube's task envelope `{status, result, task_id}`, bare bodies, the
 * `Accept: application/json; indent=N` pretty-printing and the `ES-STREAM` wait for tasks.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { makeDummyTaskId } from '../domain/taskid.js';
import type { ViewDef, ViewRequest, ViewResult } from './view.js';
import { streamTask } from './stream.js';
import { JsonText } from '../lib/json-text.js';

export function jsonIndent(request: FastifyRequest): number | undefined {
  const accept = request.headers['accept'];
  if (typeof accept !== 'string') return undefined;
  const m = /application\/json\s*;\s*indent=(\d+)/i.exec(accept);
  if (!m) return undefined;
  const n = Number(m[1]);
  return n >= 0 && n <= 8 ? n : undefined;
}

export function renderJson(request: FastifyRequest, body: unknown): string {
  return JSON.stringify(body, null, jsonIndent(request));
}

export async function sendJson(
  reply: FastifyReply,
  request: FastifyRequest,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<void> {
  for (const [k, v] of Object.entries(headers)) void reply.header(k, v);
  await reply.code(status).type('application/json').send(renderJson(request, body));
}

export function dummyTaskId(view: ViewDef | null, vreq: ViewRequest | null): string {
  if (!vreq?.caller) return '';
  const { user, dc } = vreq.caller;
  return makeDummyTaskId(
    { userId: user.id, ownerId: vreq.ownerId ?? user.id, dcBound: view?.dcBound ?? true, dcId: dc.id },
    randomUUID(),
  );
}

export async function sendResult(
  reply: FastifyReply,
  request: FastifyRequest,
  viewCtx: { vreq: ViewRequest; view: ViewDef } | null,
  result: ViewResult,
): Promise<void> {
  switch (result.type) {
    case 'raw':
      await sendJson(reply, request, result.status, result.body, result.headers);
      return;
    case 'sync': {
      const taskId = dummyTaskId(viewCtx?.view ?? null, viewCtx?.vreq ?? null);
      if (result.result instanceof JsonText && jsonIndent(request) === undefined) {
        // Text the database serialised: spliced in, the same bytes JSON.stringify would give around it.
        void reply.header('es_task_id', taskId);
        const body = `{"status":"SUCCESS","result":${result.result.text},"task_id":${JSON.stringify(taskId)}}`;
        await reply.code(result.status ?? 200).type('application/json').send(body);
        return;
      }
      await sendJson(reply, request, result.status ?? 200, { status: 'SUCCESS', result: result.result, task_id: taskId }, {
        es_task_id: taskId,
      });
      return;
    }
    case 'task': {
      const stream = request.headers['es-stream'];
      if (typeof stream === 'string' && stream !== '' && viewCtx) {
        await streamTask(viewCtx.vreq.app, reply, request, result.taskId, stream === 'es');
        return;
      }
      await sendJson(reply, request, 201, { status: 'PENDING', result: null, task_id: result.taskId }, {
        es_task_id: result.taskId,
        es_task_response: 'true',
      });
      return;
    }
  }
}
