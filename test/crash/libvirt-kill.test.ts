/**
 * kill -9 of `esnap serve` (its whole process group) in the middle of its first libvirt discovery
 * (issue 14): 80 domains with two disks each are being written, one transaction per domain. Right
 * after the kill every VM row written has both its disks (no half-written domain); after a
 * restart the inventory converges: every domain once, every disk once, nothing detached. The kill
 * instant is taken from the database itself (some of the domains written, not all); a start that
 * finished before the kill could land is retried on a fresh data folder, at most three times.
 */
import { writeFile, truncate, mkdtemp, mkdir, rm, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { sleep, spawnEsnap, startServe } from '../helpers/esnap-process.js';
import { domainXml, libvirtUnavailable, uniqueName, virsh } from '../platform/libvirt.js';
import { platformUnavailable } from '../platform/require.js';

const DOMAINS = 80;
const KEY = 'libvirt-kill-admin-key-0123456789abcdef';
const unavailable = await libvirtUnavailable();

interface Counts {
  vms: number;
  /** VMs of ours by disk count: must be {2: n} at all times. */
  disksPerVm: Record<number, number>;
  duplicateDisks: number;
  detached: number;
}

function counts(dbFile: string, tag: string): Counts {
  const db = new Database(dbFile, { readonly: true, fileMustExist: true });
  try {
    const vms = db.prepare(`SELECT uuid FROM vm WHERE libvirt = 1 AND hostname LIKE ?`).all(`${tag}-%`) as Array<{ uuid: string }>;
    const per = db
      .prepare(`SELECT vm.uuid, COUNT(vm_disk.id) AS n FROM vm LEFT JOIN vm_disk ON vm_disk.vm_uuid = vm.uuid WHERE vm.libvirt = 1 AND vm.hostname LIKE ? GROUP BY vm.uuid`)
      .all(`${tag}-%`) as Array<{ n: number }>;
    const disksPerVm: Record<number, number> = {};
    for (const r of per) disksPerVm[r.n] = (disksPerVm[r.n] ?? 0) + 1;
    const dup = db
      .prepare(
        `SELECT COUNT(*) AS n FROM (SELECT vm_uuid, libvirt_target, libvirt_source FROM vm_disk WHERE vm_uuid IN (SELECT uuid FROM vm WHERE hostname LIKE ?) GROUP BY vm_uuid, libvirt_target, libvirt_source HAVING COUNT(*) > 1)`,
      )
      .get(`${tag}-%`) as { n: number };
    const detached = db.prepare(`SELECT COUNT(*) AS n FROM vm_disk WHERE detached = 1 AND vm_uuid IN (SELECT uuid FROM vm WHERE hostname LIKE ?)`).get(`${tag}-%`) as { n: number };
    return { vms: vms.length, disksPerVm, duplicateDisks: dup.n, detached: detached.n };
  } catch (err) {
    // Before the migrations created the tables.
    if (/no such table/.test((err as Error).message)) return { vms: 0, disksPerVm: {}, duplicateDisks: 0, detached: 0 };
    throw err;
  } finally {
    db.close();
  }
}

describe('kill -9 during a libvirt discovery', () => {
  if (unavailable !== null) {
    platformUnavailable('needs a running libvirtd', unavailable);
    return;
  }
  const tag = uniqueName('lvk');
  const dirs: string[] = [];
  const uuids: string[] = [];

  afterAll(async () => {
    if (uuids.length > 0) await virsh(uuids.map((u) => `undefine ${u}`).join('; ')).catch(() => undefined);
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('every domain written is whole at the kill, and the restart converges without duplicates', async () => {
    const images = await mkdtemp(join(tmpdir(), 'esnap-lvk-images-'));
    dirs.push(images);
    await chmod(images, 0o755);
    const defines: string[] = [];
    for (let i = 0; i < DOMAINS; i++) {
      const disks = (['vda', 'vdb'] as const).map((target) => ({ target, source: join(images, `${tag}-${i}-${target}.img`), format: 'raw' as const }));
      for (const d of disks) {
        await writeFile(d.source, '');
        await truncate(d.source, 4 << 20);
      }
      const file = join(images, `${tag}-${i}.xml`);
      await writeFile(file, domainXml(`${tag}-${i}`, { disks }));
      defines.push(`define ${file}`);
    }
    await virsh(defines.join('; ')); // one virsh process for all of them
    const listed = await virsh('list', '--all', '--uuid', '--name');
    for (const line of listed.split('\n')) {
      const [uuid, name] = line.trim().split(/\s+/);
      if (uuid && name?.startsWith(`${tag}-`)) uuids.push(uuid);
    }
    expect(uuids).toHaveLength(DOMAINS);

    let midway: Counts | null = null;
    let dir = '';
    const envOf = (d: string): Record<string, string> => ({
      ESNAP_DATA_DIR: d,
      ESNAP_ADMIN_API_KEY: KEY,
      ESNAP_NODE: 'lvknode',
      ESNAP_LOCAL_AGENT: '1',
      ESNAP_HYPERVISOR: 'libvirt',
      ESNAP_STORAGES: JSON.stringify([{ name: 'images', driver: 'file', root: images }]),
    });
    for (let attempt = 0; attempt < 3 && midway === null; attempt++) {
      dir = await mkdtemp(join(tmpdir(), 'esnap-lvk-data-'));
      dirs.push(dir);
      await mkdir(dir, { recursive: true });
      const p = spawnEsnap(['serve'], { ESNAP_LISTEN: '127.0.0.1:0', ...envOf(dir) }, { group: true });
      const dbFile = join(dir, 'esnap.db');
      try {
        for (let i = 0; i < 6000 && p.alive(); i++) {
          const c = await Promise.resolve()
            .then(() => counts(dbFile, tag))
            .catch(() => null); // not created yet
          if (c && c.vms > 0 && c.vms < DOMAINS) {
            await p.killGroup();
            midway = counts(dbFile, tag);
            break;
          }
          if (c && c.vms === DOMAINS) break; // too late to land in the middle: next attempt
          await sleep(5);
        }
      } finally {
        await p.killGroup();
      }
    }
    expect(midway, 'a kill landed in the middle of the discovery within three starts').not.toBeNull();
    console.info(`libvirt kill: killed with ${midway!.vms} of ${DOMAINS} domains written`);
    // Whole domains only: each VM written has both its disks.
    expect(midway!.vms).toBeGreaterThan(0);
    expect(midway!.disksPerVm).toEqual({ 2: midway!.vms });
    expect(midway!.duplicateDisks).toBe(0);

    const s = await startServe(envOf(dir), { group: true });
    try {
      const vms = (await s.api('GET', '/api/vm/')).body.result as string[];
      expect(vms.filter((h) => h.startsWith(`${tag}-`))).toHaveLength(DOMAINS);
      const after = counts(join(dir, 'esnap.db'), tag);
      expect(after).toEqual({ vms: DOMAINS, disksPerVm: { 2: DOMAINS }, duplicateDisks: 0, detached: 0 });
      const disks = (await s.api('GET', `/api/vm/${tag}-0/define/disk/`)).body.result as Array<{ target: string; detached: boolean }>;
      expect(disks.map((d) => [d.target, d.detached])).toEqual([
        ['vda', false],
        ['vdb', false],
      ]);
    } finally {
      await s.killGroup();
    }
  }, 300_000);
});
