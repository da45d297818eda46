/**
 * Application-consistent snapshots: freeze the guest's filesystems through its QEMU guest agent,
 * run the snapshot, thaw. The rules (spec 11.3, design "Consistency: filesystem freeze"):
 *
 * - The snapshot always runs, exactly once. A freeze that fails (no lock, agent unreachable, an
 *   error, fewer than one filesystem frozen) still takes it, unfrozen: `frozen: false` and
 *   `Filesystem freeze failed (<err>)`, which the API turns into `(filesystem freeze failed)`.
 * - A guest we may have frozen is always thawed: after the snapshot, when the snapshot throws, and
 *   at the hard limit `limitMs` counted from the freeze request, even while the snapshot still
 *   runs (its result still counts, but it was not taken frozen throughout, so `frozen: false`).
 *   A freeze that timed out or lost its connection may have frozen the guest, so it is thawed too;
 *   only an error answer from the agent (which thaws by itself when a freeze fails) needs none.
 * - Thaw syncs first, on a fresh connection, and is retried; failures read
 *   `Filesystem thaw failed (<err>)`.
 * - `<socket>.lock` (created exclusively, holding our pid) keeps two freezes of one guest apart,
 *   across processes; a lock whose pid is gone is stale and broken. It is held from before the
 *   freeze until the thaw has finished.
 *
 * Each phase uses its own connection, closed at its end, so between freeze and thaw the socket is
 * free for others (a QEMU chardev serves one client at a time).
 *
 * Example:
 *   const r = await withFreeze({ socket: vm.qga_socket, limitMs: cfg.freezeLimitS * 1000, log },
 *     () => driver.create(disk, id, meta));
 *   // r.value: the driver's result; r.frozen → the row's fsfreeze; r.error → appended to the output
 */
import { constants as fsConstants } from 'node:fs';
import { lstat, open, stat, unlink, type FileHandle } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../app-context.js';
import { DEFAULT_CONNECT_TIMEOUT_MS, QgaClient, QgaError, SYNC_ATTEMPTS, SYNC_TIMEOUT_MS } from './qga.js';

export interface FreezeTimeouts {
  /**
   * Before the freeze, connecting and the first `guest-sync` answer together. Default
   * GUEST_ANSWER_MS: a working qemu-ga answers in milliseconds, and a socket that never answers
   * must give the node's agent slot back soon, not after the whole sync budget (one VM could
   * otherwise hold every slot of its node). The freeze budget starts once the agent answered.
   */
  readonly answerMs?: number;
  /** Connecting to the socket, per connection. Default 5 s. */
  readonly connectMs?: number;
  /** All `guest-sync` attempts of one phase together (16 attempts). Default 30 s. */
  readonly syncMs?: number;
  /** `guest-fsfreeze-freeze` (never longer than the limit). Default 120 s. */
  readonly freezeMs?: number;
  /** One `guest-fsfreeze-thaw`. Default 30 s. */
  readonly thawMs?: number;
  /** Waiting for another freeze of the same guest to finish. Default: its longest possible hold. */
  readonly lockMs?: number;
}

export interface FreezeParams {
  /** The guest agent's unix socket (the VM's `qga_socket`). */
  readonly socket: string;
  /** Longest time the guest stays frozen (ESNAP_FREEZE_LIMIT_S, default 60 s). */
  readonly limitMs: number;
  readonly timeouts?: FreezeTimeouts;
  readonly log?: Logger;
}

export interface FreezeOutcome<T> {
  readonly value: T;
  /** True when the guest stayed frozen for the whole of `fn`. */
  readonly frozen: boolean;
  /** Danube's stderr lines (`Filesystem freeze failed (…)`, `Filesystem thaw failed (…)`), newline-joined. */
  readonly error: string | null;
}

export const DEFAULT_FREEZE_LIMIT_MS = 60_000;
/** How long a guest socket may stay silent before esnap gives up on it (see FreezeTimeouts.answerMs). */
export const GUEST_ANSWER_MS = 3_000;
export const SOCKET_NOT_FOUND = 'guest agent socket not found';
export const THAW_ATTEMPTS = 3;
export const THAW_RETRY_DELAY_MS = 500;
const LOCK_POLL_MS = 100;
/** A lock file still without a pid after this long was left by a process that died creating it. */
const EMPTY_LOCK_STALE_MS = 30_000;

