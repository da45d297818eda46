/**
 * The file driver on (a) the machine's normal filesystem (copy fallback unless it can reflink),
 * (b) a loop-mounted XFS with reflink=1, (c) a loop-mounted btrfs, and (d) a small XFS without
 * reflink that is filled up until snapshots fail with no_space.
 */
import { constants as fsConstants } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, open, readdir, readFile, rm, stat, statfs, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { StorageError, type DiskRef } from '../../src/storage/driver.js';
import { createDriver } from '../../src/storage/drivers.js';
import { FileDriver } from '../../src/storage/file/file.driver.js';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import type { CommandRunner, RunOptions, RunResult } from '../../src/storage/runner.js';
import { loopFsUnavailable, makeLoopFs, type LoopFs, type LoopFsKind } from '../platform/loopfs.js';
import { platformUnavailable } from '../platform/require.js';
import { driverContract, expectStorageError, type ContractTarget, type DiskIO } from './driver-contract.js';
import { rawImageIO } from './raw-image-io.js';

const MiB = 1024 * 1024;
const runner = new NodeCommandRunner();

/** Records every command; can make `cp` fail the way an I/O error would, which no test can provoke for real. */
class RecordingRunner implements CommandRunner {
  readonly calls: string[][] = [];
  failCp: RunResult | undefined;
  run(argv: readonly string[], options?: RunOptions): Promise<RunResult> {
    this.calls.push([...argv]);
    if (this.failCp && argv[0] === 'cp') return Promise.resolve(this.failCp);
    return runner.run(argv, options);
  }
  cpCalls(): string[][] {
    return this.calls.filter((c) => c[0] === 'cp');
  }
}

function fileIO(root: string): DiskIO {
  return rawImageIO((d) => join(root, d.path));
}

/** Every entry under root with what a write would change (dir mtimes left out: temporaries touch them). */
async function fingerprint(root: string): Promise<string> {
  const lines: string[] = [];
  for (const entry of await readdir(root, { recursive: true })) {
    const st = await stat(join(root, entry)).catch(() => null);
    if (st?.isDirectory()) lines.push(`${entry}/`);
    // No st.blocks: XFS trims a file's speculative preallocation in the background, so its block
    // count changes with no write; inode, size and mtime still show any write or replacement.
    else if (st) lines.push(`${entry} ${st.ino} ${st.size} ${st.mtimeMs}`);
  }
  return lines.sort().join('\n');
}

interface FileEnv {
  readonly root: string;
  readonly driver: FileDriver;
  readonly runner: RecordingRunner;
  cleanup(): Promise<void>;
}

async function fileEnv(parent: string): Promise<FileEnv> {
  const root = await mkdtemp(join(parent, 'esnap-file-'));
  const rec = new RecordingRunner();
  const driver = new FileDriver({ root, runner: rec });
  await driver.init();
  return { root, driver, runner: rec, cleanup: () => rm(root, { recursive: true, force: true }) };
}

async function fileTarget(parent: string): Promise<ContractTarget> {
  const env = await fileEnv(parent);
  return { driver: env.driver, io: fileIO(env.root), sizesKnown: true, fingerprint: () => fingerprint(env.root), cleanup: env.cleanup };
}

/** Fills a file with incompressible data (a random MiB, stamped with its index so no two match). */
async function fillWithData(path: string, bytes: number): Promise<void> {
  const chunk = randomBytes(MiB);
  const fh = await open(path, 'r+');
  try {
    for (let off = 0; off < bytes; off += MiB) {
      chunk.writeUInt32LE(off / MiB, 0);
      await fh.write(chunk, 0, Math.min(MiB, bytes - off), off);
    }
  } finally {
    await fh.close();
  }
}

