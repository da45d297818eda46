/**
 * Freeze through libvirt (issue 14): the Debian test guest (test/platform/guest) booted as a
 * libvirt domain (TCG) with a guest-agent channel that libvirt owns; esnap freezes it with
 * libvirt's agent calls. The suite's one guest boot: a root disk (qcow2 overlay on a `qcow2`
 * storage) and a raw ext4 data disk mounted on /data (on a `file` storage).
 *
 * - A snapshot with fsfreeze through the API is a clean ext4 holding data written without sync,
 *   and the guest is thawed after it.
 * - `disk_id: "all"` takes both disks under the one freeze.
 * - The guest is thawed when the snapshot fails, and at the freeze limit while it still runs.
 */
import { execFile } from 'node:child_process';
import { chmod, mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withLibvirtFreeze } from '../../src/hypervisor/libvirt.freeze.js';
import { Virsh } from '../../src/hypervisor/virsh.js';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import { waitFor } from '../cluster/cluster.helpers.js';
import { withServer, type TestServer } from '../helpers/server.js';
import { buildGuest, guestUnavailable } from '../platform/guest.js';
import { cleanupDomains, defineDomain, libvirtUnavailable, LIBVIRT_URI, uniqueName, virsh } from '../platform/libvirt.js';
import { platformUnavailable } from '../platform/require.js';
import { expectCleanExt4 } from '../helpers/ext4.js';

const run = promisify(execFile);
const unavailable = (await libvirtUnavailable()) ?? (await guestUnavailable());

