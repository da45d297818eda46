/**
 * The whole freeze → snapshot → thaw path in a real Debian guest (platform test; slow: the guest
 * is built on first use, about 2 minutes, then cached, and boots in about 15-30 s under TCG).
 * The guest's data disk is a raw image on the host; the "snapshot" copies that file while the
 * guest is frozen, as the file driver would.
 */
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withFreeze } from '../../src/guest/freeze.js';
import { QgaClient, type FsfreezeStatus } from '../../src/guest/qga.js';
import { bootGuest, buildGuest, guestUnavailable, type Guest } from '../platform/guest.js';
import { platformUnavailable } from '../platform/require.js';
import { e2fs, expectCleanExt4 } from '../helpers/ext4.js';

const reason = await guestUnavailable();

describe('filesystem freeze in a real guest', () => {
  if (reason !== null) {
    platformUnavailable('freeze → snapshot → thaw in a real guest', reason);
    return;
  }
  let guest: Guest;

  beforeAll(async () => {
    const build = await buildGuest();
    guest = await bootGuest({ dataSizeMb: 64 });
    console.info(`guest: build/cache check ${(build.ms / 1000).toFixed(1)} s, boot to guest-ping ${(guest.bootMs / 1000).toFixed(1)} s`);
  }, 25 * 60_000);

  afterAll(async () => {
    await guest?.stop();
  });

  it('freezes the guest for the snapshot and thaws it after; the copy is a clean filesystem holding unsynced data', async () => {
    // Written through the agent without any sync: only the freeze puts it on the disk image.
    const marker = `written before the freeze ${Date.now()}\n`;
    await guestWriteFile(guest.qgaSocket, '/data/marker.txt', marker);
    const snap = join(guest.dir, 'snap.raw');
    const seen: FsfreezeStatus[] = [];

    const r = await withFreeze({ socket: guest.qgaSocket, limitMs: 60_000 }, async () => {
      seen.push(await status(guest.qgaSocket));
      await copyFile(guest.dataImage!, snap);
      return 'copied';
    });

    expect(r).toEqual({ value: 'copied', frozen: true, error: null });
    expect(seen).toEqual(['frozen']);
    expect(await status(guest.qgaSocket)).toBe('thawed');
    // A clean filesystem that holds the marker (a copy of the live, unfrozen image would not).
    await expectCleanExt4(snap, '/marker.txt', marker);
    // And the guest can write again.
    await guestWriteFile(guest.qgaSocket, '/data/after.txt', 'thawed\n');
  }, 120_000);

  it('thaws a guest whose snapshot hangs at the limit; the snapshot result still counts', async () => {
    const limitMs = 3_000;
    const started = Date.now();
    let thawedAfterMs: number | null = null;

    const r = await withFreeze({ socket: guest.qgaSocket, limitMs }, async () => {
      // A snapshot that takes far longer than the limit, watching the guest meanwhile.
      for (let i = 0; i < 200 && thawedAfterMs === null; i++) {
        if ((await status(guest.qgaSocket)) === 'thawed') thawedAfterMs = Date.now() - started;
        else await sleep(250);
      }
      return 'late';
    });

    expect(thawedAfterMs).not.toBeNull();
    expect(thawedAfterMs!).toBeGreaterThanOrEqual(limitMs);
    expect(thawedAfterMs!).toBeLessThan(limitMs + 30_000);
    expect(r).toEqual({
      value: 'late',
      frozen: false,
      error: 'Filesystem freeze failed (thawed at the freeze limit of 3 s before the snapshot finished)',
    });
    expect(await status(guest.qgaSocket)).toBe('thawed');
  }, 120_000);

  it('thaws when the snapshot fails', async () => {
    let during: FsfreezeStatus | undefined;
    await expect(
      withFreeze({ socket: guest.qgaSocket, limitMs: 60_000 }, async () => {
        during = await status(guest.qgaSocket);
        throw new Error('snapshot failed');
      }),
    ).rejects.toThrow('snapshot failed');
    expect(during).toBe('frozen');
    expect(await status(guest.qgaSocket)).toBe('thawed');
  }, 120_000);

  it('takes an application-consistent snapshot through the API: POST with fsfreeze on a running VM', async () => {
    const { withServer } = await import('../helpers/server.js');
    const { randomUUID } = await import('node:crypto');
    const { basename, dirname } = await import('node:path');
    const s = await withServer('sqlite', { storages: () => [{ name: 'default', driver: 'file', root: dirname(guest.dataImage!) }] });
    try {
      const db = s.runtime.ctx.db;
      const node = await db.selectFrom('node').selectAll().executeTakeFirstOrThrow();
      const storage = await db.selectFrom('node_storage').selectAll().executeTakeFirstOrThrow();
      const uuid = randomUUID();
      const now = new Date().toISOString();
      await db
        .insertInto('vm')
        .values({
          uuid, hostname: 'guest01', alias: 'guest01', dc_id: 1, owner_id: 1, node_id: node.id, brand: 'kvm', status: 2,
          status_change: now, qmp_socket: null, qga_socket: guest.qgaSocket, snapshot_limit_manual: null,
          snapshot_limit_auto: null, snapshot_size_limit: null, snapshot_size_percent_limit: null, created: now, changed: now,
        })
        .execute();
      await db
        .insertInto('vm_disk')
        .values({ vm_uuid: uuid, real_id: 0, storage_id: storage.id, path: basename(guest.dataImage!), size_mb: 64, created: now })
        .execute();
      await guestWriteFile(guest.qgaSocket, '/data/api-marker.txt', 'through the API\n');
      const r = await s.stream('POST', '/api/vm/guest01/snapshot/consistent/', { body: { fsfreeze: true } });
      expect(r.finalStatus).toBe(200);
      expect(r.final).toMatchObject({ result: { returncode: 0, message: 'Snapshot successfully created' } });
      const g = await s.req('GET', '/api/vm/guest01/snapshot/consistent/');
      expect(g.body.result.fsfreeze).toBe(true);
      expect(await status(guest.qgaSocket)).toBe('thawed');
      const snapFile = join(dirname(guest.dataImage!), '.snapshots', basename(guest.dataImage!), `es-${g.body.result.id}`);
      const features = (await e2fs(['dumpe2fs', '-h', snapFile])).stdout.split('\n').find((l) => l.startsWith('Filesystem features:'));
      expect(features).not.toMatch(/needs_recovery/);
      expect((await e2fs(['debugfs', '-R', 'cat /api-marker.txt', snapFile])).stdout).toBe('through the API\n');
    } finally {
      await s.cleanup();
    }
  }, 120_000);
});

async function status(socket: string): Promise<FsfreezeStatus> {
  const qga = await QgaClient.connect(socket);
  try {
    await qga.sync();
    return await qga.fsfreezeStatus();
  } finally {
    await qga.close();
  }
}

async function guestWriteFile(socket: string, path: string, text: string): Promise<void> {
  const qga = await QgaClient.connect(socket);
  try {
    await qga.sync();
    const handle = await qga.execute<number>('guest-file-open', { path, mode: 'w' });
    await qga.execute('guest-file-write', { handle, 'buf-b64': Buffer.from(text).toString('base64') });
    await qga.execute('guest-file-close', { handle });
  } finally {
    await qga.close();
  }
}