type Resolved = Required<Omit<FreezeTimeouts, 'lockMs'>> & { lockMs: number };

/** Thaws of the guests this process may have frozen, from the freeze request until thawed. */
const mayBeFrozen = new Set<() => Promise<void>>();

/**
 * For a process that must exit now (a stop whose grace ran out): thaws every guest it may hold
 * frozen, waiting at most `waitMs`. Exiting first would leave the guest frozen with no limit at
 * all, since the limit's timer dies with the process. Returns how many guests it thawed or tried.
 */
export async function thawFrozenGuests(waitMs: number): Promise<number> {
  const thaws = [...mayBeFrozen];
  if (thaws.length === 0) return 0;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.allSettled(thaws.map((thaw) => thaw())),
    new Promise<void>((resolve) => (timer = setTimeout(resolve, waitMs))),
  ]);
  clearTimeout(timer);
  return thaws.length;
}

export async function withFreeze<T>(p: FreezeParams, fn: () => Promise<T>): Promise<FreezeOutcome<T>> {
  const t = resolveTimeouts(p);
  // Danube: without the socket file the snapshot is taken directly.
  if (!(await isSocket(p.socket))) return { value: await fn(), frozen: false, error: SOCKET_NOT_FOUND };

  let lock: HeldLock;
  try {
    lock = await acquireLock(`${p.socket}.lock`, t.lockMs, p.log);
  } catch (err) {
    p.log?.warn({ socket: p.socket, err }, 'filesystem freeze skipped: guest agent lock not acquired');
    return { value: await fn(), frozen: false, error: freezeFailed(message(err)) };
  }
  const channel: FreezeChannel = {
    where: { socket: p.socket },
    freeze: (freezeMs) => freezeGuest(p, t, Math.min(freezeMs, t.freezeMs)),
    thaw: (frozenCount) => thawGuest(p, t, frozenCount),
  };
  const unlock = (): Promise<void> =>
    lock.release().catch((err: unknown) => p.log?.error({ socket: p.socket, err }, 'guest agent lock release failed'));
  return freezeAround(channel, { limitMs: p.limitMs, ...(p.log ? { log: p.log } : {}) }, unlock, fn);
}

/**
 * How a guest agent is reached: its own socket (withFreeze) or libvirt's agent calls
 * (src/hypervisor/libvirt.freeze.ts). freezeAround owns the rules above; a channel only talks.
 */
export interface FreezeChannel {
  /** What the log lines name the guest by. */
  readonly where: Readonly<Record<string, string>>;
  /** `guest-fsfreeze-freeze`, answering within `freezeMs`. */
  freeze(freezeMs: number): Promise<FreezeResult>;
  /** Thaw with retries: null on success, else the last error. */
  thaw(frozenCount: number): Promise<string | null>;
}

/**
 * Freeze, run `fn`, thaw (at the limit too), with the rules of this module's header; `unlock`
 * runs once the guest is thawed (or was never frozen).
 */
