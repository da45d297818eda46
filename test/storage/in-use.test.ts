/**
 * assertDiskNotInUse with a real QEMU holding real qcow2 and raw images: through its QMP socket,
 * through the image lock alone (no socket known, or a QEMU without QMP), and with nothing running.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { QmpClient } from '../../src/guest/qmp.js';
import { StorageError } from '../../src/storage/driver.js';
import { assertDiskNotInUse, NOT_STOPPED } from '../../src/storage/in-use.js';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import type { CommandRunner, RunOptions, RunResult } from '../../src/storage/runner.js';
import { platformUnavailable } from '../platform/require.js';
import { qemuUnavailable, startQemu, type QemuProcess } from '../platform/qemu.js';

const runner = new NodeCommandRunner();

/** Counts the probes, to show which sign caught the VM. */
class CountingRunner implements CommandRunner {
  readonly calls: string[][] = [];
  run(argv: readonly string[], options?: RunOptions): Promise<RunResult> {
    this.calls.push([...argv]);
    return runner.run(argv, options);
  }
}

/** The StorageError, with the reason kept in its cause. */
async function busy(p: Promise<unknown>): Promise<string> {
  const err: unknown = await p.then(
    () => new Error('expected busy, but the disk was reported free'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StorageError);
  expect((err as StorageError).code).toBe('busy');
  expect((err as StorageError).message).toBe(NOT_STOPPED);
  return ((err as StorageError).cause as Error).message;
}

async function image(dir: string, name: string, format: 'raw' | 'qcow2'): Promise<string> {
  const path = join(dir, name);
  const r = await runner.run(['qemu-img', 'create', '-q', '-f', format, path, '8M']);
  expect(r.code, r.stderr).toBe(0);
  return path;
}

describe('assertDiskNotInUse', async () => {
  const reason = await qemuUnavailable();
  if (reason !== null) return platformUnavailable('needs qemu-system-x86_64', reason);

  let dir = '';
  const vms: QemuProcess[] = [];
  const start = async (...args: Parameters<typeof startQemu>): Promise<QemuProcess> => {
    const vm = await startQemu(...args);
    vms.push(vm);
    return vm;
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'esnap-inuse-'));
  });
  afterEach(async () => {
    await Promise.all(vms.splice(0).map((vm) => vm.stop()));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('passes when nothing runs: free images, a missing socket, a missing image', async () => {
    const qcow2 = await image(dir, 'free.qcow2', 'qcow2');
    const raw = await image(dir, 'free.raw', 'raw');
    await assertDiskNotInUse({ imagePath: qcow2, format: 'qcow2', runner });
    await assertDiskNotInUse({ imagePath: raw, format: 'raw', qmpSocket: null, runner });
    await assertDiskNotInUse({ imagePath: qcow2, format: 'qcow2', qmpSocket: join(dir, 'no.sock'), runner });
    await assertDiskNotInUse({ imagePath: join(dir, 'missing.qcow2'), format: 'qcow2', runner });
    await assertDiskNotInUse({ imagePath: join(dir, 'missing.raw'), format: 'raw', runner });
  });

  for (const format of ['qcow2', 'raw'] as const) {
    it(`${format}: a QEMU holding the image is caught through QMP and, without a socket, through its lock`, async () => {
      const img = await image(dir, `held.${format}`, format);
      const vm = await start({ disks: [{ path: img, format }] });
      const rec = new CountingRunner();
      expect(await busy(assertDiskNotInUse({ imagePath: img, format, qmpSocket: vm.qmpSocket, runner: rec }))).toMatch(/status prelaunch/);
      expect(rec.calls).toEqual([]); // QMP answered: no probe needed
      expect(await busy(assertDiskNotInUse({ imagePath: img, format, qmpSocket: null, runner: rec }))).toMatch(/Failed to get (shared )?"write" lock/);
      // A socket path that leads nowhere does not hide the lock.
      await busy(assertDiskNotInUse({ imagePath: img, format, qmpSocket: join(dir, 'no.sock'), runner }));
      await vm.stop();
      await assertDiskNotInUse({ imagePath: img, format, qmpSocket: vm.qmpSocket, runner });
    });
  }

  it('a QEMU without any QMP socket is caught by the lock of both image kinds', async () => {
    const q = await image(dir, 'noqmp.qcow2', 'qcow2');
    const r = await image(dir, 'noqmp.raw', 'raw');
    const vm = await start({ qmp: false, disks: [{ path: q, format: 'qcow2' }, { path: r, format: 'raw' }] });
    expect(vm.qmpSocket).toBeNull();
    await busy(assertDiskNotInUse({ imagePath: q, format: 'qcow2', runner }));
    await busy(assertDiskNotInUse({ imagePath: r, format: 'raw', runner }));
    // The probes changed nothing: the image is still consistent once QEMU has gone.
    await vm.stop();
    const check = await runner.run(['qemu-img', 'check', q]);
    expect(check.code, check.stdout + check.stderr).toBe(0);
  });

  it('a running VM (after cont) reports status running', async () => {
    const img = await image(dir, 'running.qcow2', 'qcow2');
    const vm = await start({ disks: [{ path: img, format: 'qcow2' }] });
    const qmp = await QmpClient.connect(vm.qmpSocket ?? '');
    await qmp.execute('cont');
    await qmp.close();
    expect(await busy(assertDiskNotInUse({ imagePath: img, format: 'qcow2', qmpSocket: vm.qmpSocket, runner }))).toMatch(/status running/);
  });

  it('a QMP socket held by another client counts as in use, even for an image the VM does not have', async () => {
    const other = await image(dir, 'other.qcow2', 'qcow2');
    const vm = await start({ disks: [] });
    const holder = await QmpClient.connect(vm.qmpSocket ?? '');
    try {
      const started = Date.now();
      const query = { imagePath: other, format: 'qcow2', qmpSocket: vm.qmpSocket, runner, qmpTimeoutMs: 500 } as const;
      expect(await busy(assertDiskNotInUse(query))).toMatch(/no greeting/);
      expect(Date.now() - started).toBeLessThan(3000);
    } finally {
      await holder.close();
    }
  });

  it('reports an unreadable image as a backend error, not as free or busy', async () => {
    const bogus = join(dir, 'bogus.qcow2');
    await writeFile(bogus, Buffer.alloc(65536, 7));
    const err: unknown = await assertDiskNotInUse({ imagePath: bogus, format: 'qcow2', runner }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageError);
    expect((err as StorageError).code).toBe('backend');
    expect((err as Error).message).toMatch(/Image is not in qcow2 format/);
  });
});
