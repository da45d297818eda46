/**
 * The foundation's storage flows over the API once on each real backend: create, rollback (bytes
 * restored), delete, and sync finding a snapshot removed behind esnap's back as lost.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { qcow2IO } from '../storage/qcow2.helpers.js';
import type { DiskIO } from '../storage/driver-contract.js';
import { qemuUnavailable } from '../platform/qemu.js';
import { join } from 'node:path';
import { withServer, type TestServer } from '../helpers/server.js';
import { makeLoopFs, loopFsUnavailable, type LoopFs } from '../platform/loopfs.js';
import { makeZfsPool, zfsUnavailable, type ZfsPool } from '../platform/zfs.js';
import { platformUnavailable } from '../platform/require.js';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import type { StorageConfig } from '../../src/storage/drivers.js';

const runner = new NodeCommandRunner();

interface Backend {
  readonly name: string;
  unavailable(): Promise<string | null>;
  setup(): Promise<{
    storage: StorageConfig;
    image(path: string): Promise<string>;
    /** Guest-visible bytes, for formats that are not raw (qcow2 through qemu-io). */
    io?: DiskIO;
    removeBehindBack(path: string, id: string): Promise<void>;
    cleanup(): Promise<void>;
  }>;
}

async function must(argv: string[]): Promise<void> {
  for (let i = 0; ; i++) {
    const r = await runner.run(argv);
    if (r.code === 0) return;
    if (!/busy/.test(r.stderr) || i > 10) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

const BACKENDS: Backend[] = [
  {
    name: 'file on XFS (reflink)',
    unavailable: () => loopFsUnavailable('xfs'),
    async setup() {
      const fs: LoopFs = await makeLoopFs('xfs', 320);
      const root = join(fs.mountpoint, 'vms');
      return {
        storage: { name: 'default', driver: 'file', root },
        image: async (path) => join(root, path),
        removeBehindBack: async (path, id) => rm(join(root, '.snapshots', path, id)),
        cleanup: () => fs.cleanup(),
      };
    },
  },
  {
    name: 'btrfs',
    unavailable: () => loopFsUnavailable('btrfs'),
    async setup() {
      const fs: LoopFs = await makeLoopFs('btrfs', 256);
      const root = fs.mountpoint;
      return {
        storage: { name: 'default', driver: 'btrfs', root },
        image: async (path) => join(root, path, 'disk.img'),
        removeBehindBack: (path, id) => must(['btrfs', 'subvolume', 'delete', join(root, '.snapshots', path, id)]),
        cleanup: () => fs.cleanup(),
      };
    },
  },
  {
    name: 'qcow2',
    unavailable: qemuUnavailable,
    async setup() {
      const root = await mkdtemp(join(tmpdir(), 'esnap-qcow2-api-'));
      return {
        storage: { name: 'default', driver: 'qcow2', root },
        image: async (path) => join(root, path),
        io: qcow2IO(root),
        removeBehindBack: (path, id) => must(['qemu-img', 'snapshot', '-d', id, join(root, path)]),
        cleanup: () => rm(root, { recursive: true, force: true }),
      };
    },
  },
  {
    name: 'zfs (zfs-fuse)',
    unavailable: zfsUnavailable,
    async setup() {
      const pool: ZfsPool = await makeZfsPool(256);
      await must(['zfs', 'create', `${pool.name}/vms`]);
      return {
        storage: { name: 'default', driver: 'zfs', dataset: `${pool.name}/vms` },
        image: async (path) => join(pool.mountpoint, 'vms', path, 'disk.img'),
        removeBehindBack: (path, id) => must(['zfs', 'destroy', `${pool.name}/vms/${path}@${id}`]),
        cleanup: () => pool.cleanup(),
      };
    },
  },
];

for (const backend of BACKENDS) {
  const reason = await backend.unavailable();
  describe(`snapshot API on ${backend.name}`, () => {
    if (reason !== null) {
      platformUnavailable(`snapshot API on ${backend.name}`, reason);
      return;
    }
    let s: TestServer & { cleanup(): Promise<void> };
    let env: Awaited<ReturnType<Backend['setup']>>;
    let path: string;
    beforeAll(async () => {
      env = await backend.setup();
      s = await withServer('sqlite', { storages: () => [env.storage] });
      expect((await s.req('POST', '/api/vm/web01/define/', { body: {} })).status).toBe(201);
      const d = await s.req('POST', '/api/vm/web01/define/disk/1/', { body: { size: 8 } });
      expect(d.status, d.text).toBe(201);
      path = d.body.result.path as string;
    }, 120_000);
    afterAll(async () => {
      await s?.cleanup();
      await env?.cleanup();
    });

    async function writeDisk(text: string): Promise<void> {
      if (env.io) return env.io.write({ path, sizeBytes: 8 * 1024 * 1024 }, 0, Buffer.from(text));
      const fh = await open(await env.image(path), 'r+');
      await fh.write(Buffer.from(text), 0, text.length, 0);
      await fh.sync();
      await fh.close();
    }
    async function readDisk(n: number): Promise<string> {
      if (env.io) return (await env.io.read({ path, sizeBytes: 8 * 1024 * 1024 }, 0, n)).toString();
      const fh = await open(await env.image(path), 'r');
      const buf = Buffer.alloc(n);
      await fh.read(buf, 0, n, 0);
      await fh.close();
      return buf.toString();
    }

    it('creates, rolls back to the bytes of the snapshot, and deletes', async () => {
      await writeDisk('version-1');
      const a = await s.stream('POST', '/api/vm/web01/snapshot/v1/', { body: { note: 'first' } });
      expect(a.finalStatus, JSON.stringify(a.final)).toBe(200);
      await writeDisk('version-2');
      expect((await s.stream('POST', '/api/vm/web01/snapshot/v2/', { body: {} })).finalStatus).toBe(200);
      const objs = (await s.req('GET', '/api/vm/web01/snapshot/', { query: { full: 'true' } })).body.result;
      expect(objs.map((o: { name: string; status: number }) => [o.name, o.status])).toEqual([['v2', 1], ['v1', 1]]);
      const r = await s.stream('PUT', '/api/vm/web01/snapshot/v1/', { body: { force: true } });
      expect(r.finalStatus, JSON.stringify(r.final)).toBe(200);
      expect(await readDisk(9)).toBe('version-1');
      const after = (await s.req('GET', '/api/vm/web01/snapshot/')).body.result as string[];
      // ZFS destroys newer snapshots on rollback (and their rows go); the others keep them.
      expect(after).toEqual(backend.name.startsWith('zfs') ? ['v1'] : ['v2', 'v1']);
      const del = await s.stream('DELETE', '/api/vm/web01/snapshot/v1/', { body: {} });
      expect(del.finalStatus, JSON.stringify(del.final)).toBe(200);
      expect((await s.req('GET', '/api/vm/web01/snapshot/v1/')).status).toBe(404);
    }, 120_000);

    it('restores into another disk of the same VM: where storage replaces that disk (ZFS), every row of its snapshots goes, older ones too', async () => {
      const d2 = await s.req('POST', '/api/vm/web01/define/disk/2/', { body: { size: 8 } });
      expect(d2.status, d2.text).toBe(201);
      // Disk 2's snapshot is older than the source snapshot: a rollback of disk 2 itself would keep its row.
      expect((await s.stream('POST', '/api/vm/web01/snapshot/t-old/', { body: { disk_id: 2 } })).finalStatus).toBe(200);
      await writeDisk('restore-source');
      expect((await s.stream('POST', '/api/vm/web01/snapshot/r-src/', { body: {} })).finalStatus).toBe(200);
      const r = await s.stream('PUT', '/api/vm/web01/snapshot/r-src/', { body: { target_hostname_or_uuid: 'web01', target_disk_id: 2, force: true } });
      expect(r.finalStatus, JSON.stringify(r.final)).toBe(200);
      const left = (await s.req('GET', '/api/vm/web01/snapshot/', { query: { disk_id: '2' } })).body.result as string[];
      expect(left).toEqual(backend.name.startsWith('zfs') ? [] : ['t-old']);
      // The source disk's snapshots are untouched.
      expect((await s.req('GET', '/api/vm/web01/snapshot/r-src/')).status).toBe(200);
    }, 120_000);

    it('marks a snapshot removed behind its back as lost on sync', async () => {
      expect((await s.stream('POST', '/api/vm/web01/snapshot/gone/', { body: {} })).finalStatus).toBe(200);
      const obj = (await s.req('GET', '/api/vm/web01/snapshot/gone/')).body.result;
      await env.removeBehindBack(path, `es-${obj.id}`);
      const sync = await s.stream('PUT', '/api/vm/web01/snapshot/', { body: {} });
      expect(sync.final).toMatchObject({ result: { returncode: 0, message: 'Snapshots successfully synced; WARNING: 1 snapshot(s) lost' } });
      expect((await s.req('GET', '/api/vm/web01/snapshot/gone/')).body.result.status).toBe(4);
    }, 120_000);
  });
}
