/**
 * A QEMU guest agent client over the agent's unix socket (the VM's `qga_socket`, a QEMU chardev,
 * or `qemu-ga -m unix-listen`). The protocol is one JSON object per line each way, with no request
 * ids: a reply belongs to whatever command was sent before it. A reply that arrives late (after a
 * timeout, or one queued for a client that went away: on virtio-serial the guest side is one
 * stream shared by every host-side client) would be taken as the answer to the next command, so
 * after any doubt the client re-synchronises with `guest-sync` and a random id, discarding lines
 * until that id comes back (spec 11.3: up to 16 attempts).
 *
 * Commands are strictly one at a time per connection; concurrent calls queue.
 *
 * Example:
 *   const qga = await QgaClient.connect('/run/vm/web01/qga.sock');
 *   try {
 *     await qga.sync();
 *     const frozen = await qga.fsfreezeFreeze({ timeoutMs: 120_000 });
 *     ...
 *   } finally {
 *     await qga.close();
 *   }
 */
import { randomInt } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';

/** How a guest agent call failed: `agent` means the agent answered with an error object. */
export type QgaErrorKind = 'connect' | 'timeout' | 'closed' | 'agent' | 'protocol';

export class QgaError extends Error {
  override readonly name = 'QgaError';
  constructor(
    readonly kind: QgaErrorKind,
    message: string,
    /** The agent's error class (`GenericError`, `CommandNotFound`, …) when kind is `agent`. */
    readonly errorClass: string | null = null,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

export type FsfreezeStatus = 'thawed' | 'frozen';

export interface QgaInfo {
  readonly version: string;
  readonly supported_commands: ReadonlyArray<{ readonly name: string; readonly enabled: boolean }>;
}

export interface SyncOptions {
  /** Syncs sent before giving up; each uses a new id so a late answer to an old one never matches. */
  readonly attempts?: number;
  /** How long one attempt waits for its id to come back. */
  readonly attemptTimeoutMs?: number;
}

export interface CommandOptions {
  readonly timeoutMs?: number;
}

/** Danube's qga client: 16 sync attempts within 30 s. */
export const SYNC_ATTEMPTS = 16;
export const SYNC_TIMEOUT_MS = 30_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
export const DEFAULT_COMMAND_TIMEOUT_MS = 30_000;
/** A line longer than this is no agent reply; the connection is dropped rather than buffering on. */
const MAX_LINE_BYTES = 16 * 1024 * 1024;
/** qemu-ga's ids are JSON integers; stay within what a double holds exactly. */
const MAX_SYNC_ID = 2 ** 47;
/** 0xFF is never valid JSON: it makes the agent drop any half-read command (qemu-ga docs, guest-sync). */
const PARSER_RESET = Buffer.from([0xff]);

interface Waiter {
  resolve(line: string): void;
  reject(err: QgaError): void;
}

export class QgaClient {
  private buffer: Buffer = Buffer.alloc(0);
  private readonly lines: string[] = [];
  private waiter: Waiter | null = null;
  private closedError: QgaError | null = null;
  /** True when a reply may still be in flight for a command we stopped waiting for. */
  private desynced = false;
  /** Tail of the queue that keeps commands one at a time. */
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly socket: Socket,
    readonly path: string,
  ) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.fail(new QgaError('closed', `guest agent connection failed: ${err.message}`, null, { cause: err })));
    socket.on('close', () => this.fail(new QgaError('closed', 'guest agent closed the connection')));
  }

  /** Connects to the agent's unix socket; fails with kind `connect` (missing socket, refused, timeout). */
  static connect(path: string, opts: { timeoutMs?: number } = {}): Promise<QgaClient> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    return new Promise((resolve, reject) => {
      const socket = netConnect({ path });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new QgaError('connect', `cannot connect to guest agent socket ${path}: timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new QgaError('connect', `cannot connect to guest agent socket ${path}: ${err.code ?? err.message}`, null, { cause: err }));
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new QgaClient(socket, path));
      });
    });
  }

  /**
   * `guest-sync` with a random id: resets the agent's parser, then discards every line until the
   * reply carrying our id arrives. Throws kind `timeout` when no attempt got its id back.
   */
  sync(opts: SyncOptions = {}): Promise<void> {
    return this.serial(() => this.syncNow(opts));
  }

  /**
   * Runs one command and returns its `return` value. If an earlier command was abandoned (timeout,
   * junk on the line), the client syncs first so a stale reply cannot be taken for this one.
   */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, opts: CommandOptions = {}): Promise<T> {
    return this.serial(async () => {
      if (this.desynced) await this.syncNow({});
      return (await this.command(command, args, opts.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS)) as T;
    });
  }

  async ping(opts: CommandOptions = {}): Promise<void> {
    await this.execute('guest-ping', undefined, opts);
  }

  info(opts: CommandOptions = {}): Promise<QgaInfo> {
    return this.execute<QgaInfo>('guest-info', undefined, opts);
  }

  /** Freezes every guest filesystem; returns how many were frozen. */
  async fsfreezeFreeze(opts: CommandOptions = {}): Promise<number> {
    return expectInt('guest-fsfreeze-freeze', await this.execute('guest-fsfreeze-freeze', undefined, opts));
  }

  /** Thaws the guest; returns how many filesystems were thawed. */
  async fsfreezeThaw(opts: CommandOptions = {}): Promise<number> {
    return expectInt('guest-fsfreeze-thaw', await this.execute('guest-fsfreeze-thaw', undefined, opts));
  }

  async fsfreezeStatus(opts: CommandOptions = {}): Promise<FsfreezeStatus> {
    const status = await this.execute('guest-fsfreeze-status', undefined, opts);
    if (status !== 'thawed' && status !== 'frozen') {
      throw new QgaError('protocol', `guest-fsfreeze-status returned ${JSON.stringify(status)}`);
    }
    return status;
  }

  /** Ends the connection; pending and later calls fail with kind `closed`. Safe to call twice. */
  close(): Promise<void> {
    this.fail(new QgaError('closed', 'guest agent client closed'));
    if (this.socket.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.socket.once('close', () => resolve());
      this.socket.end();
      // An agent that never reads its side must not keep us: drop the socket soon after.
      setTimeout(() => this.socket.destroy(), 1_000).unref();
    });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async syncNow(opts: SyncOptions): Promise<void> {
    const attempts = opts.attempts ?? SYNC_ATTEMPTS;
    const attemptMs = opts.attemptTimeoutMs ?? Math.ceil(SYNC_TIMEOUT_MS / SYNC_ATTEMPTS);
    // Lines already received cannot be the answer to a sync we have not sent yet.
    this.lines.length = 0;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const id = randomInt(1, MAX_SYNC_ID);
      this.write(Buffer.concat([PARSER_RESET, Buffer.from(`${JSON.stringify({ execute: 'guest-sync', arguments: { id } })}\n`)]));
      const deadline = Date.now() + attemptMs;
      for (;;) {
        const left = deadline - Date.now();
        if (left <= 0) break;
        let line: string;
        try {
          line = await this.nextLine(left);
        } catch (err) {
          if (err instanceof QgaError && err.kind === 'timeout') break;
          throw err;
        }
        // Everything but our own id is stale: answers to abandoned commands, parse errors caused by
        // the reset byte, answers to earlier sync attempts.
        if (parseLine(line)?.['return'] === id) {
          this.desynced = false;
          this.lines.length = 0;
          return;
        }
      }
    }
    this.desynced = true;
    throw new QgaError('timeout', `guest-sync got no answer after ${attempts} attempts`);
  }

  private async command(command: string, args: Record<string, unknown> | undefined, timeoutMs: number): Promise<unknown> {
    const request = args === undefined ? { execute: command } : { execute: command, arguments: args };
    this.write(Buffer.from(`${JSON.stringify(request)}\n`));
    let line: string;
    try {
      line = await this.nextLine(timeoutMs);
    } catch (err) {
      if (err instanceof QgaError && err.kind === 'timeout') {
        this.desynced = true; // the reply may still come and must not answer the next command
        throw new QgaError('timeout', `${command} timed out after ${timeoutMs} ms`);
      }
      throw err;
    }
    const reply = parseLine(line);
    if (reply === null) {
      this.desynced = true;
      throw new QgaError('protocol', `${command}: reply is not a JSON object: ${line.slice(0, 200)}`);
    }
    if ('error' in reply) {
      const e = reply['error'] as { class?: unknown; desc?: unknown } | null;
      const desc = typeof e?.desc === 'string' ? e.desc : JSON.stringify(e);
      throw new QgaError('agent', desc, typeof e?.class === 'string' ? e.class : null);
    }
    if (!('return' in reply)) {
      this.desynced = true;
      throw new QgaError('protocol', `${command}: reply has neither return nor error: ${line.slice(0, 200)}`);
    }
    return reply['return'];
  }

  private write(data: Buffer): void {
    if (this.closedError) throw this.closedError;
    this.socket.write(data);
  }

  private nextLine(timeoutMs: number): Promise<string> {
    const queued = this.lines.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.closedError) return Promise.reject(this.closedError);
    // No time left means no waiting at all (not one more turn of the event loop).
    if (timeoutMs <= 0) return Promise.reject(new QgaError('timeout', 'no reply within 0 ms'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(new QgaError('timeout', `no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = {
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
    });
  }

  private onData(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    for (let nl = this.buffer.indexOf(0x0a); nl !== -1; nl = this.buffer.indexOf(0x0a)) {
      const raw = this.buffer.subarray(0, nl);
      this.buffer = this.buffer.subarray(nl + 1);
      // guest-sync-delimited answers start with 0xFF; any agent may emit it before a reply.
      const line = raw.toString('utf8').replace(/^[\uFFFD\s]+/, '').trimEnd();
      if (line === '') continue;
      this.deliver(line);
    }
    if (this.buffer.length > MAX_LINE_BYTES) {
      this.fail(new QgaError('protocol', `guest agent sent more than ${MAX_LINE_BYTES} bytes without a newline`));
      this.socket.destroy();
    }
  }

  private deliver(line: string): void {
    const waiter = this.waiter;
    if (waiter) {
      this.waiter = null;
      waiter.resolve(line);
      return;
    }
    // Nobody asked: a late reply. Keep it for a sync to skip, and make sure one runs first.
    this.desynced = true;
    this.lines.push(line);
  }

  private fail(err: QgaError): void {
    if (!this.closedError) this.closedError = err;
    const waiter = this.waiter;
    this.waiter = null;
    waiter?.reject(this.closedError);
  }
}

function parseLine(line: string): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(line);
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

function expectInt(command: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    throw new QgaError('protocol', `${command} returned ${JSON.stringify(v)}, not an integer`);
  }
  return v;
}
