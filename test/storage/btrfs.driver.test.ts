/**
 * The btrfs driver on a real loop-mounted btrfs: the driver contract, then what only btrfs has
 * (subvolume swaps and their crash recovery, one-process batch deletes, quota-group sizes).
 */
import { randomBytes } from 'node:crypto';
import { appendFile, lstat, mkdir, mkdtemp, open, readdir, readFile, rename, rm, statfs, symlink, unlink, writeFile } from 'node:fs/promises';
import { constants as osConstants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { BtrfsDriver } from '../../src/storage/btrfs/btrfs.driver.js';
import { appendIndex, parseIndex } from '../../src/storage/snapshot-index.js';
import type { DiskRef } from '../../src/storage/driver.js';
import { NodeCommandRunner, type RunInfo } from '../../src/storage/node-runner.js';
import { loopFsUnavailable, makeLoopFs, type LoopFs } from '../platform/loopfs.js';
import { platformUnavailable, requirePlatform } from '../platform/require.js';
import { BAD_IDS, BAD_PATHS, driverContract, expectStorageError, type DiskIO } from './driver-contract.js';
import { rawImageIO } from './raw-image-io.js';

const MiB = 1024 * 1024;
const plain = new NodeCommandRunner();

async function sh(...argv: string[]): Promise<string> {
  const r = await plain.run(argv, { env: { LC_ALL: 'C' } });
  if (r.code !== 0) throw new Error(`${argv.join(' ')} failed (exit ${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

const BTRFS_MAGIC = 0x9123683e;

/** The first existing folder that is not on btrfs, or null. */
async function notOnBtrfs(candidates: readonly string[]): Promise<string | null> {
  for (const dir of candidates) {
    const st = await statfs(dir).catch(() => null);
    if (st !== null && st.type !== BTRFS_MAGIC) return dir;
  }
  return null;
}

function imageIO(root: string): DiskIO {
  return rawImageIO((d) => join(root, d.path, 'disk.img'));
}

/** Every entry under root with what a write would change; subvolumes show as `@`. */
async function fingerprint(root: string): Promise<string> {
  const lines: string[] = [];
  for (const entry of await readdir(root, { recursive: true })) {
    const st = await lstat(join(root, entry)).catch(() => null);
    if (st?.isDirectory()) lines.push(`${entry}/${st.ino === 256 ? '@' : ''}`);
    else if (st) lines.push(`${entry} ${st.dev}:${st.ino} ${st.size} ${st.blocks} ${st.mtimeMs}`);
  }
  return lines.sort().join('\n');
}

/** Deletes every subvolume below root in one call, inner ones first (ro snapshots cannot be emptied by rm), then the rest. */
async function wipe(root: string): Promise<void> {
  const subvolumes: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const st = await lstat(join(dir, name));
      if (!st.isDirectory()) continue;
      await walk(join(dir, name));
      if (st.ino === 256) subvolumes.push(join(dir, name));
    }
  };
  await walk(root);
  if (subvolumes.length > 0) await sh('btrfs', 'subvolume', 'delete', ...subvolumes);
  await rm(root, { recursive: true, force: true });
}

interface Env {
  readonly root: string;
  readonly driver: BtrfsDriver;
  /** Every process the driver started, in order. */
  readonly runs: RunInfo[];
  cleanup(): Promise<void>;
}

async function btrfsEnv(parent: string): Promise<Env> {
  const root = await mkdtemp(join(parent, 'esnap-btrfs-'));
  const runs: RunInfo[] = [];
  const driver = new BtrfsDriver({ root, runner: new NodeCommandRunner({ onRun: (info) => runs.push(info) }) });
  return { root, driver, runs, cleanup: () => wipe(root) };
}

function useLoopBtrfs(sizeMb: number): () => string {
  let fs: LoopFs | undefined;
  beforeAll(async () => {
    fs = await makeLoopFs('btrfs', sizeMb);
  });
  afterAll(async () => {
    await fs?.cleanup();
  });
  return () => fs?.mountpoint ?? expect.unreachable('the btrfs loop filesystem was not set up');
}

function useEnv(parent: () => string): () => Env {
  let env: Env | undefined;
  beforeEach(async () => {
    env = await btrfsEnv(parent());
    await env.driver.init();
    env.runs.length = 0;
  });
  afterEach(async () => {
    await env?.cleanup();
    env = undefined;
  });
  return () => env ?? expect.unreachable('no env');
}

const bytesAt = async (root: string, d: DiskRef, offset = 0, length = 4096): Promise<Buffer> => imageIO(root).read(d, offset, length);
const fill = (seed: number, length = 4096): Buffer => Buffer.alloc(length, seed);

describe('btrfs driver on a loop-mounted btrfs', async () => {
  const reason = await loopFsUnavailable('btrfs');
  if (reason !== null) return platformUnavailable('needs a btrfs loop filesystem', reason);
  const mountpoint = useLoopBtrfs(1024);

  driverContract('btrfs', async () => {
    const env = await btrfsEnv(mountpoint());
    return { driver: env.driver, io: imageIO(env.root), sizesKnown: false, fingerprint: () => fingerprint(env.root), cleanup: env.cleanup };
  });

  describe('btrfs specifics', () => {
    const e = useEnv(mountpoint);
    const d: DiskRef = { path: 'vm1/disk0', sizeBytes: 8 * MiB };
    const subvol = (): string => join(e().root, 'vm1', 'disk0');
    const snapDir = (): string => join(e().root, '.snapshots', 'vm1', 'disk0');
    const write = (seed: number, disk = d): Promise<void> => imageIO(e().root).write(disk, 0, fill(seed));
    const leftovers = async (): Promise<string[]> => (await readdir(join(e().root, 'vm1'))).filter((n) => n !== 'disk0');
    const isSubvolume = async (path: string): Promise<boolean> => (await lstat(path).catch(() => null))?.ino === 256;

    it('lays a disk out as a subvolume with a sparse disk.img, snapshots as read-only subvolumes named in the disk index', async () => {
      await e().driver.createDisk(d);
      expect(await isSubvolume(subvol())).toBe(true);
      const img = await lstat(join(subvol(), 'disk.img'));
      expect([img.size, img.blocks]).toEqual([8 * MiB, 0]);
      const info = await e().driver.create(d, 'es-1', { name: 'before "upgrade" ü' });
      expect(await isSubvolume(join(snapDir(), 'es-1'))).toBe(true);
      expect((await sh('btrfs', 'property', 'get', join(snapDir(), 'es-1'), 'ro')).trim()).toBe('ro=true');
      expect(await readFile(join(snapDir(), '.esnap-index'), 'utf8')).toBe(
        '\n' + JSON.stringify({ id: 'es-1', name: 'before "upgrade" ü', created: info.created.toISOString() }),
      );
      expect((await readdir(snapDir())).sort()).toEqual(['.esnap-index', 'es-1']);
      expect(info.size).toBeNull(); // quotas are off on this filesystem
      expect(e().runs.map((r) => r.argv.slice(0, 3))).toEqual([
        ['btrfs', 'subvolume', 'create'],
        ['btrfs', 'subvolume', 'snapshot'],
      ]);
    });

    it('rollback keeps the path, restores the bytes, keeps newer snapshots and leaves nothing behind', async () => {
      await e().driver.createDisk(d);
      await write(1);
      await e().driver.create(d, 'es-1', { name: 'one' });
      await write(2);
      await e().driver.create(d, 'es-2', { name: 'two' });
      await write(3);
      e().runs.length = 0;
      await e().driver.rollback(d, 'es-1');
      expect(await isSubvolume(subvol())).toBe(true);
      expect(await bytesAt(e().root, d)).toEqual(fill(1));
      expect((await e().driver.list(d)).map((s) => [s.id, s.name])).toEqual([['es-1', 'one'], ['es-2', 'two']]);
      expect(await leftovers()).toEqual([]);
      expect(e().runs.map((r) => r.argv.slice(0, 4))).toEqual([
        ['btrfs', 'subvolume', 'snapshot', join(snapDir(), 'es-1')],
        ['btrfs', 'subvolume', 'delete', '--commit-after'],
      ]);
      // The new disk is writable and the snapshot it came from is untouched by writes to it.
      await write(4);
      await e().driver.rollback(d, 'es-2');
      expect(await bytesAt(e().root, d)).toEqual(fill(2));
      await e().driver.rollback(d, 'es-1');
      expect(await bytesAt(e().root, d)).toEqual(fill(1));
    });

    it('restore replaces the target disk, keeps its path and its own snapshots', async () => {
      const dst: DiskRef = { path: 'vm2/disk0', sizeBytes: 8 * MiB };
      await e().driver.createDisk(d);
      await e().driver.createDisk(dst);
      await write(1);
      await e().driver.create(d, 'es-1', { name: 'src' });
      await write(2, dst);
      await e().driver.create(dst, 'es-5', { name: 'dst' });
      await write(3, dst);
      await e().driver.restore(d, 'es-1', dst);
      expect(await bytesAt(e().root, dst)).toEqual(fill(1));
      expect((await e().driver.list(dst)).map((s) => s.id)).toEqual(['es-5']);
      await e().driver.rollback(dst, 'es-5');
      expect(await bytesAt(e().root, dst)).toEqual(fill(2));
      expect((await readdir(join(e().root, 'vm2'))).sort()).toEqual(['disk0']);
    });

    it('destroys many snapshots with one btrfs process, ids that do not exist included and ignored', async () => {
      await e().driver.createDisk(d);
      const ids = Array.from({ length: 40 }, (_, i) => `es-${i + 1}`);
      for (const id of ids) await e().driver.create(d, id, { name: id });
      e().runs.length = 0;
      await e().driver.destroy(d, [...ids.slice(0, 30), 'es-99', 'as-5']);
      expect(e().runs).toHaveLength(1);
      const argv = e().runs[0]!.argv;
      expect(argv.slice(0, 3)).toEqual(['btrfs', 'subvolume', 'delete']);
      // The bare command: no existence check first; btrfs deletes what exists and the two missing
      // paths make it exit non-zero, which the driver accepts once none of the paths is left.
      expect(argv.slice(3)).toEqual([...ids.slice(0, 30), 'es-99', 'as-5'].map((id) => join(snapDir(), id)));
      expect(e().runs[0]!.code).not.toBe(0);
      expect((await e().driver.list(d)).map((s) => s.id)).toEqual(ids.slice(30));
      // One append for the batch: the destroyed ids are tombstoned, the other ten keep their names.
      const index = parseIndex(await readFile(join(snapDir(), '.esnap-index'), 'utf8'));
      expect([...index.keys()]).toEqual(ids.slice(30));
      expect((await e().driver.list(d)).map((s) => s.name)).toEqual(ids.slice(30));
      await e().driver.destroy(d, ['es-1', 'es-99']); // all gone already: no error
      expect((await e().driver.list(d)).map((s) => s.id)).toEqual(ids.slice(30));
      // A folder that is not a snapshot cannot be deleted by btrfs: an error, not silence.
      await mkdir(join(snapDir(), 'es-77'));
      const indexBefore = await readFile(join(snapDir(), '.esnap-index'), 'utf8');
      await expectStorageError(e().driver.destroy(d, ['es-31', 'es-77']), 'backend');
      expect((await e().driver.list(d)).map((s) => s.id)).toEqual(ids.slice(31));
      // The records are written only after a delete that succeeded (the index was opened meanwhile).
      expect(await readFile(join(snapDir(), '.esnap-index'), 'utf8')).toBe(indexBefore);
      // Without an index (lost, or never written), a destroy writes one holding just its records.
      await rm(join(snapDir(), '.esnap-index'));
      await e().driver.destroy(d, ['es-32']);
      expect(await readFile(join(snapDir(), '.esnap-index'), 'utf8')).toBe('\n{"id":"es-32","deleted":true}');
    });

    it('deleteDisk deletes the disk and its snapshots in one committed btrfs process', async () => {
      await e().driver.createDisk(d);
      for (const id of ['es-1', 'es-2', 'as-3']) await e().driver.create(d, id, { name: id });
      e().runs.length = 0;
      await e().driver.deleteDisk(d);
      expect(e().runs).toHaveLength(1);
      const argv = e().runs[0]!.argv;
      expect(argv.slice(0, 4)).toEqual(['btrfs', 'subvolume', 'delete', '--commit-after']);
      // Snapshots first, the disk last: a crash in between leaves a disk that a retry deletes.
      expect(argv.slice(4, -1).sort()).toEqual(['as-3', 'es-1', 'es-2'].map((id) => join(snapDir(), id)));
      expect(argv.at(-1)).toBe(subvol());
      // The folder it lay in went with it (empty now), not the storage root.
      await expect(readdir(join(e().root, 'vm1'))).rejects.toMatchObject({ code: 'ENOENT' });
      await expect(readdir(snapDir())).rejects.toMatchObject({ code: 'ENOENT' });
      expect(await readdir(e().root)).toContain('.snapshots');
    });

    it('refuses bad names before any command runs', async () => {
      await e().driver.createDisk(d);
      await e().driver.create(d, 'es-1', { name: 'one' });
      await mkdir(join(e().root, 'elsewhere'));
      await symlink(join(e().root, 'elsewhere'), join(e().root, 'link'));
      e().runs.length = 0;
      const bad: DiskRef[] = [
        ...BAD_PATHS.map((path) => ({ path, sizeBytes: MiB })),
        { path: 'x'.repeat(241), sizeBytes: MiB }, // `.<name>.esnap-old` would pass NAME_MAX
        { path: 'vm1/disk0/inner', sizeBytes: MiB }, // a disk inside a disk
        { path: 'link/disk0', sizeBytes: MiB }, // leaves the storage through a symlink
        { path: 'link', sizeBytes: MiB },
      ];
      for (const b of bad) {
        await expectStorageError(e().driver.createDisk(b), 'invalid_name');
        await expectStorageError(e().driver.create(b, 'es-2', { name: 'x' }), 'invalid_name');
        await expectStorageError(e().driver.destroy(b, ['es-1']), 'invalid_name');
        await expectStorageError(e().driver.deleteDisk(b), 'invalid_name');
        await expectStorageError(e().driver.rollback(b, 'es-1'), 'invalid_name');
        await expectStorageError(e().driver.restore(d, 'es-1', b), 'invalid_name');
      }
      for (const id of BAD_IDS) {
        await expectStorageError(e().driver.create(d, id, { name: 'x' }), 'invalid_name');
        await expectStorageError(e().driver.destroy(d, ['es-1', id]), 'invalid_name');
        await expectStorageError(e().driver.rollback(d, id), 'invalid_name');
      }
      expect(e().runs).toEqual([]);
      expect(await readdir(join(e().root, 'elsewhere'))).toEqual([]);
      expect((await e().driver.list(d)).map((s) => s.id)).toEqual(['es-1']);
    });

    describe('crash recovery in init()', () => {
      /** Sets up disk seed 1, snapshot es-1 of seed 2 (the rollback target), disk back at seed 3. */
      const prepare = async (): Promise<{ newPath: string; oldPath: string }> => {
        await e().driver.createDisk(d);
        await write(2);
        await e().driver.create(d, 'es-1', { name: 'target' });
        await write(3);
        return { newPath: join(e().root, 'vm1', '.disk0.esnap-new'), oldPath: join(e().root, 'vm1', '.disk0.esnap-old') };
      };
      const recovered = async (seed: number): Promise<void> => {
        await e().driver.init();
        expect(await isSubvolume(subvol())).toBe(true);
        expect(await e().driver.diskExists(d)).toBe(true);
        expect(await bytesAt(e().root, d)).toEqual(fill(seed));
        expect(await leftovers()).toEqual([]);
        expect((await e().driver.list(d)).map((s) => s.id)).toEqual(['es-1']);
        await e().driver.rollback(d, 'es-1'); // and the disk works normally again
        expect(await bytesAt(e().root, d)).toEqual(fill(2));
      };

      it('after step 1 (new snapshot made): the old disk stays', async () => {
        const { newPath } = await prepare();
        await sh('btrfs', 'subvolume', 'snapshot', join(snapDir(), 'es-1'), newPath);
        await recovered(3);
      });

      it('after step 2 (old disk moved aside, path empty): the old disk goes back', async () => {
        const { newPath, oldPath } = await prepare();
        await sh('btrfs', 'subvolume', 'snapshot', join(snapDir(), 'es-1'), newPath);
        await rename(subvol(), oldPath);
        expect(await e().driver.diskExists(d)).toBe(false);
        await recovered(3);
      });

      it('after step 3 (new disk in place): the new disk stays, the old one is deleted', async () => {
        const { newPath, oldPath } = await prepare();
        await sh('btrfs', 'subvolume', 'snapshot', join(snapDir(), 'es-1'), newPath);
        await rename(subvol(), oldPath);
        await rename(newPath, subvol());
        await recovered(2);
      });

      it('during a restore\'s receive (a backup stream into the staging folder): the old disk stays, the staging goes', async () => {
        await prepare();
        // What a kill mid `btrfs receive` leaves: a (partly) received subvolume in a staging folder.
        const staging = join(e().root, '.esnap-receive', '1795770372000-0a1b2c3d');
        await mkdir(staging, { recursive: true });
        await sh('btrfs', 'subvolume', 'snapshot', join(snapDir(), 'es-1'), join(staging, 'is-7'));
        await e().driver.init();
        expect(await readdir(join(e().root, '.esnap-receive'))).toEqual([]);
        await recovered(3);
      });

      it('a rollback that finds leftovers (init() not run since the crash) recovers first', async () => {
        const { newPath, oldPath } = await prepare();
        await sh('btrfs', 'subvolume', 'snapshot', join(snapDir(), 'es-1'), newPath);
        await rename(subvol(), oldPath);
        await expectStorageError(e().driver.rollback(d, 'es-1'), 'disk_missing'); // the path is empty: refused, nothing done
        await e().driver.init();
        await write(4);
        await rename(subvol(), oldPath); // a second crash, in step 2 again, leaves only `.esnap-old`
        await e().driver.init();
        expect(await bytesAt(e().root, d)).toEqual(fill(4));
        await sh('btrfs', 'subvolume', 'snapshot', join(snapDir(), 'es-1'), newPath);
        await e().driver.rollback(d, 'es-1'); // `.esnap-new` must not make btrfs snapshot INTO it
        expect(await bytesAt(e().root, d)).toEqual(fill(2));
        expect(await leftovers()).toEqual([]);
      });

      it('a create that crashed before its snapshot leaves a record that is never listed', async () => {
        await prepare();
        // The record is appended before `btrfs subvolume snapshot` runs; then the process died.
        appendIndex(snapDir(), [{ id: 'es-2', name: 'never made', created: new Date() }]);
        expect((await e().driver.list(d)).map((s) => [s.id, s.name])).toEqual([['es-1', 'target']]);
        await e().driver.init();
        expect((await e().driver.list(d)).map((s) => [s.id, s.name])).toEqual([['es-1', 'target']]);
        // The id can still be taken, and then carries its new name.
        await e().driver.create(d, 'es-2', { name: 'made' });
        expect((await e().driver.list(d)).map((s) => [s.id, s.name])).toEqual([['es-1', 'target'], ['es-2', 'made']]);
      });

      it('a record torn by a machine crash spoils only itself: the snapshot is listed without a name', async () => {
        await prepare();
        await sh('btrfs', 'subvolume', 'snapshot', '-r', subvol(), join(snapDir(), 'es-2'));
        await appendFile(join(snapDir(), '.esnap-index'), '\n{"id":"es-2","name":"cut sh'); // the write was cut short
        await e().driver.create(d, 'es-3', { name: 'after' });
        const listed = new Map((await e().driver.list(d)).map((s) => [s.id, s]));
        expect([...listed.values()].map((s) => [s.id, s.name]).sort()).toEqual([['es-1', 'target'], ['es-2', null], ['es-3', 'after']]);
        expect(Math.abs(listed.get('es-2')!.created.getTime() - Date.now())).toBeLessThan(60_000); // btrfs's own time
      });

      it('init() removes temporaries and side-cars of the old layout whose snapshot does not exist', async () => {
        await prepare();
        await writeFile(join(snapDir(), 'es-2.json'), JSON.stringify({ name: 'never made', created: new Date().toISOString() }));
        await writeFile(join(snapDir(), '.es-3.json.tmp-0123456789ab'), '{"na');
        await writeFile(join(snapDir(), '..esnap-index.tmp-0123456789ab'), '{"esnapIndex":1');
        expect((await e().driver.list(d)).map((s) => s.id)).toEqual(['es-1']);
        await e().driver.init();
        expect((await readdir(snapDir())).sort()).toEqual(['.esnap-index', 'es-1']);
        expect((await e().driver.list(d)).map((s) => [s.id, s.name])).toEqual([['es-1', 'target']]);
      });

      it('a crashed createDisk (subvolume without image) is not a disk until createDisk finishes it', async () => {
        await mkdir(join(e().root, 'vm1'));
        await sh('btrfs', 'subvolume', 'create', subvol());
        expect(await e().driver.diskExists(d)).toBe(false);
        await expectStorageError(e().driver.create(d, 'es-1', { name: 'x' }), 'disk_missing');
        await e().driver.createDisk(d);
        expect(await e().driver.diskExists(d)).toBe(true);
        expect((await lstat(join(subvol(), 'disk.img'))).size).toBe(8 * MiB);
      });
    });

    it('a snapshot without a side-car (made by hand) is listed with btrfs creation time and no name', async () => {
      await e().driver.createDisk(d);
      await mkdir(snapDir(), { recursive: true });
      const before = Date.now();
      await sh('btrfs', 'subvolume', 'snapshot', '-r', subvol(), join(snapDir(), 'manual'));
      const [s] = await e().driver.list(d);
      expect(s).toMatchObject({ id: 'manual', name: null, size: null });
      expect(Math.abs(s!.created.getTime() - before)).toBeLessThan(5000);
    });

    it('a storage of the old layout (a side-car per snapshot) lists the same before and after init() converts it', async () => {
      // What the driver before the index made: `<id>.json` with {name, created} beside each snapshot.
      await e().driver.createDisk(d);
      await mkdir(snapDir(), { recursive: true });
      const times = ['2026-01-02T03:04:05.678Z', '2026-01-02T03:04:06.001Z'];
      for (const [i, id] of ['es-1', 'as-2'].entries()) {
        await sh('btrfs', 'subvolume', 'snapshot', '-r', subvol(), join(snapDir(), id));
        await writeFile(join(snapDir(), `${id}.json`), JSON.stringify({ name: `old ${i}`, created: times[i] }));
      }
      await writeFile(join(snapDir(), 'es-9.json'), '{"name":"broken'); // unreadable, and without a snapshot
      const expected = [
        { id: 'es-1', name: 'old 0', created: new Date(times[0]!), size: null },
        { id: 'as-2', name: 'old 1', created: new Date(times[1]!), size: null },
      ];
      const fresh = new BtrfsDriver({ root: e().root, runner: plain });
      expect(await fresh.list(d)).toEqual(expected); // not converted yet: the side-cars are read
      await fresh.init();
      expect((await readdir(snapDir())).sort()).toEqual(['.esnap-index', 'as-2', 'es-1']);
      expect(await fresh.list(d)).toEqual(expected);
      await fresh.create(d, 'es-3', { name: 'new' });
      await fresh.destroy(d, ['es-1']);
      expect((await fresh.list(d)).map((s) => [s.id, s.name])).toEqual([['as-2', 'old 1'], ['es-3', 'new']]);
      await fresh.init(); // converting again changes nothing
      expect((await fresh.list(d)).map((s) => [s.id, s.name])).toEqual([['as-2', 'old 1'], ['es-3', 'new']]);
    });

    it('a disk deleted and made again at the same path does not inherit the old names', async () => {
      await e().driver.createDisk(d);
      await e().driver.create(d, 'es-1', { name: 'old disk' });
      await e().driver.deleteDisk(d);
      await e().driver.createDisk(d);
      await mkdir(snapDir(), { recursive: true });
      await sh('btrfs', 'subvolume', 'snapshot', '-r', subvol(), join(snapDir(), 'es-1')); // same id, not esnap's
      expect((await e().driver.list(d)).map((s) => [s.id, s.name])).toEqual([['es-1', null]]);
    });

    it('refuses a root that is not on btrfs', async (ctx) => {
      // The temp folder may be btrfs itself; /dev/shm (tmpfs) is the fallback on any Linux.
      const parent = await notOnBtrfs([tmpdir(), '/dev/shm']);
      if (!requirePlatform(parent === null ? 'no folder off btrfs to try (tmpdir and /dev/shm are btrfs or missing)' : null)) return ctx.skip();
      const root = await mkdtemp(join(parent!, 'esnap-not-btrfs-'));
      try {
        await expectStorageError(new BtrfsDriver({ root, runner: plain }).init(), 'backend');
      } finally {
        await rm(root, { recursive: true, force: true });
      }
    });
  });
});

describe('btrfs driver with quota groups', async () => {
  const reason = await loopFsUnavailable('btrfs');
  if (reason !== null) return platformUnavailable('needs a btrfs loop filesystem', reason);
  const mountpoint = useLoopBtrfs(512);
  const e = useEnv(mountpoint);
  const d: DiskRef = { path: 'disk0', sizeBytes: 16 * MiB };
  const quota = (on: boolean): Promise<unknown> =>
    on ? sh('btrfs', 'quota', 'enable', mountpoint()).then(() => sh('btrfs', 'quota', 'rescan', '-w', mountpoint())) : sh('btrfs', 'quota', 'disable', mountpoint());

  it('reports exclusive bytes with quotas on, null with quotas off, spawning nothing extra when off', async () => {
    const a: DiskRef = { path: 'a', sizeBytes: 16 * MiB };
    await e().driver.createDisk(a);
    await imageIO(e().root).write(a, 0, randomBytes(MiB));
    e().runs.length = 0;
    expect(await e().driver.create(a, 'es-1', { name: 'off' })).toMatchObject({ size: null });
    expect(await e().driver.list(a)).toMatchObject([{ id: 'es-1', size: null }]);
    expect(e().runs).toHaveLength(1); // the snapshot; no qgroup call while quotas are off

    await quota(true);
    try {
      await e().driver.createDisk(d);
      await imageIO(e().root).write(d, 0, randomBytes(4 * MiB));
      const info = await e().driver.create(d, 'es-2', { name: 'on' });
      // A fresh snapshot shares everything with its disk but its own tree root.
      expect(info.size).toBeGreaterThan(0);
      expect(info.size).toBeLessThan(MiB);
      // Overwrite the disk: the old 4 MiB now belong to the snapshot alone, once btrfs has committed.
      await imageIO(e().root).write(d, 0, randomBytes(4 * MiB));
      await sh('btrfs', 'filesystem', 'sync', e().root);
      e().runs.length = 0;
      const [es2] = await e().driver.list(d);
      expect(e().runs.map((r) => r.argv)).toEqual([['btrfs', '--format', 'json', 'qgroup', 'show', '--raw', e().root]]);
      expect(es2).toMatchObject({ id: 'es-2', name: 'on' });
      expect(es2!.size).toBeGreaterThanOrEqual(4 * MiB);
      expect(es2!.size).toBeLessThan(5 * MiB);
      // Snapshots taken before quotas were on are counted too, after the rescan.
      const [es1] = await e().driver.list(a);
      expect(Number.isSafeInteger(es1!.size)).toBe(true);
    } finally {
      await quota(false);
    }
    expect((await e().driver.list(d)).map((s) => s.size)).toEqual([null]);
  });

  it('fails with no_space when the storage subvolume is over its quota, leaving no half snapshot', async () => {
    // The storage root is a subvolume with a 2 MiB limit, filled to it.
    const root = join(e().root, 'limited');
    await sh('btrfs', 'subvolume', 'create', root);
    await quota(true);
    try {
      const runs: RunInfo[] = [];
      const driver = new BtrfsDriver({ root, runner: new NodeCommandRunner({ onRun: (info) => runs.push(info) }) });
      await driver.init();
      await driver.createDisk(d);
      await driver.create(d, 'es-1', { name: 'one' });
      await sh('btrfs', 'qgroup', 'limit', '2M', root);
      const filler = await open(join(root, 'filler'), 'w');
      try {
        for (let off = 0; off < 64 * MiB; off += 256 * 1024) {
          await filler.write(randomBytes(256 * 1024), 0, 256 * 1024, off);
          await filler.sync();
        }
        expect.unreachable('the 2 MiB limit never stopped the filler');
      } catch (err) {
        // libuv 1.46 has no name for EDQUOT ("Unknown system error -122"): compare the number.
        if ((err as NodeJS.ErrnoException).errno !== -osConstants.errno.EDQUOT) throw err;
      } finally {
        await filler.close();
      }
      await expectStorageError(driver.create(d, 'es-2', { name: 'two' }), 'no_space');
      runs.length = 0;
      const listed = await driver.list(d);
      expect(listed.map((s) => s.id)).toEqual(['es-1']);
      // btrfs-progs 6.2 aborts on JSON once a group has a limit; the --raw table still gives the size.
      expect(runs.map((r) => [r.argv.slice(0, 3), r.code])).toEqual([
        [['btrfs', '--format', 'json'], 134],
        [['btrfs', 'qgroup', 'show'], 0],
      ]);
      expect(Number.isSafeInteger(listed[0]!.size)).toBe(true);
      expect((await readdir(join(root, '.snapshots', 'disk0'))).sort()).toEqual(['.esnap-index', 'es-1']);
      await unlink(join(root, 'filler'));
      await sh('btrfs', 'qgroup', 'limit', 'none', root);
      await driver.create(d, 'es-2', { name: 'two' });
      expect((await driver.list(d)).map((s) => s.id)).toEqual(['es-1', 'es-2']);
    } finally {
      await quota(false);
    }
  });
});