export async function freezeAround<T>(
  ch: FreezeChannel,
  p: { readonly limitMs: number; readonly log?: Logger },
  unlock: () => Promise<void>,
  fn: () => Promise<T>,
): Promise<FreezeOutcome<T>> {
  const errors: string[] = [];
  let frozenCount = 0;
  let limitHit = false;
  let fnDone = false;
  let thawing: Promise<void> | null = null;
  let limitTimer: NodeJS.Timeout | undefined;
  // Idempotent: the limit and the end of fn may both ask; the lock goes once the thaw is over.
  const thaw = (): Promise<void> =>
    (thawing ??= (async () => {
      clearTimeout(limitTimer);
      try {
        const err = await ch.thaw(frozenCount);
        if (err !== null) errors.push(thawFailed(err));
      } finally {
        mayBeFrozen.delete(thaw);
        await unlock();
      }
    })());

  const limitAt = Date.now() + p.limitMs;
  mayBeFrozen.add(thaw);
  const freeze = await ch.freeze(p.limitMs);
  if (freeze.ok) {
    frozenCount = freeze.count;
    p.log?.info({ ...ch.where, filesystems: frozenCount }, 'guest filesystems frozen');
    limitTimer = setTimeout(() => {
      if (fnDone) return;
      limitHit = true;
      p.log?.warn({ ...ch.where, limitMs: p.limitMs }, 'freeze limit reached: thawing the guest while the snapshot runs');
      void thaw();
    }, Math.max(0, limitAt - Date.now()));
  } else {
    errors.push(freezeFailed(freeze.error));
    p.log?.warn({ ...ch.where, error: freeze.error }, 'filesystem freeze failed; snapshot taken without it');
    // The snapshot runs unfrozen: make sure a freeze that may have half happened is undone first.
    if (freeze.mayBeFrozen) await thaw();
    else {
      mayBeFrozen.delete(thaw);
      await (thawing = unlock()); // nothing to thaw, later calls included
    }
  }

  let value: T;
  try {
    value = await fn();
  } catch (err) {
    fnDone = true;
    await thaw();
    if (errors.length > 0) p.log?.warn({ ...ch.where, errors }, 'freeze errors of a failed snapshot');
    throw err;
  }
  fnDone = true;
  await thaw();
  if (limitHit) {
    errors.unshift(freezeFailed(`thawed at the freeze limit of ${formatSeconds(p.limitMs)} before the snapshot finished`));
  }
  return { value, frozen: freeze.ok && !limitHit, error: errors.length > 0 ? errors.join('\n') : null };
}

export type FreezeResult = { ok: true; count: number } | { ok: false; error: string; mayBeFrozen: boolean };

async function freezeGuest(p: FreezeParams, t: Resolved, freezeMs: number): Promise<FreezeResult> {
  let qga: QgaClient | null = null;
  let sent = false;
  try {
    const answerBy = Date.now() + t.answerMs;
    qga = await QgaClient.connect(p.socket, { timeoutMs: Math.min(t.connectMs, t.answerMs) });
    await qga.sync(syncOptions(t, Math.max(1, Math.min(t.syncMs, answerBy - Date.now()))));
    sent = true;
    const count = await qga.fsfreezeFreeze({ timeoutMs: freezeMs });
    // Danube: a return value below 1 is a failure (nothing was frozen), but it still thaws.
    if (count < 1) return { ok: false, error: String(count), mayBeFrozen: true };
    return { ok: true, count };
  } catch (err) {
    // An error answer means the agent did not freeze (qemu-ga thaws by itself on a partial failure);
    // a timeout or a lost connection after the request leaves the guest in doubt.
    const answered = err instanceof QgaError && err.kind === 'agent';
    return { ok: false, error: message(err), mayBeFrozen: sent && !answered };
  } finally {
    await qga?.close();
  }
}

/** Thaws with retries; returns null on success, else the last error (Danube's `ret`). */
async function thawGuest(p: FreezeParams, t: Resolved, frozenCount: number): Promise<string | null> {
  let last = '';
  for (let attempt = 1; attempt <= THAW_ATTEMPTS; attempt++) {
    if (attempt > 1) await sleep(THAW_RETRY_DELAY_MS);
    let qga: QgaClient | null = null;
    try {
      qga = await QgaClient.connect(p.socket, { timeoutMs: t.connectMs });
      await qga.sync(syncOptions(t));
      const thawed = await qga.fsfreezeThaw({ timeoutMs: t.thawMs });
      // Spec 11.3: fewer thawed than frozen means something thawed the guest behind our back.
      if (thawed < frozenCount) return `thawed ${thawed} of ${frozenCount} filesystems`;
      p.log?.info({ socket: p.socket, filesystems: thawed }, 'guest filesystems thawed');
      return null;
    } catch (err) {
      last = message(err);
      // The agent refusing the command will refuse it again.
      if (err instanceof QgaError && err.kind === 'agent') break;
      p.log?.warn({ socket: p.socket, attempt, error: last }, 'guest thaw failed, retrying');
    } finally {
      await qga?.close();
    }
  }
  p.log?.error({ socket: p.socket, error: last }, 'guest thaw failed');
  return last;
}

function syncOptions(t: Resolved, budgetMs = t.syncMs): { attempts: number; attemptTimeoutMs: number } {
  return { attempts: SYNC_ATTEMPTS, attemptTimeoutMs: Math.max(1, Math.ceil(budgetMs / SYNC_ATTEMPTS)) };
}

