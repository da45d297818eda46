/**
 * Real ZFS for platform tests: a zfs-fuse daemon and a pool on a sparse file under os.tmpdir().
 * Needs root, zfs-fuse (Debian's package) and /dev/fuse.
 *
 * One daemon serves every test process on the machine (there is one /var/run/zfs/zfs_socket):
 * - a daemon that already answers is used as it is and never stopped (someone else started it);
 * - otherwise the first user starts `zfs-fuse --no-daemon` as its (detached) child, after removing a
 *   stale pidfile, and records it in <state>/daemon.json; after a start, `zfs mount -a` remounts the
 *   datasets of pools zfs-fuse re-imported from its cache (it imports them, it does not mount them);
 * - users register in <state>/users/<pid> under a lock; the last one to leave stops the daemon that
 *   the harness started. Entries of dead processes are reaped, and so are their pools.
 *
 * Example:
 *   const pool = await makeZfsPool(256);
 *   try { ...use `${pool.name}` and pool.mountpoint... } finally { await pool.cleanup(); }
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { access, constants, mkdir, mkdtemp, open, readdir, readFile, rm, rmdir, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';

export interface ZfsPool {
  readonly name: string;
  readonly mountpoint: string;
  readonly vdev: string;
  cleanup(): Promise<void>;
}

const runner = new NodeCommandRunner();
const STATE = join(tmpdir(), 'esnap-zfs-fuse');
const LOCK = join(STATE, 'lock');
const USERS = join(STATE, 'users');
const DAEMON_JSON = join(STATE, 'daemon.json');
const PIDFILE = join(STATE, 'zfs-fuse.pid');
/** Pool names and vdev folders carry the creating pid, so leftovers of dead processes can be reaped. */
const POOL_RE = /^esnap_(\d+)_[0-9a-f]+$/;
const DIR_PREFIX = 'esnap-zfs-';

/** Why a zfs-fuse pool cannot be made here, or null when it can. */
export async function zfsUnavailable(): Promise<string | null> {
  if (process.getuid?.() !== 0) return 'zfs-fuse pools need root';
  for (const tool of ['zfs-fuse', 'zfs', 'zpool']) {
    if (!(await onPath(tool))) return `${tool} is not installed (apt-get install zfs-fuse)`;
  }
  if (!(await exists('/dev/fuse'))) return 'no FUSE support (/dev/fuse missing)';
  return null;
}

/** A fresh pool of `sizeMb` (zfs needs at least 64) with its root mounted under os.tmpdir(). */
export async function makeZfsPool(sizeMb = 256): Promise<ZfsPool> {
  await acquireDaemon();
  const dir = await mkdtemp(join(tmpdir(), `${DIR_PREFIX}${process.pid}-`));
  const name = `esnap_${process.pid}_${randomBytes(4).toString('hex')}`;
  const vdev = join(dir, 'vdev.img');
  const mountpoint = join(dir, 'mnt');
  let created = false;
  const cleanup = once(async () => {
    try {
      if (created) await destroyPool(name);
      await rm(dir, { recursive: true, force: true });
    } finally {
      await releaseDaemon();
    }
  });
  try {
    await writeFile(vdev, '');
    await truncate(vdev, sizeMb * 1024 * 1024);
    await check(['zpool', 'create', '-m', mountpoint, name, vdev]);
    created = true;
    return { name, mountpoint, vdev, cleanup };
  } catch (err) {
    await cleanup().catch((e: unknown) => console.warn('zfs harness: cleanup after failed set-up failed', e));
    throw err;
  }
}

// ---- the shared daemon ----

/** References this process holds (several pools at once share one registration). */
let localRefs = 0;

async function acquireDaemon(): Promise<void> {
  localRefs++;
  if (localRefs > 1) return;
  try {
    await withLock(async () => {
      await mkdir(USERS, { recursive: true });
      await writeFile(join(USERS, String(process.pid)), '');
      await reapDeadUsers();
      if (!(await daemonAnswers())) await startDaemon();
      await reapStalePools();
    });
  } catch (err) {
    localRefs--;
    throw err;
  }
}

async function releaseDaemon(): Promise<void> {
  localRefs--;
  if (localRefs > 0) return;
  await withLock(async () => {
    await rm(join(USERS, String(process.pid)), { force: true });
    await reapDeadUsers();
    if ((await readdir(USERS).catch(() => [])).length > 0) return; // others still use it
    const ours = await readDaemonJson();
    if (ours === null) return; // not started by this harness: leave it alone
    await stopDaemon(ours.pid);
  });
}

async function startDaemon(): Promise<void> {
  const previous = await readDaemonJson();
  // Ours but not answering (hung, or killed half way): it must go before a new one can listen.
  if (previous !== null && isAlive(previous.pid)) await stopDaemon(previous.pid);
  await rm(PIDFILE, { force: true }); // a stale pidfile makes zfs-fuse refuse to start
  const log = await open(join(STATE, 'zfs-fuse.log'), 'a');
  const child = spawn('zfs-fuse', ['--no-daemon', '--no-kstat-mount', '--pidfile', PIDFILE], {
    // Detached and unreferenced: it outlives this process if other test processes still use it.
    detached: true,
    stdio: ['ignore', log.fd, log.fd],
  });
  child.unref();
  await log.close();
  if (child.pid === undefined) throw new Error('zfs harness: zfs-fuse did not start');
  await writeFile(DAEMON_JSON, JSON.stringify({ pid: child.pid }));
  for (let i = 0; i < 100; i++) {
    if (await daemonAnswers()) {
      // Pools re-imported from zpool.cache come back unmounted.
      await check(['zfs', 'mount', '-a']);
      return;
    }
    if (!isAlive(child.pid)) break;
    await sleep(100);
  }
  throw new Error(`zfs harness: zfs-fuse (pid ${child.pid}) did not answer on its socket; see ${join(STATE, 'zfs-fuse.log')}`);
}

