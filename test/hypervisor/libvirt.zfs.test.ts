/**
 * libvirt disks on a `zfs` storage (issue 14), with a real zfs-fuse pool on a file vdev and the
 * machine's libvirtd: a dataset of its own holding `disk.img` under the storage's dataset is that
 * storage's disk and is snapshotted with zfs; a dataset holding other files beside `disk.img`
 * (a rollback would revert them too) and a plain folder inside a dataset are listed with their
 * reason, never snapshotted. One database: nothing here depends on it.
 */
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../cluster/cluster.helpers.js';
import { withServer, type TestServer } from '../helpers/server.js';
import { cleanupDomains, defineDomain, domainXml, libvirtUnavailable, LIBVIRT_URI, uniqueName } from '../platform/libvirt.js';
import { platformUnavailable } from '../platform/require.js';
import { makeZfsPool, zfsUnavailable, type ZfsPool } from '../platform/zfs.js';

const run = promisify(execFile);
const unavailable = (await libvirtUnavailable()) ?? (await zfsUnavailable());

describe('libvirt disks on a zfs storage', () => {
  if (unavailable !== null) {
    platformUnavailable('libvirt and a zfs-fuse pool', unavailable);
    return;
  }
  let pool: ZfsPool;
  let s: TestServer & { cleanup(): Promise<void> };
  const domains = new Set<string>();

  beforeAll(async () => {
    pool = await makeZfsPool(128);
    await run('zfs', ['create', `${pool.name}/vms`]);
    s = await withServer('sqlite', {
      hypervisor: { kind: 'libvirt', uri: LIBVIRT_URI, dc: null },
      storages: (root) => [
        { name: 'default', driver: 'file', root: join(root, 'storage') },
        { name: 'tank', driver: 'zfs', dataset: `${pool.name}/vms` },
      ],
    });
  }, 120_000);
  afterAll(async () => {
    // The server first: its watcher would read the pool's images again on the undefine's event.
    await s?.cleanup();
    await cleanupDomains(domains);
    // zfs-fuse unmounts slowly under load: the datasets go first, with time to spare, then the pool.
    for (let i = 0; pool && i < 30; i++) {
      const r = await run('zfs', ['destroy', '-r', '-f', `${pool.name}/vms`]).then(() => true, (err: Error) => /does not exist/.test(err.message));
      if (r) break;
      await new Promise((res) => setTimeout(res, 500));
    }
    await pool?.cleanup().catch(async (err: Error) => {
      const users = await run('fuser', ['-vm', pool.mountpoint]).then((r) => r.stdout + r.stderr, (e: Error & { stdout?: string; stderr?: string }) => `${e.stdout ?? ''}${e.stderr ?? ''}`);
      const mounts = await run('grep', [pool.name, '/proc/mounts']).then((r) => r.stdout, () => '');
      throw new Error(`${err.message}\nusers of ${pool.mountpoint}:\n${users}\nmounts:\n${mounts}`);
    });
  });

  async function image(folder: string, file = 'disk.img'): Promise<string> {
    const path = join(folder, file);
    await writeFile(path, Buffer.alloc(0));
    await run('truncate', ['-s', '8M', path]);
    return path;
  }

  it('a dataset of its own holding disk.img is mapped and snapshotted with zfs; other layouts are listed with their reason', async () => {
    const name = uniqueName('lv-zfs');
    const mnt = join(pool.mountpoint, 'vms');
    await run('zfs', ['create', `${pool.name}/vms/${name}-d0`]);
    await run('zfs', ['create', `${pool.name}/vms/${name}-shared`]);
    const own = await image(join(mnt, `${name}-d0`));
    const shared = await image(join(mnt, `${name}-shared`));
    await image(join(mnt, `${name}-shared`), 'other.img');
    await mkdir(join(mnt, `${name}-plain`));
    const plain = await image(join(mnt, `${name}-plain`));
    const uuid = await defineDomain(
      domainXml(name, {
        disks: [
          { target: 'vda', source: own, format: 'raw' },
          { target: 'vdb', source: shared, format: 'raw' },
          { target: 'vdc', source: plain, format: 'raw' },
        ],
      }),
    );
    domains.add(uuid);
    const list = await waitFor('the domain with its disks', async () => {
      const r = await s.req('GET', `/api/vm/${name}/define/disk`);
      return r.status === 200 && (r.body.result as unknown[]).length === 3 ? (r.body.result as Array<Record<string, unknown>>) : null;
    });
    expect(list.map((d) => [d['target'], d['zpool'], d['path'], d['size'], d['reason']])).toEqual([
      ['vda', 'tank', `${name}-d0`, 8, null],
      ['vdb', null, shared, 0, 'dataset holds other files beside disk.img'],
      ['vdc', null, plain, 0, 'not under an esnap storage'],
    ]);

    const made = await s.stream('POST', `/api/vm/${name}/snapshot/z1`, { body: { disk_id: 1 } });
    expect(made.finalStatus, JSON.stringify(made.final)).toBe(200);
    const snaps = (await run('zfs', ['list', '-H', '-o', 'name', '-t', 'snapshot', '-r', `${pool.name}/vms/${name}-d0`])).stdout;
    expect(snaps).toMatch(new RegExp(`^${pool.name}/vms/${name}-d0@es-\\d+$`, 'm'));
    expect((await s.req('POST', `/api/vm/${name}/snapshot/z2`, { body: { disk_id: 2 } })).body.detail).toBe('Disk is not on an esnap storage');
    // Nothing of the other layouts was snapshotted.
    const all = (await run('zfs', ['list', '-H', '-o', 'name', '-t', 'snapshot'])).stdout;
    expect(all).not.toContain(`${name}-shared@`);
  }, 120_000);
});
