/**
 * The storage driver contract: every driver (file, qcow2, zfs, btrfs) runs this one suite. Backend
 * differences are read from `driver.capabilities` or declared by the set-up, never from `kind`.
 *
 * Example:
 *   driverContract('file on XFS', async () => {
 *     const root = await mkdtemp(join(mountpoint, 'c-'));
 *     const driver = new FileDriver({ root, runner });
 *     return { driver, io: fileDiskIO(root), sizesKnown: true, cleanup: () => rm(root, { recursive: true }) };
 *   });
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StorageError, type DiskRef, type StorageDriver, type StorageErrorCode } from '../../src/storage/driver.js';

/** How the contract reads and writes a disk's bytes on this backend (a file, a zvol, qemu-io…); never past its end. */
export interface DiskIO {
  write(disk: DiskRef, offset: number, data: Buffer): Promise<void>;
  read(disk: DiskRef, offset: number, length: number): Promise<Buffer>;
}

export interface ContractTarget {
  /** A driver on a fresh, empty storage; the contract calls init() itself. */
  readonly driver: StorageDriver;
  readonly io: DiskIO;
  /** True when `size` must be a number (file, zfs); otherwise a number or null is accepted. */
  readonly sizesKnown?: boolean;
  /** A description of everything on the storage, to prove a refused call changed nothing. */
  fingerprint?(): Promise<string>;
  /** A disk may lie below another disk's path (zfs: a child dataset); elsewhere that path is taken. */
  readonly disksNest?: boolean;
  cleanup(): Promise<void>;
}

const MiB = 1024 * 1024;
const DISK_SIZE = 8 * MiB;
const MARK = 4096;
/** Where the contract writes its marks: the first block, an unaligned middle, the last block. */
const offsets = (size: number): number[] => [0, Math.floor((size * 3) / 8) + 17, size - MARK];

export const BAD_IDS = ['../x', 'es-1;rm', 'es-1 x', '', 'es-', 'ES-1', 'es-1\n', 'es-1/../es-2', 'xs-1', '-rf'];
export const BAD_PATHS = ['../etc', '/abs', 'a/../b', '.snapshots/x', '', 'a//b', 'a/', './a', 'a\0b', 'a b/../../c'];

/** Deterministic bytes per seed, different at every offset so a misplaced write shows up. */
function mark(seed: number, offset: number): Buffer {
  const buf = Buffer.alloc(MARK);
  let x = (seed * 2654435761 + offset) >>> 0 || 1;
  for (let i = 0; i < MARK; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    buf[i] = x & 0xff;
  }
  return buf;
}

export async function expectStorageError(promise: Promise<unknown>, code: StorageErrorCode): Promise<void> {
  const err = await promise.then(
    () => new Error(`expected StorageError(${code}), but the call succeeded`),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StorageError);
  expect((err as StorageError).code, (err as Error).message).toBe(code);
}

