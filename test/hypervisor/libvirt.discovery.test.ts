/**
 * libvirt discovery against the machine's real libvirtd (issue 14): domains defined, renamed and
 * undefined, disks attached and detached with virsh, and what the API shows after each. Changes
 * reach the API through libvirt's events (README "On a libvirt host": within seconds); the polls
 * below only bound the wait, the timing itself is measured in bench/.
 */
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { makeUser, makeVm } from '../helpers/fixtures.js';
import { waitFor } from '../cluster/cluster.helpers.js';
import { platformUnavailable } from '../platform/require.js';
import { cleanupDomains, defineDomain, domainXml, libvirtUnavailable, uniqueName, virsh, LIBVIRT_URI } from '../platform/libvirt.js';
import { libvirtConflicts } from '../../src/hypervisor/libvirt.rows.js';
import type { Logger } from '../../src/app-context.js';

const run = promisify(execFile);
const unavailable = await libvirtUnavailable();

async function vmOf(s: TestServer, name: string): Promise<Record<string, unknown> | null> {
  const r = await s.req('GET', `/api/vm/${name}/define`);
  return r.status === 200 ? (r.body.result as Record<string, unknown>) : null;
}

async function disksOf(s: TestServer, name: string, key?: string): Promise<Array<Record<string, unknown>>> {
  const r = await s.req('GET', `/api/vm/${name}/define/disk`, key ? { key } : {});
  expect(r.status).toBe(200);
  return r.body.result as Array<Record<string, unknown>>;
}

