/**
 * Tasks started from this page, followed to their end. A task-creating request is sent with
 * `ES-STREAM: es`: its headers (201, `es_task_id`) arrive at once, the body stays open and ends
 * with the final status line and the `/task/<id>/status` JSON. So the page learns the end the
 * moment the server does, and reports success only from that final status.
 *
 * Browsers keep about six connections per server; each open stream holds one. Beyond
 * MAX_STREAMS a task is submitted without the header and followed on `/task/<id>/status/`.
 */
import { ApiFailure, check, errorMessage, parseBody, rawRequest, seg } from './api.js';
import { emit, on } from './events.js';

export type TaskState = 'PENDING' | 'STARTED' | 'SUCCESS' | 'FAILURE' | 'REVOKED';

export interface TrackedTask {
  readonly id: string;
  readonly label: string;
  readonly hostname: string | null;
  state: TaskState;
  message: string;
  readonly started: number;
  ended: number | null;
}

/** Outcome of an action: a synchronous answer, or a task that has ended. */
export type Outcome =
  | { readonly kind: 'sync'; readonly result: unknown }
  | { readonly kind: 'task'; readonly id: string; readonly ok: boolean; readonly state: TaskState; readonly message: string; readonly result: unknown };

const MAX_STREAMS = 3;
const FOLLOW_INTERVAL_MS = 1000;
const KEEP = 20;

let streams = 0;
const tracked: TrackedTask[] = [];

export function trackedTasks(): readonly TrackedTask[] {
  return tracked;
}

function track(t: TrackedTask): void {
  tracked.unshift(t);
  if (tracked.length > KEEP) tracked.length = KEEP;
  emit('tracker-changed', null);
}

function finish(t: TrackedTask, state: TaskState, message: string): void {
  t.state = state;
  t.message = message;
  t.ended = Date.now();
  emit('tracker-changed', null);
  emit('task-ended', { id: t.id, hostname: t.hostname });
}

export function clearFinished(): void {
  for (let i = tracked.length - 1; i >= 0; i--) if (tracked[i]!.ended !== null) tracked.splice(i, 1);
  emit('tracker-changed', null);
}

interface StatusBody {
  readonly status: TaskState;
  readonly result: unknown;
}

/** Splits a finished ES-STREAM body: keep-alive spaces, `<http status>\n`, then the status JSON. */
export function parseStream(text: string): { httpStatus: number; body: StatusBody } | null {
  const trimmed = text.replace(/^\s+/, '');
  const nl = trimmed.indexOf('\n');
  if (nl < 0) return null;
  const httpStatus = Number(trimmed.slice(0, nl));
  try {
    return { httpStatus, body: JSON.parse(trimmed.slice(nl + 1)) as StatusBody };
  } catch {
    return null;
  }
}

function successMessage(result: unknown): string {
  if (result && typeof result === 'object' && typeof (result as { message?: unknown }).message === 'string') {
    return (result as { message: string }).message;
  }
  return 'Done';
}

function outcomeOf(t: TrackedTask, body: StatusBody, httpStatus: number): Outcome {
  const ok = body.status === 'SUCCESS';
  const message = ok ? successMessage(body.result) : errorMessage(body, httpStatus);
  finish(t, body.status, message);
  return { kind: 'task', id: t.id, ok, state: body.status, message, result: body.result };
}

/** Follows a task on its status endpoint until it ends (when no stream carries it). */
async function follow(t: TrackedTask): Promise<Outcome> {
  for (;;) {
    const res = await rawRequest('GET', `task/${seg(t.id)}/status`);
    const body = (await parseBody(res)) as StatusBody;
    if (res.status !== 201) {
      if (res.status >= 400 && !(body && typeof body === 'object' && 'status' in body)) {
        // Not a task status (e.g. the task is gone): report the API's message as the end.
        const message = errorMessage(body, res.status);
        finish(t, 'FAILURE', message);
        return { kind: 'task', id: t.id, ok: false, state: 'FAILURE', message, result: null };
      }
      return outcomeOf(t, body, res.status);
    }
    t.state = body.status;
    emit('tracker-changed', null);
    // Most tasks end within seconds; a long one (a big restore) is asked less often.
    const slow = Date.now() - t.started > 30_000;
    await new Promise((r) => setTimeout(r, slow ? FOLLOW_INTERVAL_MS * 5 : FOLLOW_INTERVAL_MS));
  }
}

/**
 * Sends a request that may start a task and waits for its end. Synchronous answers come back as
 * `{kind:'sync'}`; API errors throw ApiFailure with the server's message.
 */
export async function runAction(
  method: string,
  path: string,
  body: unknown,
  label: string,
  hostname: string | null,
  /** Called once the server has accepted a task (before it ends). */
  onAccepted?: (taskId: string) => void,
): Promise<Outcome> {
  const useStream = streams < MAX_STREAMS;
  if (useStream) streams++;
  let streaming = false;
  try {
    let res: Response;
    try {
      res = await rawRequest(method, path, { body, headers: useStream ? { 'ES-STREAM': 'es' } : {} });
    } catch (err) {
      throw new ApiFailure(0, `The server cannot be reached (${(err as Error).message}).`, null);
    }
    const taskId = res.headers.get('es_task_id') ?? '';
    streaming = res.headers.get('es_stream') === 'True';
    if (!streaming) {
      const parsed = check<{ status?: string; result?: unknown; task_id?: string }>(res, await parseBody(res));
      if (res.status === 201 && parsed.body.status === 'PENDING' && parsed.body.task_id) {
        const t: TrackedTask = { id: parsed.body.task_id, label, hostname, state: 'PENDING', message: '', started: Date.now(), ended: null };
        track(t);
        emit('task-started', { id: t.id, hostname });
        onAccepted?.(t.id);
        return await follow(t);
      }
      return { kind: 'sync', result: parsed.body.result };
    }
    const t: TrackedTask = { id: taskId, label, hostname, state: 'PENDING', message: '', started: Date.now(), ended: null };
    track(t);
    emit('task-started', { id: t.id, hostname });
    onAccepted?.(t.id);
    let text: string;
    try {
      text = await res.text();
    } catch {
      // The connection broke; the task goes on at the server: follow it there.
      return await follow(t);
    }
    const parsed = parseStream(text);
    // 201 at the end means the server's stream timeout passed while the task still runs.
    if (!parsed || parsed.httpStatus === 201) return await follow(t);
    return outcomeOf(t, parsed.body, parsed.httpStatus);
  } finally {
    if (useStream) streams--;
  }
}

/**
 * Waits for a task this page did not start (the scheduler, another user, another tab) on its
 * status endpoint; a task already followed here is not followed twice.
 */
export async function waitForeign(id: string, hostname: string | null, label: string): Promise<void> {
  const existing = tracked.find((t) => t.id === id);
  if (existing) {
    if (existing.ended !== null) return;
    await new Promise<void>((resolve) => {
      const off = on('task-ended', (e) => {
        if (e.id === id) {
          off();
          resolve();
        }
      });
    });
    return;
  }
  const t: TrackedTask = { id, label, hostname, state: 'PENDING', message: '', started: Date.now(), ended: null };
  track(t);
  await follow(t);
}