describe('freeze through libvirt in a real guest', () => {
  if (unavailable !== null) {
    platformUnavailable('a guest with an agent under libvirt', unavailable);
    return;
  }
  let s: TestServer & { cleanup(): Promise<void> };
  let uuid = '';
  let name = '';
  let serialLog = '';
  const domains = new Set<string>();
  /** The server's log lines (message texts), to count freezes. */
  const lines: string[] = [];
  const keep = (_o: unknown, msg?: string): void => void (msg !== undefined && lines.push(msg));

  beforeAll(async () => {
    const image = (await buildGuest()).dir;
    s = await withServer('sqlite', {
      log: { debug: () => undefined, info: keep, warn: keep, error: keep },
      hypervisor: { kind: 'libvirt', uri: LIBVIRT_URI, dc: null },
      storages: (root) => [
        { name: 'default', driver: 'file', root: join(root, 'files') },
        { name: 'images', driver: 'qcow2', root: join(root, 'images') },
      ],
    });
    name = uniqueName('lv-guest');
    const images = join(s.storageRoot, 'images');
    const files = join(s.storageRoot, 'files');
    await mkdir(images, { recursive: true });
    await mkdir(files, { recursive: true });
    // libvirt runs QEMU as its own user, which must reach the images (temp folders are 0700).
    await chmod(s.storageRoot, 0o755);
    const root = join(images, `${name}.qcow2`);
    const data = join(files, `${name}.img`);
    serialLog = join(s.storageRoot, 'serial.log');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', join(image, 'rootfs.img'), '-F', 'raw', root]);
    await run('truncate', ['-s', '64M', data]);
    await run('mkfs.ext4', ['-q', '-F', '-L', 'data', data], { env: { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` } });
    uuid = await defineDomain(`<domain type='qemu'>
  <name>${name}</name>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>${join(image, 'vmlinuz')}</kernel>
    <initrd>${join(image, 'initrd.img')}</initrd>
    <cmdline>root=/dev/vda rw console=ttyS0 init=/sbin/esnap-init panic=-1 loglevel=4</cmdline>
  </os>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='${root}'/><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='${data}'/><target dev='vdb' bus='virtio'/></disk>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <serial type='file'><source path='${serialLog}'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>`);
    domains.add(uuid);
    const started = Date.now();
    await virsh('start', uuid);
    await waitFor('the guest agent', async () => (await agent('guest-ping').then(() => true, () => null)), 300_000, 1_000).catch(async (err: Error) => {
      const serial = await run('tail', ['-c', '3000', serialLog]).then((r) => r.stdout, () => '');
      throw new Error(`${err.message}\n--- serial console (tail) ---\n${serial}`);
    });
    console.info(`libvirt guest: boot to guest-ping ${((Date.now() - started) / 1000).toFixed(1)} s`);
    await waitFor('the running VM', async () => {
      const r = await s.req('GET', `/api/vm/${name}/status`);
      return r.status === 200 && r.body.result.status === 'running';
    }, 30_000);
  }, 25 * 60_000);

  afterAll(async () => {
    await cleanupDomains(domains);
    await s?.cleanup();
  });

  /** A guest-agent command through libvirt (libvirt owns the channel). */
  async function agent<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    const out = await virsh('qemu-agent-command', uuid, JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }));
    return (JSON.parse(out) as { return: T }).return;
  }

  const status = (): Promise<string> => agent<string>('guest-fsfreeze-status');

  /** Writes a file in the guest through its agent, without any sync. */
  async function guestWrite(path: string, text: string): Promise<void> {
    const handle = await agent<number>('guest-file-open', { path, mode: 'w' });
    await agent('guest-file-write', { handle, 'buf-b64': Buffer.from(text).toString('base64') });
    await agent('guest-file-close', { handle });
  }

  /** The file driver's copy of the data disk for snapshot `id`. */
  async function dataSnapshot(id: number): Promise<string> {
    const dir = join(s.storageRoot, 'files', '.snapshots', `${name}.img`);
    const file = (await readdir(dir)).find((f) => f === `es-${id}`);
    if (!file) throw new Error(`no snapshot es-${id} in ${dir}`);
    return join(dir, file);
  }

  it('a snapshot with fsfreeze is a clean ext4 holding data written without sync; the guest is thawed after', async () => {
    const marker = `written before the freeze ${Date.now()}\n`;
    await guestWrite('/data/marker.txt', marker);
    const r = await s.stream('POST', `/api/vm/${name}/snapshot/frozen1/`, { body: { disk_id: 2, fsfreeze: true } });
    expect(r.finalStatus, JSON.stringify(r.final)).toBe(200);
    expect(r.final).toMatchObject({ result: { returncode: 0, message: 'Snapshot successfully created' } });
    const g = await s.req('GET', `/api/vm/${name}/snapshot/frozen1/`, { query: { disk_id: '2' } });
    expect(g.body.result.fsfreeze).toBe(true);
    expect(await status()).toBe('thawed');
    await expectCleanExt4(await dataSnapshot(g.body.result.id as number), '/marker.txt', marker);
    // And the guest writes again.
    await guestWrite('/data/after.txt', 'thawed\n');
  }, 180_000);

  it('disk_id "all" takes every disk of the domain under one freeze', async () => {
    const marker = `all disks ${Date.now()}\n`;
    await guestWrite('/data/all.txt', marker);
    lines.length = 0;
    const r = await s.stream('POST', `/api/vm/${name}/snapshot/frozenall/`, { body: { disk_id: 'all', fsfreeze: true } });
    expect(r.finalStatus, JSON.stringify(r.final)).toBe(200);
    expect(r.final).toMatchObject({ result: { returncode: 0, message: 'Snapshot successfully created' } });
    const rows = await s.runtime.ctx.db.selectFrom('snapshot').select(['id', 'disk_real_id', 'fsfreeze', 'status']).where('name', '=', 'frozenall').orderBy('disk_real_id').execute();
    expect(rows.map((x) => [x.fsfreeze, x.status])).toEqual([
      [1, 1],
      [1, 1],
    ]);
    // One freeze for both disks: one freeze and one thaw in the agent's log.
    expect(lines.filter((l) => l === 'guest filesystems frozen' || l === 'guest filesystems thawed')).toEqual(['guest filesystems frozen', 'guest filesystems thawed']);
    // QEMU made the root disk's snapshot; the data disk's copy is clean and holds the unsynced file.
    const blocks = JSON.parse(await virsh('qemu-monitor-command', uuid, '{"execute":"query-block"}')) as {
      return: Array<{ inserted?: { file?: string; image?: { snapshots?: Array<{ name: string }> } } }>;
    };
    const rootSnaps = blocks.return.find((b) => b.inserted?.file?.endsWith(`${name}.qcow2`))?.inserted?.image?.snapshots ?? [];
    expect(rootSnaps.map((x) => x.name)).toContain(`es-${rows[0]!.id}`);
    await expectCleanExt4(await dataSnapshot(rows[1]!.id), '/all.txt', marker);
    expect(await status()).toBe('thawed');
  }, 180_000);

  it('thaws the guest when the snapshot fails', async () => {
    const v = new Virsh(new NodeCommandRunner(), LIBVIRT_URI);
    let during = '';
    await expect(
      withLibvirtFreeze({ virsh: v, domain: uuid, limitMs: 60_000 }, async () => {
        during = await status();
        throw new Error('snapshot failed');
      }),
    ).rejects.toThrow('snapshot failed');
    expect(during).toBe('frozen');
    expect(await status()).toBe('thawed');
  }, 120_000);

  it('thaws the guest at the freeze limit while the snapshot still runs; the result counts, unfrozen', async () => {
    const v = new Virsh(new NodeCommandRunner(), LIBVIRT_URI);
    const limitMs = 3_000;
    const started = Date.now();
    let thawedAfterMs: number | null = null;
    let sawFrozen = false;
    const r = await withLibvirtFreeze({ virsh: v, domain: uuid, limitMs }, async () => {
      for (let i = 0; i < 200 && thawedAfterMs === null; i++) {
        if ((await status()) === 'thawed') thawedAfterMs = Date.now() - started;
        else {
          sawFrozen = true;
          await sleep(250);
        }
      }
      return 'late';
    });
    expect(sawFrozen).toBe(true);
    expect(thawedAfterMs).not.toBeNull();
    expect(thawedAfterMs!).toBeGreaterThanOrEqual(limitMs);
    expect(r).toEqual({ value: 'late', frozen: false, error: 'Filesystem freeze failed (thawed at the freeze limit of 3 s before the snapshot finished)' });
    expect(await status()).toBe('thawed');
  }, 120_000);
});
