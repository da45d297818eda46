/**
 * "Is the VM really stopped?": the API trusts the recorded status, then the agent checks, as the
 * rollback's first step, that no QEMU holds the disk. A real QEMU holds a raw image (file driver,
 * no QMP socket: QEMU's image lock) and a qcow2 image (qcow2 driver, with a QMP socket).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withServer, type TestServer } from '../helpers/server.js';
import { qemuUnavailable, startQemu, type QemuProcess } from '../platform/qemu.js';
import { platformUnavailable } from '../platform/require.js';

const reason = await qemuUnavailable();

describe('rollback refuses a disk that a running QEMU holds', () => {
  if (reason !== null) {
    platformUnavailable('rollback refuses a disk that a running QEMU holds', reason);
    return;
  }
  let s: TestServer & { cleanup(): Promise<void> };
  let root: string;
  const qemus: QemuProcess[] = [];
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'esnap-inuse-'));
    s = await withServer('sqlite', {
      storages: () => [
        { name: 'default', driver: 'file', root: join(root, 'raw') },
        { name: 'images', driver: 'qcow2', root: join(root, 'qcow2') },
      ],
    });
  }, 60_000);
  afterAll(async () => {
    for (const q of qemus) await q.stop();
    await s?.cleanup();
    await rm(root, { recursive: true, force: true });
  });

  async function vmWithDisk(hostname: string, zpool: string): Promise<string> {
    expect((await s.req('POST', `/api/vm/${hostname}/define/`, { body: {} })).status).toBe(201);
    const d = await s.req('POST', `/api/vm/${hostname}/define/disk/1/`, { body: { size: 8, zpool } });
    expect(d.status, d.text).toBe(201);
    return join(root, zpool === 'default' ? 'raw' : 'qcow2', d.body.result.path as string);
  }

  it('raw image held by QEMU without a QMP socket: the task fails with VM is not stopped and nothing changes', async () => {
    const image = await vmWithDisk('rawvm', 'default');
    expect((await s.stream('POST', '/api/vm/rawvm/snapshot/s1/', { body: {} })).finalStatus).toBe(200);
    const q = await startQemu({ disks: [{ path: image, format: 'raw' }], qmp: false });
    qemus.push(q);
    const r = await s.stream('PUT', '/api/vm/rawvm/snapshot/s1/', { body: {} });
    expect(r.finalStatus).toBe(400);
    expect(r.final).toMatchObject({ status: 'FAILURE', result: { returncode: 1, message: 'VM is not stopped' } });
    const snap = (await s.req('GET', '/api/vm/rawvm/snapshot/s1/')).body.result;
    expect(snap.status).toBe(1);
    expect((await s.req('GET', '/api/vm/rawvm/status/')).body.result.status).toBe('stopped');
    await q.stop();
    expect((await s.stream('PUT', '/api/vm/rawvm/snapshot/s1/', { body: {} })).finalStatus).toBe(200);
  }, 60_000);

  it('qcow2 image of a QEMU answering on the VM\'s QMP socket: live snapshots work, rollback is refused until it stops', async () => {
    const image = await vmWithDisk('qvm', 'images');
    const q = await startQemu({ disks: [{ path: image, format: 'qcow2' }] });
    qemus.push(q);
    const put = await s.req('PUT', '/api/vm/qvm/define/', { body: { qmp_socket: q.qmpSocket } });
    expect(put.status, put.text).toBe(200);
    const live = await s.stream('POST', '/api/vm/qvm/snapshot/live1/', { body: {} });
    expect(live.finalStatus, JSON.stringify(live.final)).toBe(200);
    const r = await s.stream('PUT', '/api/vm/qvm/snapshot/live1/', { body: {} });
    expect(r.final).toMatchObject({ status: 'FAILURE', result: { message: 'VM is not stopped' } });
    expect((await s.req('GET', '/api/vm/qvm/snapshot/live1/')).body.result.status).toBe(1);
    await q.stop();
    expect((await s.stream('PUT', '/api/vm/qvm/snapshot/live1/', { body: {} })).finalStatus).toBe(200);
  }, 60_000);
});