async function sha256(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

/** Free bytes after flushing, so delayed allocation (btrfs) is accounted for. */
async function freeBytes(path: string): Promise<number> {
  const r = await runner.run(['sync', '-f', path]);
  if (r.code !== 0) throw new Error(`sync -f failed: ${r.stderr}`);
  const s = await statfs(path);
  return s.bavail * s.bsize;
}

/** Whether the folder's filesystem can reflink: decides which path the local suite must see. */
async function canReflink(dir: string): Promise<boolean> {
  const probe = await mkdtemp(join(dir, 'esnap-probe-'));
  try {
    await writeFile(join(probe, 'a'), 'x');
    return await copyFile(join(probe, 'a'), join(probe, 'b'), fsConstants.COPYFILE_FICLONE_FORCE).then(
      () => true,
      () => false,
    );
  } finally {
    await rm(probe, { recursive: true, force: true });
  }
}

function fileSpecifics(label: string, parent: () => string, path: 'reflink' | 'copy'): void {
  describe(`file driver specifics: ${label} (${path} path)`, () => {
    let env: FileEnv | undefined;
    const e = (): FileEnv => env ?? expect.unreachable('no env');
    const imagePath = (d: DiskRef): string => join(e().root, d.path);
    const snapDir = (d: DiskRef): string => join(e().root, '.snapshots', d.path);
    beforeEach(async () => {
      env = await fileEnv(parent());
    });
    afterEach(async () => {
      await env?.cleanup();
      env = undefined;
    });

    it(`takes the ${path} path on create and rollback`, async () => {
      const size = (path === 'reflink' ? 256 : 32) * MiB;
      const d: DiskRef = { path: 'vm/disk0', sizeBytes: size };
      await e().driver.createDisk(d);
      await fillWithData(imagePath(d), size);
      const before = await freeBytes(e().root);
      const t0 = performance.now();
      await e().driver.create(d, 'es-1', { name: 'big' });
      const ms = performance.now() - t0;
      const used = before - (await freeBytes(e().root));
      console.info(`file driver, ${label}: snapshot of ${size / MiB} MiB with data took ${ms.toFixed(1)} ms, used ${(used / MiB).toFixed(1)} MiB`);
      expect(await sha256(join(snapDir(d), 'es-1'))).toBe(await sha256(imagePath(d)));
      if (path === 'reflink') {
        expect(e().runner.cpCalls(), 'no copy was made').toEqual([]);
        expect(used, 'the clone shares its extents with the disk').toBeLessThan(size / 16);
      } else {
        expect(e().runner.cpCalls().map((c) => c.slice(0, 3))).toEqual([['cp', '--sparse=always', '--reflink=never']]);
        // The snapshot's own allocated blocks, not the filesystem's free space: other test files
        // write and delete beside it on the shared folder at the same time.
        const allocated = (await stat(join(snapDir(d), 'es-1'))).blocks * 512;
        expect(allocated, 'a full copy of the data was written').toBeGreaterThan(size * 0.9);
      }
      // Rollback through `cp --reflink=auto`: on a reflink filesystem it clones again.
      await fillWithData(imagePath(d), MiB);
      const beforeRollback = await freeBytes(e().root);
      await e().driver.rollback(d, 'es-1');
      const rollbackUsed = beforeRollback - (await freeBytes(e().root));
      expect(await sha256(imagePath(d))).toBe(await sha256(join(snapDir(d), 'es-1')));
      if (path === 'reflink') expect(rollbackUsed).toBeLessThan(size / 16);
    });

    it('switches the disk atomically on rollback and restore (new inode, same mode, nothing left aside)', async () => {
      const src: DiskRef = { path: 'a', sizeBytes: 4 * MiB };
      const dst: DiskRef = { path: 'b', sizeBytes: 4 * MiB };
      await e().driver.createDisk(src);
      await e().driver.createDisk(dst);
      await chmod(imagePath(dst), 0o640);
      await fillWithData(imagePath(src), MiB);
      await e().driver.create(src, 'es-1', { name: 'one' });
      await fillWithData(imagePath(src), 2 * MiB);
      const [srcBefore, dstBefore] = [await stat(imagePath(src)), await stat(imagePath(dst))];
      await e().driver.rollback(src, 'es-1');
      await e().driver.restore(src, 'es-1', dst);
      for (const [d, before] of [[src, srcBefore], [dst, dstBefore]] as const) {
        const after = await stat(imagePath(d));
        // rename(2) put a new file in place: never a truncated or half-written old one.
        expect(after.ino).not.toBe(before.ino);
        expect([after.mode, after.uid, after.gid, after.size]).toEqual([before.mode, before.uid, before.gid, before.size]);
        expect(await sha256(imagePath(d))).toBe(await sha256(join(snapDir(src), 'es-1')));
      }
      expect((await readdir(e().root)).filter((n) => n.includes('.tmp-'))).toEqual([]);
      expect(await readdir(join(e().root, '.esnap-journal'))).toEqual([]);
    });

    it('init removes the temporary of a rollback a crash cut off, leaving the old image', async () => {
      const d: DiskRef = { path: 'c', sizeBytes: MiB };
      await e().driver.createDisk(d);
      await fillWithData(imagePath(d), MiB);
      const before = await sha256(imagePath(d));
      const temp = '.c.tmp-0123456789ab';
      await writeFile(join(e().root, temp), 'half a copy');
      await mkdir(join(e().root, '.esnap-journal'), { recursive: true });
      await writeFile(join(e().root, '.esnap-journal', 'abcdef012345.json'), JSON.stringify({ op: 'file-switch', temp }));
      await e().driver.init();
      expect(await readdir(e().root)).not.toContain(temp);
      expect(await readdir(join(e().root, '.esnap-journal'))).toEqual([]);
      expect(await sha256(imagePath(d))).toBe(before);
    });

    it('keeps the name and creation time in a side-car and reports allocated bytes as size', async () => {
      const d: DiskRef = { path: 'd', sizeBytes: 16 * MiB };
      await e().driver.createDisk(d);
      await fileIO(e().root).write(d, 4 * MiB, randomBytes(MiB));
      const info = await e().driver.create(d, 'as-7', { name: 'daily "quoted" ü' });
      const side: unknown = JSON.parse(await readFile(join(snapDir(d), 'as-7.json'), 'utf8'));
      expect(side).toEqual({ name: 'daily "quoted" ü', created: info.created.toISOString() });
      // Sparse: about the 1 MiB written, far from the 16 MiB of the disk.
      expect(info.size).toBeGreaterThanOrEqual(MiB);
      expect(info.size).toBeLessThan(4 * MiB);
      expect((await e().driver.list(d))[0]).toEqual(info);
    });

    it('creates disks as sparse files of the exact size', async () => {
      const d: DiskRef = { path: 'x/y/z', sizeBytes: 64 * MiB + 512 };
      await e().driver.createDisk(d);
      const st = await stat(imagePath(d));
      expect(st.size).toBe(64 * MiB + 512);
      expect(st.blocks * 512).toBeLessThan(MiB);
      await expect(e().driver.createDisk({ path: 'w' })).rejects.toBeInstanceOf(StorageError);
    });

    it('init removes what a crashed create left; list never shows it', async () => {
      const d: DiskRef = { path: 'd', sizeBytes: MiB };
      await e().driver.createDisk(d);
      await e().driver.create(d, 'es-1', { name: 'one' });
      const leftovers = ['.es-2.tmp-0123456789ab', '.es-2.json.tmp-0123456789ab', 'es-3.json'];
      for (const name of leftovers) await writeFile(join(snapDir(d), name), '{"name":"half","created":"2026-01-01T00:00:00Z"}');
      expect((await e().driver.list(d)).map((s) => s.id)).toEqual(['es-1']);
      await e().driver.init();
      expect((await readdir(snapDir(d))).sort()).toEqual(['es-1', 'es-1.json']);
    });

    it('lists snapshots it did not make, and broken side-cars, without crashing', async () => {
      const d: DiskRef = { path: 'd', sizeBytes: MiB };
      await e().driver.createDisk(d);
      await e().driver.create(d, 'es-1', { name: 'one' });
      await e().driver.create(d, 'es-2', { name: 'two' });
      await writeFile(join(snapDir(d), 'es-2.json'), '{not json');
      await writeFile(join(snapDir(d), 'manual-copy'), 'x');
      await writeFile(join(snapDir(d), 'orphan.json'), '[]');
      await mkdir(join(snapDir(d), 'sub'));
      const list = await e().driver.list(d);
      expect(list.map((s) => [s.id, s.name])).toEqual(expect.arrayContaining([['es-1', 'one'], ['es-2', null], ['manual-copy', null]]));
      expect(list).toHaveLength(3);
      for (const s of list) expect(Number.isNaN(s.created.getTime())).toBe(false);
    });

    it('refuses disk paths that leave the root through a symlink', async () => {
      const outside = await mkdtemp(join(tmpdir(), 'esnap-outside-'));
      try {
        await writeFile(join(outside, 'victim'), 'precious');
        await symlink(outside, join(e().root, 'evil'));
        await symlink(join(outside, 'victim'), join(e().root, 'link.raw'));
        await expectStorageError(e().driver.createDisk({ path: 'evil/disk', sizeBytes: MiB }), 'invalid_name');
        await expectStorageError(e().driver.create({ path: 'link.raw' }, 'es-1', { name: 'x' }), 'invalid_name');
        await expectStorageError(e().driver.diskExists({ path: 'evil/victim' }), 'invalid_name');
        // The snapshot folder is checked too.
        await e().driver.createDisk({ path: 'ok', sizeBytes: MiB });
        await symlink(outside, join(e().root, '.snapshots', 'ok'));
        await expectStorageError(e().driver.create({ path: 'ok' }, 'es-1', { name: 'x' }), 'invalid_name');
        expect((await readdir(outside)).sort()).toEqual(['victim']);
        expect(await readFile(join(outside, 'victim'), 'utf8')).toBe('precious');
      } finally {
        await rm(outside, { recursive: true, force: true });
      }
    });

    it('deleteDisk on a folder leaves the disks inside it alone', async () => {
      const inner: DiskRef = { path: 'vm/disk0', sizeBytes: MiB };
      await e().driver.createDisk(inner);
      await e().driver.create(inner, 'es-1', { name: 'one' });
      await e().driver.deleteDisk({ path: 'vm' });
      expect(await e().driver.diskExists(inner)).toBe(true);
      expect((await e().driver.list(inner)).map((s) => s.id)).toEqual(['es-1']);
    });

    if (path === 'copy') {
      it('a failed copy leaves no half snapshot behind', async () => {
        const d: DiskRef = { path: 'd', sizeBytes: MiB };
        await e().driver.createDisk(d);
        await e().driver.create(d, 'es-1', { name: 'one' });
        const before = await fingerprint(e().root);
        e().runner.failCp = { code: 1, stdout: '', stderr: "cp: error reading 'x': Input/output error\n", durationMs: 1 };
        await expectStorageError(e().driver.create(d, 'es-2', { name: 'two' }), 'backend');
        e().runner.failCp = { code: 1, stdout: '', stderr: "cp: error writing 'x': No space left on device\n", durationMs: 1 };
        await expectStorageError(e().driver.create(d, 'es-2', { name: 'two' }), 'no_space');
        expect(await fingerprint(e().root)).toBe(before);
      });
    }
  });
}

describe('file driver on the local filesystem', async () => {
  const local = tmpdir();
  const path = (await canReflink(local)) ? 'reflink' : 'copy';
  driverContract(`file, ${local}`, () => fileTarget(local));
  fileSpecifics(local, () => local, path);
});

/** A loop filesystem for the duration of the enclosing describe; unmounted and detached afterwards. */
function useLoopFs(kind: LoopFsKind, sizeMb: number, reflink = true): () => string {
  let fs: LoopFs | undefined;
  beforeAll(async () => {
    fs = await makeLoopFs(kind, sizeMb, { reflink });
  });
  afterAll(async () => {
    await fs?.cleanup();
  });
  return () => fs?.mountpoint ?? expect.unreachable(`the ${kind} loop filesystem was not set up`);
}

for (const kind of ['xfs', 'btrfs'] as const) {
  describe(`file driver on a loop-mounted ${kind} (reflink)`, async () => {
    const reason = await loopFsUnavailable(kind);
    if (reason !== null) return platformUnavailable(`needs a ${kind} loop filesystem`, reason);
    const mountpoint = useLoopFs(kind, 768);
    driverContract(`file on ${kind}`, () => fileTarget(mountpoint()));
    fileSpecifics(kind, mountpoint, 'reflink');
  });
}

describe('file driver on a small XFS without reflink', async () => {
  const reason = await loopFsUnavailable('xfs');
  if (reason !== null) return platformUnavailable('needs an XFS loop filesystem', reason);
  const mountpoint = useLoopFs('xfs', 320, false);
  driverContract('file on XFS reflink=0', () => fileTarget(mountpoint()));

  let env: FileEnv | undefined;
  beforeEach(async () => {
    env = await fileEnv(mountpoint());
  });
  afterEach(async () => {
    await env?.cleanup();
    env = undefined;
  });

  const disk: DiskRef = { path: 'vm/disk0', sizeBytes: 64 * MiB };
  const snapshotFiles = (ids: string[]): string[] => ids.flatMap((id) => [id, `${id}.json`]).sort();

  it('fails with no_space when snapshots fill the storage, leaving no half snapshot', async () => {
    const { driver, root } = env ?? expect.unreachable('no env');
    await driver.createDisk(disk);
    await fillWithData(join(root, disk.path), 64 * MiB);
    const made: string[] = [];
    let failure: unknown;
    let freeBeforeFailure = 0;
    for (let n = 1; n <= 10 && failure === undefined; n++) {
      freeBeforeFailure = await freeBytes(root);
      await driver.create(disk, `es-${n}`, { name: `n${n}` }).then(
        () => made.push(`es-${n}`),
        (err: unknown) => (failure = err),
      );
    }
    expect(failure).toBeInstanceOf(StorageError);
    expect((failure as StorageError).code, String(failure)).toBe('no_space');
    expect(made.length).toBeGreaterThanOrEqual(1);
    expect((await driver.list(disk)).map((s) => s.id)).toEqual(made);
    expect((await readdir(join(root, '.snapshots', disk.path))).sort()).toEqual(snapshotFiles(made));
    // The partial copy is gone: the space it took is free again.
    expect(await freeBytes(root)).toBeGreaterThan(freeBeforeFailure - MiB);
    // Destroying a snapshot makes room for the next one.
    await driver.destroy(disk, [made[0]!]);
    await driver.create(disk, 'es-99', { name: 'after' });
    expect((await driver.list(disk)).map((s) => s.id)).toEqual([...made.slice(1), 'es-99']);
  });

  it('fails with no_space on a completely full storage, leaving nothing behind', async () => {
    const { driver, root } = env ?? expect.unreachable('no env');
    await driver.createDisk(disk);
    await fillWithData(join(root, disk.path), 8 * MiB);
    await driver.create(disk, 'es-1', { name: 'one' });
    const filler = join(root, 'filler');
    const fh = await open(filler, 'w');
    const chunk = randomBytes(MiB);
    for (let off = 0; ; off += MiB) {
      const ok = await fh.write(chunk, 0, MiB, off).then(
        () => true,
        (err: NodeJS.ErrnoException) => (err.code === 'ENOSPC' ? false : Promise.reject(err)),
      );
      if (!ok) break;
    }
    await fh.close();
    const before = await fingerprint(root);
    await expectStorageError(driver.create(disk, 'es-2', { name: 'two' }), 'no_space');
    expect(await fingerprint(root)).toBe(before);
    expect((await driver.list(disk)).map((s) => s.id)).toEqual(['es-1']);
  });
});

describe('createDriver', () => {
  it('builds a file driver from its configuration', () => {
    const driver = createDriver({ name: 'default', driver: 'file', root: '/var/lib/esnap/storage' }, runner);
    expect(driver).toBeInstanceOf(FileDriver);
    expect(driver.kind).toBe('file');
    expect(driver.capabilities).toEqual({ rollbackKeepsNewer: true, batchDestroy: true });
  });

  it('refuses unknown drivers, naming the known ones, and a file storage without root', () => {
    expect(() => createDriver({ name: 's1', driver: 'zfs2' }, runner)).toThrow(/unknown driver "zfs2".*known: file/);
    expect(() => createDriver({ name: 's1', driver: 'toString' }, runner)).toThrow(/unknown driver/);
    expect(() => createDriver({ name: 's1', driver: 'file' }, runner)).toThrow(/"s1".*needs "root"/);
  });
});
