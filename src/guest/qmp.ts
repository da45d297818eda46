/**
 * A small QMP (QEMU Machine Protocol) client over a unix socket: one JSON object per line, a
 * greeting from QEMU, `qmp_capabilities` to leave negotiation mode, then commands answered in order
 * and tagged with the `id` we send. Events (objects with `event`) arrive at any time, interleaved.
 *
 * QEMU serves ONE client per monitor: a second connection is accepted by the kernel but gets no
 * greeting until the first one leaves. So "connected but silent" means another client (libvirt, an
 * operator's socat) holds the monitor; that is reported as 'timeout', never as "no QEMU".
 *
 * Example:
 *   const qmp = await QmpClient.connect('/run/vm1.qmp', { timeoutMs: 5000 });
 *   try {
 *     const st = await qmp.execute<{ status: string }>('query-status');
 *     await qmp.executeJob('snapshot-delete', { 'job-id': 'd1', tag: 'x', devices: ['disk0'] });
 *   } finally {
 *     await qmp.close();
 *   }
 */
import { connect as netConnect, type Socket } from 'node:net';

export type QmpFailure =
  /** Nobody listens on the socket (missing file, stale socket of an exited QEMU). */
  | 'unavailable'
  /** No greeting or no answer in time. */
  | 'timeout'
  /** The connection closed or broke before the answer arrived. */
  | 'closed'
  /** The peer does not speak QMP (bad greeting, a line that is not JSON, an oversized line). */
  | 'protocol';

/** Failure of the connection itself, as opposed to an error QEMU answered. */
export class QmpConnectionError extends Error {
  override readonly name = 'QmpConnectionError';
  constructor(
    readonly failure: QmpFailure,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** An `{"error": {"class", "desc"}}` answer to a command, or the error a job concluded with. */
export class QmpCommandError extends Error {
  override readonly name = 'QmpCommandError';
  constructor(
    readonly command: string,
    /** QMP error class (`GenericError`, `CommandNotFound`, …); `JobError` for a failed job. */
    readonly errorClass: string,
    /** QEMU's own text, kept verbatim for the one translator that reads it. */
    readonly desc: string,
  ) {
    super(`QMP ${command}: ${desc}`);
  }
}

export interface QmpEvent {
  readonly event: string;
  readonly data?: Record<string, unknown>;
  readonly timestamp?: { seconds: number; microseconds: number };
}

export interface QmpGreeting {
  readonly version: { qemu: { major: number; minor: number; micro: number }; package: string };
  readonly capabilities: readonly string[];
}

export interface QmpConnectOptions {
  /** Limit for connect, greeting and capabilities negotiation together; default 5 s. */
  readonly timeoutMs?: number;
}

export interface QmpExecuteOptions {
  /** Limit for the answer; default 60 s. A late answer is dropped by its id. */
  readonly timeoutMs?: number;
}

interface Pending {
  readonly command: string;
  resolve(value: unknown): void;
  reject(err: Error): void;
  readonly timer: NodeJS.Timeout;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
const DEFAULT_EXECUTE_TIMEOUT_MS = 60_000;
/** query-block of a VM with hundreds of snapshots is a few hundred KiB; anything near this is not QMP. */
const MAX_LINE_BYTES = 64 * 1024 * 1024;

export class QmpClient {
  /** What QEMU announced; set by connect() before the client is handed out. */
  greeting!: QmpGreeting;
  private buffer = '';
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private readonly listeners = new Set<(e: QmpEvent) => void>();
  private failure: QmpConnectionError | undefined;
  private readonly closed: Promise<void>;
  /** Receives the greeting during connect(); afterwards a non-id message is an event. */
  private onGreeting: ((msg: Record<string, unknown>) => void) | undefined;

  private constructor(
    private readonly socket: Socket,
    readonly path: string,
  ) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.receive(chunk));
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('close', () => this.fail(new QmpConnectionError('closed', `QMP connection to ${path} closed`)));
    socket.on('error', (err) => this.fail(new QmpConnectionError('closed', `QMP connection to ${path} failed: ${err.message}`, { cause: err })));
  }

  /** Connects, reads the greeting and negotiates capabilities (none enabled: no out-of-band). */
  static async connect(path: string, opts: QmpConnectOptions = {}): Promise<QmpClient> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const deadline = Date.now() + timeoutMs;
    const socket = await openSocket(path, timeoutMs);
    const client = new QmpClient(socket, path);
    try {
      client.greeting = await client.readGreeting(Math.max(1, deadline - Date.now()));
      await client.execute('qmp_capabilities', undefined, { timeoutMs: Math.max(1, deadline - Date.now()) });
      return client;
    } catch (err) {
      client.socket.destroy();
      throw err;
    }
  }

