/**
 * The qcow2 driver with a real qemu-system-x86_64 holding the image: over QMP while it runs,
 * refusing rollback and restore, and answering `busy` (image intact) when a QEMU holds the image
 * without a QMP socket the driver can use.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { QmpClient } from '../../src/guest/qmp.js';
import { StorageError, type DiskRef } from '../../src/storage/driver.js';
import { platformUnavailable } from '../platform/require.js';
import { qemuUnavailable, startQemu, type QemuProcess } from '../platform/qemu.js';
import { expectStorageError } from './driver-contract.js';
import { checkImage, fingerprint, MiB, pattern, program, qcow2Env, qcow2IO, tags, type Qcow2Env } from './qcow2.helpers.js';

async function notStopped(p: Promise<unknown>): Promise<void> {
  const err: unknown = await p.then(
    () => new Error('expected VM is not stopped'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StorageError);
  expect([(err as StorageError).code, (err as Error).message]).toEqual(['busy', 'VM is not stopped']);
}

describe('qcow2 driver with a running QEMU', async () => {
  const reason = await qemuUnavailable();
  if (reason !== null) return platformUnavailable('needs qemu-system-x86_64', reason);

  let env: Qcow2Env | undefined;
  const vms: QemuProcess[] = [];
  const e = (): Qcow2Env => env ?? expect.unreachable('no env');
  const start = async (...args: Parameters<typeof startQemu>): Promise<QemuProcess> => {
    const vm = await startQemu(...args);
    vms.push(vm);
    return vm;
  };
  beforeEach(async () => {
    env = await qcow2Env();
  });
  afterEach(async () => {
    await Promise.all(vms.splice(0).map((vm) => vm.stop()));
    await env?.cleanup();
    env = undefined;
  });

  const base: DiskRef = { path: 'vm1/disk0', sizeBytes: 8 * MiB };

  for (const attach of ['drive', 'blockdev'] as const) {
    it(`creates, lists and destroys over QMP while the VM runs (-${attach}); rollback waits until it stops`, async () => {
      await e().driver.createDisk(base);
      const before = pattern(1);
      await e().io.write(base, 0, before);
      await e().driver.create(base, 'es-1', { name: 'offline one' });
      const vm = await start({ disks: [{ path: e().image(base), format: 'qcow2', attach }] });
      const disk: DiskRef = { ...base, qmpSocket: vm.qmpSocket };
      const qmp = await QmpClient.connect(vm.qmpSocket ?? '');
      await qmp.execute('cont'); // really running, not just paused
      await qmp.close();

      e().runner.calls.length = 0;
      await e().driver.create(disk, 'es-2', { name: 'live two' });
      await e().driver.create(disk, 'as-3', { name: 'live three' });
      await e().driver.create(disk, 'es-4', { name: 'live four' });
      await expectStorageError(e().driver.create(disk, 'es-2', { name: 'again' }), 'snapshot_exists');
      // Everything went through QEMU: qemu-img never opened the image for writing.
      expect(e().runner.calls.filter((c) => c[0] !== 'qemu-img' || c[1] !== 'info' || !c.includes('-U'))).toEqual([]);
      expect((await e().driver.list(disk)).map((s) => [s.id, s.name])).toEqual([
        ['es-1', 'offline one'],
        ['es-2', 'live two'],
        ['as-3', 'live three'],
        ['es-4', 'live four'],
      ]);

      await e().driver.destroy(disk, ['as-3', 'es-4', 'es-77']);
      expect((await e().driver.list(disk)).map((s) => s.id)).toEqual(['es-1', 'es-2']);
      expect(e().runner.calls.some((c) => program(c)[0] === 'qemu-storage-daemon' || c.includes('-d'))).toBe(false);

      await notStopped(e().driver.rollback(disk, 'es-1'));
      await notStopped(e().driver.rollback({ ...disk, qmpSocket: null }, 'es-1')); // the lock alone tells too

      await vm.stop();
      await e().io.write(base, 0, pattern(2));
      await e().driver.rollback(disk, 'es-1'); // the socket is gone: offline
      expect((await e().io.read(base, 0, before.length)).equals(before)).toBe(true);
      expect((await e().driver.list(disk)).map((s) => s.id)).toEqual(['es-1', 'es-2']);
      await checkImage(e().image(base));
    });
  }

  it('restore refuses a target in use, and reads a snapshot of a source that is in use', async () => {
    const src: DiskRef = { path: 'src', sizeBytes: 8 * MiB };
    const dst: DiskRef = { path: 'dst', sizeBytes: 8 * MiB };
    await e().driver.createDisk(src);
    await e().driver.createDisk(dst);
    const data = pattern(7);
    await e().io.write(src, 0, data);
    await e().driver.create(src, 'es-1', { name: 'one' });
    const srcVm = await start({ disks: [{ path: e().image(src), format: 'qcow2' }] });
    await e().driver.restore({ ...src, qmpSocket: srcVm.qmpSocket }, 'es-1', dst);
    expect((await e().io.read(dst, 0, data.length)).equals(data)).toBe(true);

    const dstVm = await start({ disks: [{ path: e().image(dst), format: 'qcow2' }] });
    const before = await fingerprint(e().root);
    await notStopped(e().driver.restore(src, 'es-1', { ...dst, qmpSocket: dstVm.qmpSocket }));
    await notStopped(e().driver.restore(src, 'es-1', dst));
    expect(await fingerprint(e().root)).toBe(before);
  });

  it('a QMP socket whose QEMU does not have this image: the offline path, guarded by the lock', async () => {
    await e().driver.createDisk(base);
    const vm = await start({ disks: [] });
    const disk: DiskRef = { ...base, qmpSocket: vm.qmpSocket };
    await e().driver.create(disk, 'es-1', { name: 'one' });
    // The offline tool (qemu-storage-daemon here; qemu-img where it is missing): both take QEMU's lock.
    expect(e().runner.calls.some((c) => program(c)[0] === 'qemu-storage-daemon')).toBe(true);
    await e().driver.destroy(disk, ['es-1']);
    expect(await tags(e().image(base))).toEqual([]);
  });

  it('a QEMU holding the image without a usable QMP socket: busy for every write, image intact', async () => {
    await e().driver.createDisk(base);
    await e().io.write(base, MiB, pattern(3));
    for (const id of ['es-1', 'es-2', 'es-3']) await e().driver.create(base, id, { name: id });
    const other: DiskRef = { path: 'other', sizeBytes: 8 * MiB };
    await e().driver.createDisk(other);
    await e().driver.create(other, 'es-1', { name: 'other one' });
    const vm = await start({ qmp: false, disks: [{ path: e().image(base), format: 'qcow2' }] });
    expect(vm.qmpSocket).toBeNull();
    const before = await fingerprint(e().root);

    // No socket known, and a socket path where nobody listens: both end at QEMU's lock.
    for (const disk of [base, { ...base, qmpSocket: `${e().root}/nobody.sock` }]) {
      const err: unknown = await e().driver.create(disk, 'es-4', { name: 'x' }).catch((x: unknown) => x);
      expect(err).toBeInstanceOf(StorageError);
      expect((err as StorageError).code).toBe('busy');
      expect((err as Error).message).toMatch(/in use by another process.*Failed to get "write" lock/);
      await expectStorageError(e().driver.destroy(disk, ['es-1', 'es-2']), 'busy');
      await expectStorageError(e().driver.destroy(disk, ['es-3']), 'busy');
      await notStopped(e().driver.rollback(disk, 'es-1'));
      await notStopped(e().driver.restore(other, 'es-1', disk));
    }
    // Reading still works (force-share).
    expect((await e().driver.list(base)).map((s) => s.id)).toEqual(['es-1', 'es-2', 'es-3']);
    expect(await fingerprint(e().root)).toBe(before);

    await vm.stop();
    await checkImage(e().image(base));
    expect(await tags(e().image(base))).toEqual(['es-1', 'es-2', 'es-3']);
    await e().driver.create(base, 'es-4', { name: 'after' });
    await e().driver.rollback(base, 'es-1');
  });

  it('a paused QEMU (prelaunch) still counts as not stopped, and live snapshots read back through qemu-io', async () => {
    await e().driver.createDisk(base);
    const data = pattern(9);
    await e().io.write(base, 2 * MiB, data);
    const vm = await start({ disks: [{ path: e().image(base), format: 'qcow2' }] });
    const disk: DiskRef = { ...base, qmpSocket: vm.qmpSocket };
    await e().driver.create(disk, 'es-1', { name: 'one' });
    await notStopped(e().driver.rollback(disk, 'es-1'));
    // The snapshot is in the image on disk already (read force-shared while QEMU holds it).
    expect((await qcow2IO(e().root, { shared: true }).read(base, 2 * MiB, data.length)).equals(data)).toBe(true);
    expect(await tags(e().image(base))).toEqual(['es-1']);
  });
});