async function stopDaemon(pid: number): Promise<void> {
  if (isAlive(pid)) process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 100 && isAlive(pid); i++) await sleep(100);
  if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  await rm(DAEMON_JSON, { force: true });
  await rm(PIDFILE, { force: true });
}

async function daemonAnswers(): Promise<boolean> {
  return (await runner.run(['zpool', 'list', '-H', '-o', 'name'], { timeoutMs: 10_000 })).code === 0;
}

async function readDaemonJson(): Promise<{ pid: number } | null> {
  const text = await readFile(DAEMON_JSON, 'utf8').catch(() => null);
  const pid = text === null ? NaN : Number((JSON.parse(text) as { pid?: unknown }).pid);
  return Number.isSafeInteger(pid) && pid > 0 ? { pid } : null;
}

async function reapDeadUsers(): Promise<void> {
  for (const entry of await readdir(USERS).catch(() => [])) {
    if (!isAlive(Number(entry))) await rm(join(USERS, entry), { force: true });
  }
}

/** Pools and vdev folders left by test processes that died before their cleanup. */
async function reapStalePools(): Promise<void> {
  const out = await runner.run(['zpool', 'list', '-H', '-o', 'name']);
  for (const name of out.stdout.split('\n')) {
    const pid = POOL_RE.exec(name)?.[1];
    if (pid === undefined || isAlive(Number(pid))) continue;
    console.warn(`zfs harness: destroying pool ${name} left by dead process ${pid}`);
    await destroyPool(name).catch((err: unknown) => console.warn(`zfs harness: could not destroy ${name}`, err));
  }
  for (const entry of await readdir(tmpdir())) {
    const pid = new RegExp(`^${DIR_PREFIX}(\\d+)-`).exec(entry)?.[1];
    if (pid !== undefined && !isAlive(Number(pid))) await rm(join(tmpdir(), entry), { recursive: true, force: true });
  }
}

async function destroyPool(name: string): Promise<void> {
  // zfs-fuse answers "busy" for a moment after a dataset was used, and for longer while it winds down
  // a receive or a destroy under load (CI: "pool is busy" for over 2 s after a native restore's test).
  // Its datasets go first (each unmount is where the busy shows), then the pool, for up to a minute.
  const until = Date.now() + 60_000;
  for (let attempt = 0; ; attempt++) {
    if (attempt > 0) {
      const listed = await runner.run(['zfs', 'list', '-H', '-r', '-o', 'name', '-t', 'filesystem', name], { timeoutMs: 60_000 });
      const children = listed.stdout.split('\n').filter((n) => n.startsWith(`${name}/`) && !n.slice(name.length + 1).includes('/'));
      for (const ds of children) await runner.run(['zfs', 'destroy', '-r', '-f', ds], { timeoutMs: 60_000 });
    }
    const r = await runner.run(['zpool', 'destroy', '-f', name], { timeoutMs: 60_000 });
    if (r.code === 0 || /no such pool/.test(r.stderr)) return;
    if (Date.now() > until) throw new Error(`zpool destroy ${name} failed: ${r.stderr.trim()}`);
    await sleep(Math.min(2000, 200 * 2 ** Math.min(attempt, 4)));
  }
}

/** A cross-process lock: mkdir is atomic; a lock whose holder died is broken. */
async function withLock<T>(fn: () => Promise<T>): Promise<T> {
  await mkdir(STATE, { recursive: true });
  for (let i = 0; ; i++) {
    try {
      await mkdir(LOCK);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number(await readFile(join(LOCK, 'pid'), 'utf8').catch(() => 'NaN'));
      // A lock without a pid file is being taken right now, unless it stays so for seconds.
      if ((Number.isSafeInteger(holder) && !isAlive(holder)) || (Number.isNaN(holder) && i > 50)) {
        await rm(LOCK, { recursive: true, force: true });
        continue;
      }
      if (i > 600) throw new Error(`zfs harness: ${LOCK} held by pid ${holder} for over a minute`);
      await sleep(100);
    }
  }
  try {
    await writeFile(join(LOCK, 'pid'), String(process.pid));
    return await fn();
  } finally {
    await rm(join(LOCK, 'pid'), { force: true });
    await rmdir(LOCK).catch(() => undefined);
  }
}

async function check(argv: string[]): Promise<string> {
  const r = await runner.run(argv, { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`${argv.join(' ')} failed (exit ${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => (done ??= fn());
}

/** Whether a process runs; a zombie (exited, not yet reaped by PID 1 here) counts as dead. */
function isAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    // The state letter follows the ")" that closes the command name.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

async function onPath(tool: string): Promise<boolean> {
  for (const d of (process.env.PATH ?? '').split(delimiter)) if (d && (await exists(join(d, tool), constants.X_OK))) return true;
  return false;
}

async function exists(path: string, mode = constants.F_OK): Promise<boolean> {
  return access(path, mode).then(
    () => true,
    () => false,
  );
}