export function driverContract(label: string, setup: () => Promise<ContractTarget>): void {
  describe(`storage driver contract: ${label}`, () => {
    let t: ContractTarget | undefined;
    const target = (): ContractTarget => t ?? expect.unreachable('set-up did not run');
    const driver = (): StorageDriver => target().driver;
    const disk = (path: string, sizeBytes = DISK_SIZE): DiskRef => ({ path, sizeBytes });

    const writeMarks = async (d: DiskRef, seed: number): Promise<void> => {
      for (const off of offsets(d.sizeBytes ?? DISK_SIZE)) await target().io.write(d, off, mark(seed, off));
    };
    const expectMarks = async (d: DiskRef, seed: number): Promise<void> => {
      for (const off of offsets(d.sizeBytes ?? DISK_SIZE)) {
        const got = await target().io.read(d, off, MARK);
        expect(got.equals(mark(seed, off)), `${d.path} at ${off} holds the bytes of seed ${seed}`).toBe(true);
      }
    };
    const newDisk = async (path: string, seed?: number, size = DISK_SIZE): Promise<DiskRef> => {
      const d = disk(path, size);
      await driver().createDisk(d);
      if (seed !== undefined) await writeMarks(d, seed);
      return d;
    };
    const ids = async (d: DiskRef): Promise<string[]> => (await driver().list(d)).map((s) => s.id);
    /** Storage state, to compare before and after a call that must change nothing. */
    const state = async (disks: DiskRef[]): Promise<unknown> => ({
      fingerprint: await target().fingerprint?.(),
      lists: await Promise.all(disks.map((d) => driver().list(d))),
    });

    beforeEach(async () => {
      t = await setup();
      await t.driver.init();
    });
    afterEach(async () => {
      await t?.cleanup();
      t = undefined;
    });

    it('creates a disk once; a second createDisk is a no-op', async () => {
      const d = await newDisk('vm1/disk0', 1);
      expect(await driver().diskExists(d)).toBe(true);
      expect(await driver().diskExists(disk('vm1/disk1'))).toBe(false);
      await driver().createDisk(d);
      await expectMarks(d, 1);
      expect(await driver().list(d)).toEqual([]);
    });

    it('create and list report ids, names, sizes and creation times', async () => {
      const d = await newDisk('vm1/disk0', 1);
      const before = Date.now();
      const first = await driver().create(d, 'es-1', { name: 'before-upgrade' });
      await writeMarks(d, 2);
      await driver().create(d, 'as-2', { name: 'daily-20261127_000000' });
      const after = Date.now();
      expect(first).toMatchObject({ id: 'es-1', name: 'before-upgrade' });

      const list = await driver().list(d);
      expect(list.map((s) => [s.id, s.name])).toEqual([
        ['es-1', 'before-upgrade'],
        ['as-2', 'daily-20261127_000000'],
      ]);
      for (const s of list) {
        expect(s.created).toBeInstanceOf(Date);
        // Some backends keep whole seconds; allow for that, not for a wrong clock or time zone.
        expect(s.created.getTime()).toBeGreaterThanOrEqual(before - 2000);
        expect(s.created.getTime()).toBeLessThanOrEqual(after + 2000);
        if (target().sizesKnown) expect(Number.isSafeInteger(s.size) && (s.size ?? -1) >= 0, `size ${s.size}`).toBe(true);
        else expect(s.size === null || (Number.isSafeInteger(s.size) && s.size >= 0)).toBe(true);
      }
      expect(Math.abs(list[0]!.created.getTime() - first.created.getTime())).toBeLessThanOrEqual(1000);
    });

    it('lists in creation order, ties broken by id', async () => {
      const d = await newDisk('d', 1);
      for (const id of ['es-3', 'as-1', 'es-10', 'es-2']) await driver().create(d, id, { name: id });
      const list = await driver().list(d);
      expect(list).toHaveLength(4);
      for (let i = 1; i < list.length; i++) {
        const [a, b] = [list[i - 1]!, list[i]!];
        const ordered = a.created < b.created || (a.created.getTime() === b.created.getTime() && a.id < b.id);
        expect(ordered, `${a.id} (${a.created.toISOString()}) before ${b.id} (${b.created.toISOString()})`).toBe(true);
      }
    });

    it('rollback restores the bytes of the snapshot', async () => {
      const d = await newDisk('vm1/disk0', 1);
      await driver().create(d, 'es-1', { name: 'one' });
      await writeMarks(d, 2);
      await expectMarks(d, 2);
      await driver().rollback(d, 'es-1');
      await expectMarks(d, 1);
    });

    it('rollback keeps or drops newer snapshots as capabilities.rollbackKeepsNewer says', async () => {
      const d = await newDisk('d', 1);
      await driver().create(d, 'es-1', { name: 'one' });
      await writeMarks(d, 2);
      await driver().create(d, 'es-2', { name: 'two' });
      await writeMarks(d, 3);
      await driver().rollback(d, 'es-1');
      await expectMarks(d, 1);
      if (driver().capabilities.rollbackKeepsNewer) {
        expect(await ids(d)).toEqual(['es-1', 'es-2']);
        await driver().rollback(d, 'es-2');
        await expectMarks(d, 2);
      } else {
        expect(await ids(d)).toEqual(['es-1']);
      }
    });

    it('destroys several snapshots in one call and ignores missing ids', async () => {
      const d = await newDisk('d', 1);
      for (const id of ['es-1', 'es-2', 'es-3', 'as-4']) await driver().create(d, id, { name: id });
      await driver().destroy(d, ['es-1', 'es-3', 'es-77']);
      expect(await ids(d)).toEqual(['es-2', 'as-4']);
      await driver().destroy(d, []);
      expect(await ids(d)).toEqual(['es-2', 'as-4']);
      await driver().destroy(d, ['es-2', 'as-4']);
      expect(await driver().list(d)).toEqual([]);
      await expectMarks(d, 1);
    });

    it('restores a snapshot into another disk of the same size', async () => {
      const src = await newDisk('vm1/disk0', 1);
      await driver().create(src, 'es-1', { name: 'one' });
      await writeMarks(src, 2);
      const dst = await newDisk('vm2/disk0', 3);
      await driver().restore(src, 'es-1', dst);
      await expectMarks(dst, 1);
      await expectMarks(src, 2);
      expect(await ids(src)).toEqual(['es-1']);
      expect(await driver().list(dst)).toEqual([]);
    });

    it('refuses to restore into a disk of another size, changing nothing', async () => {
      const src = await newDisk('vm1/disk0', 1);
      await driver().create(src, 'es-1', { name: 'one' });
      const dst = await newDisk('vm2/disk0', 3, DISK_SIZE * 2);
      const before = await state([src, dst]);
      await expectStorageError(driver().restore(src, 'es-1', dst), 'size_mismatch');
      expect(await state([src, dst])).toEqual(before);
      await expectMarks(dst, 3);
    });

    it('restore of a missing snapshot or into a missing disk is refused', async () => {
      const src = await newDisk('vm1/disk0', 1);
      const dst = await newDisk('vm2/disk0', 3);
      await expectStorageError(driver().restore(src, 'es-9', dst), 'snapshot_missing');
      await driver().create(src, 'es-1', { name: 'one' });
      await expectStorageError(driver().restore(src, 'es-1', disk('vm3/disk0')), 'disk_missing');
      expect(await driver().diskExists(disk('vm3/disk0'))).toBe(false);
      await expectMarks(dst, 3);
    });

    it('refuses invalid snapshot ids before touching anything', async () => {
      const d = await newDisk('d', 1);
      const other = await newDisk('e', 2);
      await driver().create(d, 'es-1', { name: 'one' });
      const before = await state([d, other]);
      for (const bad of BAD_IDS) {
        await expectStorageError(driver().create(d, bad, { name: 'x' }), 'invalid_name');
        await expectStorageError(driver().rollback(d, bad), 'invalid_name');
        await expectStorageError(driver().restore(d, bad, other), 'invalid_name');
        await expectStorageError(driver().destroy(d, [bad]), 'invalid_name');
        // One bad id refuses the whole batch: es-1 must survive.
        await expectStorageError(driver().destroy(d, ['es-1', bad]), 'invalid_name');
        // Validation comes before lookups: a missing disk still reports the bad name.
        await expectStorageError(driver().create(disk('missing'), bad, { name: 'x' }), 'invalid_name');
      }
      expect(await state([d, other])).toEqual(before);
    });

    it('refuses invalid disk paths before touching anything', async () => {
      const d = await newDisk('d', 1);
      await driver().create(d, 'es-1', { name: 'one' });
      const before = await state([d]);
      for (const path of BAD_PATHS) {
        const bad = disk(path);
        await expectStorageError(driver().diskExists(bad), 'invalid_name');
        await expectStorageError(driver().createDisk(bad), 'invalid_name');
        await expectStorageError(driver().deleteDisk(bad), 'invalid_name');
        await expectStorageError(driver().create(bad, 'es-2', { name: 'x' }), 'invalid_name');
        await expectStorageError(driver().destroy(bad, ['es-1']), 'invalid_name');
        await expectStorageError(driver().rollback(bad, 'es-1'), 'invalid_name');
        await expectStorageError(driver().list(bad), 'invalid_name');
        await expectStorageError(driver().restore(bad, 'es-1', d), 'invalid_name');
        await expectStorageError(driver().restore(d, 'es-1', bad), 'invalid_name');
      }
      expect(await state([d])).toEqual(before);
      await expectMarks(d, 1);
    });

    it('reports a whole image as undamaged, a missing one and one smaller than its disk as damaged', async () => {
      const d = await newDisk('vm1/disk0', 1);
      expect(await driver().imageDamage(d)).toBeNull();
      expect(await driver().imageDamage(d, { thorough: true })).toBeNull();
      // The same image measured against a disk defined larger reads as cut off.
      expect(await driver().imageDamage({ ...d, sizeBytes: (d.sizeBytes ?? 0) * 2 })).not.toBeNull();
      expect(await driver().imageDamage(disk('vm9/disk0'))).not.toBeNull();
    });

    it('reports a missing disk and creates nothing for it', async () => {
      const d = await newDisk('d', 1);
      const missing = disk('vm9/disk0');
      const before = await state([d]);
      expect(await driver().diskExists(missing)).toBe(false);
      await expectStorageError(driver().create(missing, 'es-1', { name: 'x' }), 'disk_missing');
      await expectStorageError(driver().rollback(missing, 'es-1'), 'disk_missing');
      // An error, not []: an unmounted storage must not look like "all snapshots are gone".
      await expectStorageError(driver().list(missing), 'disk_missing');
      await driver().deleteDisk(missing); // idempotent, so a retried delete succeeds
      expect(await state([d])).toEqual(before);
      expect(await driver().diskExists(missing)).toBe(false);
    });

    it('refuses an existing id and keeps the first snapshot as it was', async () => {
      const d = await newDisk('d', 1);
      await driver().create(d, 'es-1', { name: 'first' });
      await writeMarks(d, 2);
      const before = await state([d]);
      await expectStorageError(driver().create(d, 'es-1', { name: 'second' }), 'snapshot_exists');
      expect(await state([d])).toEqual(before);
      expect((await driver().list(d)).map((s) => [s.id, s.name])).toEqual([['es-1', 'first']]);
      await driver().rollback(d, 'es-1');
      await expectMarks(d, 1);
    });

    it('rollback to a missing snapshot changes nothing', async () => {
      const d = await newDisk('d', 1);
      await driver().create(d, 'es-1', { name: 'one' });
      await writeMarks(d, 2);
      const before = await state([d]);
      await expectStorageError(driver().rollback(d, 'es-2'), 'snapshot_missing');
      expect(await state([d])).toEqual(before);
      await expectMarks(d, 2);
    });

    it('leaves no half state after a sequence of failed calls', async () => {
      const d = await newDisk('d', 1);
      const small = await newDisk('small', 2, DISK_SIZE / 2);
      await driver().create(d, 'es-1', { name: 'one' });
      const before = await state([d, small]);
      const failures: Array<[() => Promise<unknown>, StorageErrorCode]> = [
        [() => driver().create(d, 'es-1', { name: 'again' }), 'snapshot_exists'],
        [() => driver().create(disk('nope'), 'es-2', { name: 'x' }), 'disk_missing'],
        [() => driver().restore(d, 'es-1', small), 'size_mismatch'],
        [() => driver().rollback(d, 'as-5'), 'snapshot_missing'],
        [() => driver().create(d, 'es-1 x', { name: 'x' }), 'invalid_name'],
      ];
      for (const [call, code] of failures) await expectStorageError(call(), code);
      expect(await state([d, small])).toEqual(before);
      // The storage still works normally afterwards.
      await driver().create(d, 'es-2', { name: 'two' });
      expect(await ids(d)).toEqual(['es-1', 'es-2']);
    });

    it('deleteDisk removes the disk and all its snapshots', async () => {
      const d = await newDisk('vm1/disk0', 1);
      const other = await newDisk('vm1/disk1', 2);
      await driver().create(d, 'es-1', { name: 'one' });
      await driver().create(other, 'es-1', { name: 'other' });
      await driver().deleteDisk(d);
      expect(await driver().diskExists(d)).toBe(false);
      await driver().createDisk(d);
      expect(await driver().list(d)).toEqual([]); // no snapshot comes back with a new disk of that name
      expect((await driver().list(other)).map((s) => s.name)).toEqual(['other']);
      await expectMarks(other, 2);
    });

    it('deleteDisk of a nested path leaves no empty folder behind, and keeps the folders other disks use', async () => {
      const keep = await newDisk('nestdir/keep', 2);
      const before = await target().fingerprint?.();
      const d = await newDisk('nestdir/a/b/img', 1);
      await driver().create(d, 'es-1', { name: 'one' });
      await driver().deleteDisk(d);
      expect(await driver().diskExists(d)).toBe(false);
      expect(await target().fingerprint?.()).toEqual(before);
      await expectMarks(keep, 2);
      // The same path can be created again.
      await driver().createDisk(d);
      expect(await driver().list(d)).toEqual([]);
    });

    it('a path below another disk, or above one, is taken: one message that names nothing that is there', async () => {
      const d = await newDisk('vm1/disk0', 1);
      if (target().disksNest) {
        await newDisk('vm1/disk0/x', 2); // a child dataset: both disks keep their bytes
        await expectMarks(d, 1);
        return;
      }
      const before = await state([d]);
      for (const path of ['vm1/disk0/x', 'vm1/disk0/a/b', 'vm1']) {
        const err = await driver().createDisk(disk(path)).then(() => null, (e: unknown) => e);
        expect(err, path).toBeInstanceOf(StorageError);
        expect((err as StorageError).code).toBe('invalid_name');
        expect((err as Error).message).toBe(`Disk path ${path} is not available: it, or a folder on it, is already taken`);
      }
      expect(await state([d])).toEqual(before);
      await expectMarks(d, 1);
    });

    it('reports storage size and free bytes', async () => {
      const s = await driver().stats();
      expect(Number.isSafeInteger(s.size) && s.size > 0).toBe(true);
      expect(Number.isSafeInteger(s.free) && s.free >= 0 && s.free <= s.size).toBe(true);
    });
  });
}
