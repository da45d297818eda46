/**
 * Real XFS / btrfs filesystems for platform tests: a sparse image under os.tmpdir(), mkfs, a loop
 * device, a mount. Needs root. Everything is undone by cleanup(), also when set-up fails half way;
 * loop filesystems left behind by a test worker that was killed are reaped by the next makeLoopFs.
 *
 * Example:
 *   const fs = await makeLoopFs('xfs', 512);
 *   try { ...use fs.mountpoint... } finally { await fs.cleanup(); }
 */
import { access, constants, mkdir, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, delimiter, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';

export type LoopFsKind = 'xfs' | 'btrfs';

export interface LoopFs {
  readonly mountpoint: string;
  /** The loop device, e.g. /dev/loop3. */
  readonly device: string;
  cleanup(): Promise<void>;
}

export interface LoopFsOptions {
  /** XFS only: format with reflink=1 (default) or reflink=0, to exercise the copy path. */
  readonly reflink?: boolean;
}

const runner = new NodeCommandRunner();
/** The pid in the folder name tells the reaper whether the test process that made it is gone. */
const PREFIX = 'esnap-loopfs-';

/** Why a loop filesystem of this kind cannot be made here, or null when it can. */
export async function loopFsUnavailable(kind: LoopFsKind): Promise<string | null> {
  if (process.getuid?.() !== 0) return 'loop filesystems need root';
  for (const tool of [`mkfs.${kind}`, 'losetup', 'mount', 'umount']) {
    if (!(await onPath(tool))) return `${tool} is not installed (apt-get install xfsprogs btrfs-progs util-linux)`;
  }
  const filesystems = await readFile('/proc/filesystems', 'utf8').catch(() => '');
  if (!filesystems.split('\n').some((l) => l.trim() === kind)) return `the kernel has no ${kind} support`;
  if (!(await exists('/dev/loop-control'))) return 'no loop device support (/dev/loop-control missing)';
  return null;
}

export async function makeLoopFs(kind: LoopFsKind, sizeMb: number, opts: LoopFsOptions = {}): Promise<LoopFs> {
  await reapStale();
  const dir = await mkdtemp(join(tmpdir(), `${PREFIX}${process.pid}-${kind}-`));
  const image = join(dir, 'fs.img');
  const mountpoint = join(dir, 'mnt');
  // Undo steps, newest first; each runs even when an earlier one failed.
  const undo: Array<() => Promise<void>> = [() => rm(dir, { recursive: true, force: true })];
  const cleanup = once(() => runAll(undo));
  try {
    await writeFile(image, '');
    await truncate(image, sizeMb * 1024 * 1024);
    const mkfs =
      kind === 'xfs'
        ? ['mkfs.xfs', '-q', '-f', '-m', `reflink=${opts.reflink === false ? 0 : 1}`, image]
        : ['mkfs.btrfs', '-q', '-f', image];
    await check(mkfs);
    const device = (await check(['losetup', '--find', '--show', image])).trim();
    undo.unshift(() => detach(device));
    await mkdir(mountpoint);
    await check(['mount', device, mountpoint]);
    undo.unshift(() => unmount(mountpoint));
    return { mountpoint, device, cleanup };
  } catch (err) {
    await cleanup().catch((cleanupErr: unknown) => console.warn('loopfs: cleanup after failed set-up failed', cleanupErr));
    throw err;
  }
}

/** Unmounts, detaches and deletes loop filesystems whose creating process no longer exists. */
async function reapStale(): Promise<void> {
  const out = await runner.run(['losetup', '--list', '--json', '--output', 'NAME,BACK-FILE']);
  if (out.code !== 0 || out.stdout.trim() === '') return;
  const parsed = JSON.parse(out.stdout) as { loopdevices?: Array<{ name: string; 'back-file': string | null }> };
  for (const dev of parsed.loopdevices ?? []) {
    const back = dev['back-file']?.replace(/ \(deleted\)$/, '') ?? '';
    const dir = dirname(back);
    const pid = new RegExp(`^${PREFIX}(\\d+)-`).exec(basename(dir))?.[1];
    if (dirname(dir) !== tmpdir() || pid === undefined || isAlive(Number(pid))) continue;
    console.warn(`loopfs: reaping ${dev.name} (${back}) left by dead process ${pid}`);
    await runAll([() => unmount(join(dir, 'mnt')), () => detach(dev.name), () => rm(dir, { recursive: true, force: true })]);
  }
}

async function unmount(mountpoint: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const r = await runner.run(['umount', mountpoint], { env: { LC_ALL: 'C' } });
    if (r.code === 0 || /not mounted|no mount point/.test(r.stderr)) return;
    if (attempt === 5) {
      // Something still holds a file open; detach lazily so the loop device is released when it lets go.
      await check(['umount', '--lazy', mountpoint]);
      return;
    }
    await sleep(200);
  }
}

async function detach(device: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const r = await runner.run(['losetup', '--detach', device]);
    if (r.code === 0) return;
    if (attempt === 5) throw new Error(`losetup --detach ${device} failed: ${r.stderr.trim()}`);
    await sleep(200);
  }
}

async function check(argv: string[]): Promise<string> {
  const r = await runner.run(argv, { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`${argv.join(' ')} failed (exit ${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

async function runAll(steps: ReadonlyArray<() => Promise<void>>): Promise<void> {
  const errors: unknown[] = [];
  for (const step of steps) {
    try {
      await step();
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length > 0) throw new AggregateError(errors, 'loopfs cleanup failed');
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => (done ??= fn());
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0); // signal 0: existence check only, nothing is sent
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function onPath(tool: string): Promise<boolean> {
  // PATH only: the runner resolves commands through PATH too.
  for (const d of (process.env.PATH ?? '').split(delimiter)) if (d && (await exists(join(d, tool), constants.X_OK))) return true;
  return false;
}

async function exists(path: string, mode = constants.F_OK): Promise<boolean> {
  return access(path, mode).then(
    () => true,
    () => false,
  );
}
