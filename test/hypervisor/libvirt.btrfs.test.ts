/**
 * libvirt disks on a `btrfs` storage (issue 14), with a real loop-mounted btrfs and the machine's
 * libvirtd: a subvolume of its own holding `disk.img` under the storage's root is that storage's
 * disk and is snapshotted with btrfs; a subvolume holding other files beside `disk.img` (a rollback
 * would revert them too) and a plain folder holding `disk.img` are listed with their reason, never
 * snapshotted. One database: nothing here depends on it.
 */
import { execFile } from 'node:child_process';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../cluster/cluster.helpers.js';
import { withServer, type TestServer } from '../helpers/server.js';
import { cleanupDomains, defineDomain, domainXml, libvirtUnavailable, LIBVIRT_URI, uniqueName } from '../platform/libvirt.js';
import { loopFsUnavailable, makeLoopFs, type LoopFs } from '../platform/loopfs.js';
import { platformUnavailable } from '../platform/require.js';

const run = promisify(execFile);
const unavailable = (await libvirtUnavailable()) ?? (await loopFsUnavailable('btrfs'));

describe('libvirt disks on a btrfs storage', () => {
  if (unavailable !== null) {
    platformUnavailable('libvirt and a loop-mounted btrfs', unavailable);
    return;
  }
  let fs: LoopFs;
  let s: TestServer & { cleanup(): Promise<void> };
  const domains = new Set<string>();

  beforeAll(async () => {
    fs = await makeLoopFs('btrfs', 256);
    s = await withServer('sqlite', {
      hypervisor: { kind: 'libvirt', uri: LIBVIRT_URI, dc: null },
      storages: (root) => [
        { name: 'default', driver: 'file', root: join(root, 'storage') },
        { name: 'subvols', driver: 'btrfs', root: fs.mountpoint },
      ],
    });
  }, 120_000);
  afterAll(async () => {
    // The server first: its watcher would read the images again on the undefine's event.
    await s?.cleanup();
    await cleanupDomains(domains);
    await fs?.cleanup();
  });

  async function image(folder: string, file = 'disk.img'): Promise<string> {
    const path = join(folder, file);
    await writeFile(path, Buffer.alloc(0));
    await run('truncate', ['-s', '8M', path]);
    return path;
  }

  it('a subvolume of its own holding disk.img is mapped and snapshotted with btrfs; other layouts are listed with their reason', async () => {
    const name = uniqueName('lv-btrfs');
    const root = fs.mountpoint;
    await run('btrfs', ['subvolume', 'create', join(root, `${name}-d0`)]);
    await run('btrfs', ['subvolume', 'create', join(root, `${name}-shared`)]);
    const own = await image(join(root, `${name}-d0`));
    const shared = await image(join(root, `${name}-shared`));
    await image(join(root, `${name}-shared`), 'other.img');
    await mkdir(join(root, `${name}-plain`));
    const plain = await image(join(root, `${name}-plain`));
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
      ['vda', 'subvols', `${name}-d0`, 8, null],
      ['vdb', null, shared, 0, 'subvolume holds other files beside disk.img'],
      ['vdc', null, plain, 0, 'not a disk of btrfs storage subvols'],
    ]);

    const made = await s.stream('POST', `/api/vm/${name}/snapshot/b1`, { body: { disk_id: 1 } });
    expect(made.finalStatus, JSON.stringify(made.final)).toBe(200);
    // btrfs made it: a snapshot subvolume of the disk's subvolume, under the storage's .snapshots.
    const snaps = (await run('btrfs', ['subvolume', 'list', '-s', root])).stdout;
    expect(snaps).toMatch(new RegExp(`\\.snapshots/${name}-d0/es-\\d+$`, 'm'));
    for (const disk of [2, 3]) {
      expect((await s.req('POST', `/api/vm/${name}/snapshot/b${disk}`, { body: { disk_id: disk } })).body.detail).toBe('Disk is not on an esnap storage');
    }
    // Nothing of the other layouts was snapshotted.
    const snapshotFolders = await readdir(join(root, '.snapshots')).catch(() => [] as string[]);
    expect(snapshotFolders.filter((f) => f.includes(`${name}-shared`) || f.includes(`${name}-plain`))).toEqual([]);
  }, 120_000);
});