function resolveTimeouts(p: FreezeParams): Resolved {
  const o = p.timeouts ?? {};
  const connectMs = o.connectMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const syncMs = o.syncMs ?? SYNC_TIMEOUT_MS;
  const freezeMs = o.freezeMs ?? 120_000;
  const thawMs = o.thawMs ?? 30_000;
  const answerMs = o.answerMs ?? GUEST_ANSWER_MS;
  // The longest another freeze of this guest can hold the lock: its freeze (within the limit) and
  // every thaw attempt, each with connect and sync.
  const lockMs =
    o.lockMs ??
    answerMs + p.limitMs + THAW_ATTEMPTS * (connectMs + syncMs + thawMs + THAW_RETRY_DELAY_MS) + 5_000;
  return { answerMs, connectMs, syncMs, freezeMs, thawMs, lockMs };
}

// ---- the lock file -------------------------------------------------------------------------

interface HeldLock {
  release(): Promise<void>;
}

/** Lock paths this process holds: a lock file with our own pid that is not here is stale (pid reuse). */
const heldHere = new Set<string>();

/**
 * Takes `path` by creating it exclusively (O_EXCL) with our pid, keeping the descriptor open
 * while held; waits up to `waitMs` for a live holder, breaks a dead holder's lock.
 */
async function acquireLock(path: string, waitMs: number, log: Logger | undefined): Promise<HeldLock> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    let fh: FileHandle;
    try {
      fh = await open(path, fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY, 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = await breakIfStale(path, log);
      if (holder === null) continue; // broken (or gone meanwhile): try again at once
      if (Date.now() >= deadline) {
        throw new Error(`could not acquire guest agent socket lock ${path} (held by pid ${holder})`);
      }
      await sleep(Math.min(LOCK_POLL_MS, Math.max(1, deadline - Date.now())));
      continue;
    }
    heldHere.add(path);
    try {
      await fh.writeFile(`${process.pid}\n`);
      const { ino } = await fh.stat();
      return { release: once(() => releaseLock(path, fh, ino)) };
    } catch (err) {
      await releaseLock(path, fh, null);
      throw err;
    }
  }
}

async function releaseLock(path: string, fh: FileHandle, ino: number | null): Promise<void> {
  try {
    // Only our own file: a lock broken as stale and retaken by someone else is theirs. Until it is
    // gone, `heldHere` keeps waiters in this process from judging our pid stale.
    const now = await lstat(path).catch(() => null);
    if (now !== null && (ino === null || now.ino === ino)) await unlink(path);
  } finally {
    heldHere.delete(path);
    await fh.close();
  }
}

/** Returns the live holder's pid (or '?' while it is being written), or null when the lock is gone. */
async function breakIfStale(path: string, log: Logger | undefined): Promise<string | null> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  let ino: number;
  let reason: string | null;
  let holder: string;
  try {
    const st = await fh.stat();
    ino = st.ino;
    const text = (await fh.readFile('utf8')).trim();
    const pid = /^\d+$/.test(text) ? Number(text) : null;
    holder = pid === null ? '?' : String(pid);
    if (pid === null) {
      reason = Date.now() - st.mtimeMs > EMPTY_LOCK_STALE_MS ? `no pid in it for ${EMPTY_LOCK_STALE_MS / 1000} s` : null;
    } else if (pid === process.pid) {
      reason = heldHere.has(path) ? null : 'our pid, left by an earlier process';
    } else {
      reason = isAlive(pid) ? null : `pid ${pid} is gone`;
    }
  } finally {
    await fh.close();
  }
  if (reason === null) return holder;
  // Unlink only the file we judged: if it was replaced meanwhile, the new one is a live lock.
  const now = await lstat(path).catch(() => null);
  if (now !== null && now.ino === ino) {
    await unlink(path).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    log?.warn({ lock: path, reason }, 'broke a stale guest agent lock');
  }
  return null;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0); // signal 0: existence check only
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// ---- small helpers -------------------------------------------------------------------------

async function isSocket(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isSocket(),
    () => false,
  );
}

export function freezeFailed(err: string): string {
  return `Filesystem freeze failed (${err})`;
}

function thawFailed(err: string): string {
  return `Filesystem thaw failed (${err})`;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function formatSeconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))} s`;
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => (done ??= fn());
}