if (unavailable !== null) {
  describe('libvirt discovery', () => platformUnavailable('needs a running libvirtd', unavailable));
} else {
  forEachDb('libvirt discovery', (kind) => {
    let s: TestServer & { cleanup(): Promise<void> };
    const domains = new Set<string>();
    const warnings: Array<{ obj: unknown; msg: string }> = [];
    const log: Logger = {
      debug: () => undefined,
      info: () => undefined,
      warn: (obj: unknown, msg?: string) => void warnings.push({ obj, msg: msg ?? '' }),
      error: () => undefined,
    };
    let files: string;
    let images: string;
    let outside: string;

    beforeAll(async () => {
      s = await withServer(kind, {
        log,
        hypervisor: { kind: 'libvirt', uri: LIBVIRT_URI, dc: null },
        storages: (root) => [
          { name: 'default', driver: 'file', root: join(root, 'storage') },
          { name: 'files', driver: 'file', root: join(root, 'files') },
          { name: 'images', driver: 'qcow2', root: join(root, 'images') },
        ],
      });
      files = join(s.storageRoot, 'files');
      images = join(s.storageRoot, 'images');
      outside = join(s.storageRoot, 'elsewhere');
      for (const d of [files, images, outside]) await mkdir(d, { recursive: true });
    });
    afterAll(async () => {
      await cleanupDomains(domains);
      await s?.cleanup();
    });

    async function raw(path: string, mb = 4): Promise<string> {
      await writeFile(path, Buffer.alloc(0));
      await run('truncate', ['-s', `${mb}M`, path]);
      return path;
    }
    async function qcow2(path: string, mb = 8): Promise<string> {
      await run('qemu-img', ['create', '-q', '-f', 'qcow2', path, `${mb}M`]);
      return path;
    }

    it('a defined domain appears as a VM with its disks, each mapped to a storage or listed with its reason', async () => {
      const name = uniqueName('lv-web');
      const disks = [
        { target: 'vda', source: await raw(join(files, `${name}-a.img`)), format: 'raw' as const },
        { target: 'vdb', source: await qcow2(join(images, `${name}-b.qcow2`)), format: 'qcow2' as const },
        { target: 'vdc', source: await qcow2(join(files, `${name}-c.qcow2`)), format: 'qcow2' as const },
        { target: 'vdd', source: await raw(join(outside, `${name}-d.img`)), format: 'raw' as const },
      ];
      const uuid = await defineDomain(domainXml(name, { title: 'web-frontend', disks }));
      domains.add(uuid);
      const vm = await waitFor('the domain as a VM', () => vmOf(s, name));
      expect(vm).toMatchObject({ hostname: name, uuid, alias: 'web-frontend', node: s.node, owner: 'admin', status: 'stopped', qmp_socket: null });
      const list = await disksOf(s, name);
      expect(list).toEqual([
        { disk_id: 1, zpool: 'files', path: `${name}-a.img`, size: 4, target: 'vda', detached: false, reason: null },
        { disk_id: 2, zpool: 'images', path: `${name}-b.qcow2`, size: 8, target: 'vdb', detached: false, reason: null },
        { disk_id: 3, zpool: null, path: disks[2]!.source, size: 0, target: 'vdc', detached: false, reason: 'qcow2 image on file storage files' },
        { disk_id: 4, zpool: null, path: disks[3]!.source, size: 0, target: 'vdd', detached: false, reason: 'not under an esnap storage' },
      ]);
      // The source path of a disk on no storage tells the host's layout: super admin only.
      const dcAdmin = await makeUser(s, uniqueName('dcadm'));
      const dc = await s.runtime.ctx.db.selectFrom('dc').select('id').where('name', '=', 'main').executeTakeFirstOrThrow();
      await s.runtime.ctx.db.insertInto('dc_admin').values({ dc_id: dc.id, user_id: dcAdmin.id }).execute();
      const seen = await disksOf(s, name, dcAdmin.key);
      expect(seen.map((d) => d['path'])).toEqual([`${name}-a.img`, `${name}-b.qcow2`, null, null]);

      // A disk on no storage is never snapshotted; a mapped one is.
      const refused = await s.req('POST', `/api/vm/${name}/snapshot/s1`, { body: { disk_id: 3 } });
      expect(refused.status).toBe(417);
      expect(refused.body.detail).toBe('Disk is not on an esnap storage');
      const made = await s.stream('POST', `/api/vm/${name}/snapshot/s1`, { body: { disk_id: 1 } });
      expect(made.finalStatus).toBe(200);
      const made2 = await s.stream('POST', `/api/vm/${name}/snapshot/s2`, { body: { disk_id: 2 } });
      expect(made2.finalStatus).toBe(200);
      expect((await run('qemu-img', ['snapshot', '-l', '-U', disks[1]!.source])).stdout).toMatch(/es-\d+/);

      // Its definition and images are libvirt's: esnap neither adds, edits or deletes its disks nor deletes the VM.
      expect((await s.req('POST', `/api/vm/${name}/define/disk/5`, { body: { size: 8, zpool: 'files' } })).status).toBe(403);
      expect((await s.req('PUT', `/api/vm/${name}/define/disk/1`, { body: { size: 8 } })).status).toBe(403);
      expect((await s.req('DELETE', `/api/vm/${name}/define/disk/1`)).status).toBe(403);
      expect((await s.req('DELETE', `/api/vm/${name}/define`)).status).toBe(403);
      expect((await disksOf(s, name)).length).toBe(4);
    });

    it('a disk whose image is not there yet is listed with its reason, and mapped once the image is made', async () => {
      // Seen in the chaos run: a zfs storage too busy to answer at the first read left a disk on
      // no storage until its domain changed; the full resync now maps it.
      const name = uniqueName('lv-late');
      const source = join(files, `${name}-a.img`);
      const uuid = await defineDomain(domainXml(name, { disks: [{ target: 'vda', source, format: 'raw' }] }));
      domains.add(uuid);
      await waitFor('the domain as a VM', () => vmOf(s, name));
      expect(await disksOf(s, name)).toEqual([{ disk_id: 1, zpool: null, path: source, size: 0, target: 'vda', detached: false, reason: 'not a disk of file storage files' }]);
      await raw(source);
      // The next full resync (every 30 s) maps it, as the same disk (target and source kept).
      const mapped = await waitFor(
        'the disk mapped',
        async () => {
          const list = await disksOf(s, name);
          return list[0]?.['zpool'] === 'files' ? list : null;
        },
        120_000,
        500,
      );
      expect(mapped).toEqual([{ disk_id: 1, zpool: 'files', path: `${name}-a.img`, size: 4, target: 'vda', detached: false, reason: null }]);
      const made = await s.stream('POST', `/api/vm/${name}/snapshot/late1`, { body: { disk_id: 1 } });
      expect(made.finalStatus).toBe(200);
    }, 180_000);

    it('rename, detach, attach and undefine are reflected; a detached disk keeps its snapshots', async () => {
      const name = uniqueName('lv-db');
      const a = await raw(join(files, `${name}-a.img`));
      const b = await raw(join(files, `${name}-b.img`));
      const uuid = await defineDomain(domainXml(name, { disks: [{ target: 'vda', source: a, format: 'raw' }, { target: 'vdb', source: b, format: 'raw' }] }));
      domains.add(uuid);
      await waitFor('the domain as a VM', () => vmOf(s, name));
      expect((await s.stream('POST', `/api/vm/${name}/snapshot/keep`, { body: { disk_id: 1 } })).finalStatus).toBe(200);

      const renamed = uniqueName('lv-db2');
      await virsh('domrename', name, renamed);
      const vm = await waitFor('the rename', () => vmOf(s, renamed));
      expect(vm['uuid']).toBe(uuid);
      expect(await vmOf(s, name)).toBeNull();

      // vda has a snapshot: it stays, detached; vdb has none: it goes.
      await virsh('detach-disk', uuid, 'vda', '--config');
      await virsh('detach-disk', uuid, 'vdb', '--config');
      const c = await raw(join(files, `${name}-c.img`));
      await virsh('attach-disk', uuid, c, 'vdc', '--config', '--driver', 'qemu', '--subdriver', 'raw', '--targetbus', 'virtio');
      const after = await waitFor('the disk changes', async () => {
        const l = await disksOf(s, renamed);
        return l.length === 2 && l[1]!['target'] === 'vdc' && l[0]!['detached'] === true ? l : null;
      });
      expect(after.map((d) => [d['target'], d['path'], d['detached']])).toEqual([
        ['vda', `${name}-a.img`, true],
        ['vdc', `${name}-c.img`, false],
      ]);
      const snaps = await s.req('GET', `/api/vm/${renamed}/snapshot`, { query: { disk_id: '1' } });
      expect(snaps.body.result).toEqual(['keep']);

      // The same target with a new source is a new disk, never the old one's snapshots.
      await virsh('detach-disk', uuid, 'vdc', '--config');
      const a2 = await raw(join(files, `${name}-a2.img`));
      await virsh('attach-disk', uuid, a2, 'vda', '--config', '--driver', 'qemu', '--subdriver', 'raw', '--targetbus', 'virtio');
      const swapped = await waitFor('the new source', async () => {
        const l = await disksOf(s, renamed);
        return l.length === 2 && l[1]!['path'] === `${name}-a2.img` ? l : null;
      });
      expect(swapped.map((d) => [d['target'], d['path'], d['detached']])).toEqual([
        ['vda', `${name}-a.img`, true],
        ['vda', `${name}-a2.img`, false],
      ]);
      expect((await s.req('GET', `/api/vm/${renamed}/snapshot`, { query: { disk_id: '2' } })).body.result).toEqual([]);

      await virsh('undefine', uuid);
      const gone = await waitFor('the undefine', async () => ((await vmOf(s, renamed))?.['status'] === 'notcreated' ? true : null));
      expect(gone).toBe(true);
      expect((await s.req('GET', `/api/vm/${renamed}/snapshot`, { query: { disk_id: '1' } })).body.result).toEqual(['keep']);
    });

    it('a domain whose name is an API-registered VM, or whose name is not a hostname, is skipped and reported', async () => {
      const name = uniqueName('lv-taken');
      const registered = await makeVm(s, name);
      const uuid = await defineDomain(domainXml(name));
      domains.add(uuid);
      const badName = `${uniqueName('lv')} bad name`;
      const badUuid = await defineDomain(domainXml(badName));
      domains.add(badUuid);
      const conflicts = await waitFor('the conflicts', async () => {
        const c = libvirtConflicts.get(s.node) ?? [];
        return c.some((x) => x.uuid === uuid) && c.some((x) => x.uuid === badUuid) ? c : null;
      });
      expect(conflicts.find((c) => c.uuid === uuid)).toEqual({ uuid, name, reason: 'name is already the hostname of another VM' });
      expect(conflicts.find((c) => c.uuid === badUuid)).toEqual({ uuid: badUuid, name: badName, reason: 'name is not a valid hostname' });
      expect((await vmOf(s, name))?.['uuid']).toBe(registered.uuid);
      expect(warnings.some((w) => w.msg === 'libvirt domain skipped' && (w.obj as { uuid?: string }).uuid === uuid)).toBe(true);
      // /readyz counts them by reason (it names no VM; the log does), and stays ready.
      const ready = await s.req('GET', '/readyz');
      expect(ready.status).toBe(200);
      expect(ready.body.checks.libvirt).toMatchObject({ ok: true, skipped_domains: 2 });
      expect(ready.body.checks.libvirt.skipped).toContain('name is already the hostname of another VM (1)');
      expect(ready.body.checks.libvirt.skipped).toContain('name is not a valid hostname (1)');
      expect(JSON.stringify(ready.body)).not.toContain(name);

      // Resolved (renamed, undefined): gone from /readyz, and the renamed domain appears.
      const freed = uniqueName('lv-freed');
      await virsh('domrename', uuid, freed);
      await virsh('undefine', badUuid);
      await waitFor('the resolved conflicts', async () => ((await s.req('GET', '/readyz')).body.checks.libvirt?.skipped_domains === 0 ? true : null));
      expect((await vmOf(s, freed))?.['uuid']).toBe(uuid);
    });
  });
}