  /**
   * Runs one command and resolves with its `return` value; an `error` answer rejects with
   * QmpCommandError. Commands are answered in order, but the id is what pairs them.
   */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, opts: QmpExecuteOptions = {}): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    const id = `esnap-${this.nextId++}`;
    const timeoutMs = opts.timeoutMs ?? DEFAULT_EXECUTE_TIMEOUT_MS;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new QmpConnectionError('timeout', `QMP ${command} on ${this.path}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject, timer });
      const msg = args === undefined ? { execute: command, id } : { execute: command, arguments: args, id };
      this.socket.write(`${JSON.stringify(msg)}\n`);
    });
  }

  /**
   * Runs a job-based command (`snapshot-save`, `snapshot-delete`, block jobs with
   * `auto-dismiss: false`) to its end: the command's `{}` only means "job created"; the outcome is
   * in `query-jobs[].error` once the job is `concluded`, and the job must then be dismissed.
   * Rejects with QmpCommandError (class `JobError`) when the job failed. On timeout the job is
   * cancelled (best effort) and the call rejects with 'timeout'.
   */
  async executeJob(command: string, args: Record<string, unknown> & { 'job-id': string }, opts: QmpExecuteOptions = {}): Promise<void> {
    const jobId = args['job-id'];
    const timeoutMs = opts.timeoutMs ?? DEFAULT_EXECUTE_TIMEOUT_MS;
    let unsubscribe = (): void => undefined;
    // Subscribed before the command is sent: the job may conclude before its `return` arrives.
    const concluded = new Promise<void>((resolve) => {
      unsubscribe = this.onEvent((e) => {
        if (e.event === 'JOB_STATUS_CHANGE' && e.data?.id === jobId && e.data.status === 'concluded') resolve();
      });
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new QmpConnectionError('timeout', `QMP job ${jobId} (${command}) did not conclude within ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    const lost = this.closed.then(() => Promise.reject(this.failure ?? new QmpConnectionError('closed', 'QMP connection closed')));
    // The losers of each race may reject later; that is expected and must not surface as unhandled.
    const ack = this.execute(command, args, { timeoutMs });
    for (const p of [timeout, lost, ack]) p.catch(() => undefined);
    try {
      await Promise.race([ack, timeout, lost]);
      await Promise.race([concluded, timeout, lost]);
    } catch (err) {
      if (err instanceof QmpConnectionError && err.failure === 'timeout') {
        await this.execute('job-cancel', { id: jobId }, { timeoutMs: 5_000 }).catch(() => undefined);
      }
      throw err;
    } finally {
      clearTimeout(timer);
      unsubscribe();
    }
    const jobs = await this.execute<Array<{ id: string; status: string; error?: string }>>('query-jobs', undefined, { timeoutMs: 10_000 });
    const job = jobs.find((j) => j.id === jobId);
    if (!job) {
      throw new QmpConnectionError('protocol', `QMP job ${jobId} vanished before its result was read (was it started with auto-dismiss?)`);
    }
    await this.execute('job-dismiss', { id: jobId }, { timeoutMs: 10_000 });
    if (job.error !== undefined) throw new QmpCommandError(command, 'JobError', job.error);
  }

  /** Calls `listener` for every event until the returned function is called. */
  onEvent(listener: (e: QmpEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Closes the connection and waits until the socket is gone; pending commands reject with 'closed'. */
  async close(): Promise<void> {
    this.socket.end();
    const forced = setTimeout(() => this.socket.destroy(), 1_000);
    await this.closed;
    clearTimeout(forced);
  }

  private readGreeting(timeoutMs: number): Promise<QmpGreeting> {
    return new Promise<QmpGreeting>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.onGreeting = undefined;
        reject(new QmpConnectionError('timeout', `QMP socket ${this.path} accepted the connection but sent no greeting within ${timeoutMs} ms (another client may hold the monitor)`));
      }, timeoutMs);
      this.onGreeting = (msg) => {
        clearTimeout(timer);
        this.onGreeting = undefined;
        const qmp = msg.QMP as QmpGreeting | undefined;
        if (typeof qmp !== 'object' || qmp === null || typeof qmp.version !== 'object') {
          const err = new QmpConnectionError('protocol', `${this.path} did not greet with QMP: ${JSON.stringify(msg).slice(0, 200)}`);
          this.fail(err);
          reject(err);
          return;
        }
        resolve(qmp);
      };
      // A failure before the greeting (closed, protocol) rejects too.
      this.closed.then(() => {
        clearTimeout(timer);
        reject(this.failure);
      }, reject);
    });
  }

  private receive(chunk: string): void {
    this.buffer += chunk;
    if (this.buffer.length > MAX_LINE_BYTES) {
      this.fail(new QmpConnectionError('protocol', `QMP peer ${this.path} sent a line longer than ${MAX_LINE_BYTES} bytes`));
      this.socket.destroy();
      return;
    }
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (line !== '') this.dispatch(line);
    }
  }

  private dispatch(line: string): void {
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch (err) {
      this.fail(new QmpConnectionError('protocol', `QMP peer ${this.path} sent a line that is not JSON: ${line.slice(0, 200)}`, { cause: err }));
      this.socket.destroy();
      return;
    }
    if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) return;
    const m = msg as Record<string, unknown>;
    if (this.onGreeting) {
      this.onGreeting(m);
      return;
    }
    if (typeof m.event === 'string') {
      for (const l of [...this.listeners]) l(m as unknown as QmpEvent);
      return;
    }
    const id = typeof m.id === 'string' ? m.id : undefined;
    const p = id === undefined ? undefined : this.pending.get(id);
    if (!p || id === undefined) return; // an answer to a command that already timed out
    this.pending.delete(id);
    clearTimeout(p.timer);
    if ('error' in m) {
      const e = (m.error ?? {}) as { class?: unknown; desc?: unknown };
      p.reject(new QmpCommandError(p.command, String(e.class ?? 'Unknown'), String(e.desc ?? '')));
    } else {
      p.resolve(m.return);
    }
  }

  private fail(err: QmpConnectionError): void {
    this.failure ??= err;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.reject(this.failure);
    }
  }
}

function openSocket(path: string, timeoutMs: number): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const socket = netConnect({ path });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new QmpConnectionError('timeout', `QMP socket ${path}: no connection within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      // ENOENT: no socket file; ECONNREFUSED: a stale socket file (QEMU killed) or not a socket.
      const absent = ['ENOENT', 'ECONNREFUSED', 'ENOTSOCK', 'ENOTDIR'].includes(err.code ?? '');
      reject(new QmpConnectionError(absent ? 'unavailable' : 'closed', `QMP socket ${path}: ${err.message}`, { cause: err }));
    });
  });
}
