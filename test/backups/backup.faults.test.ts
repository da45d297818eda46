/**
 * Backups under faults, with real restic: the backup storage full (a small tmpfs) fails the task
 * with a clear message, lists nothing half-made, leaves no source snapshot, and the next run (once
 * there is room) succeeds; a snapshot operation on the disk meanwhile is refused with Danube's
 * lock answer; scheduled runs fire and retention keeps `retention` backups.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, open, readdir } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withServer, type TestServer } from '../helpers/server.js';
import { platformUnavailable } from '../platform/require.js';
import { resticUnavailable } from '../platform/restic.js';

const MB = 1024 * 1024;

/** Polls a task until it ends; its final status reply. */
async function waitTask(s: TestServer, id: string): Promise<{ status: string; result: unknown }> {
  for (;;) {
    const r = await s.req('GET', `/api/task/${id}/status/`);
    if (r.body.status !== 'PENDING' && r.body.status !== 'STARTED') return r.body as { status: string; result: unknown };
    await new Promise((res) => setTimeout(res, 50));
  }
}

async function tmpfsUnavailable(): Promise<string | null> {
  if (process.getuid?.() !== 0) return 'mounting a tmpfs needs root';
  return resticUnavailable();
}

describe('backups under faults (restic)', async () => {
  const reason = await tmpfsUnavailable();
  if (reason !== null) return platformUnavailable('backup fault tests need root and restic', reason);

  let s: TestServer & { cleanup(): Promise<void> };
  let backupRoot: string;
  let src: string;

  beforeAll(async () => {
    s = await withServer('sqlite', {
      storages: (root) => {
        backupRoot = join(root, 'backup');
        return [
          { name: 'default', driver: 'file', root: join(root, 'storage') },
          { name: 'backup', driver: 'file', root: backupRoot },
        ];
      },
    });
    await mkdir(backupRoot, { recursive: true });
    // 4 MiB of room for an 8 MiB disk of random (incompressible) bytes.
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', backupRoot]);
    expect((await s.req('POST', '/api/vm/full01/define/', { body: {} })).status).toBe(201);
    const d = await s.req('POST', '/api/vm/full01/define/disk/1/', { body: { size: 8 } });
    src = d.body.result.path as string;
    const fh = await open(join(s.storageRoot, 'storage', src), 'r+');
    await fh.write(randomBytes(8 * MB), 0, 8 * MB, 0);
    await fh.close();
    const def = await s.req('POST', '/api/vm/full01/define/backup/often', {
      body: { type: 2, node: s.node, zpool: 'backup', schedule: '* * * * *', retention: 2 },
    });
    expect(def.status, def.text).toBe(201);
  }, 120_000);
  afterAll(async () => {
    await s?.close();
    try {
      execFileSync('umount', ['-l', backupRoot]);
    } catch {
      /* not mounted */
    }
    await (s as unknown as { destroy(): Promise<void> })?.destroy?.();
  });

  it('storage full: FAILURE with a clear message, nothing listed, no source snapshot left; the next run succeeds', async () => {
    const c = await s.stream('POST', '/api/vm/full01/backup/often', { body: {} });
    expect(c.finalStatus).toBe(400);
    expect(JSON.stringify(c.final)).toMatch(/Backup storage is full/);
    expect((await s.req('GET', '/api/vm/full01/backup')).body.result).toEqual([]);
    expect(await s.runtime.ctx.db.selectFrom('backup').selectAll().execute()).toEqual([]);
    // The cleanup task has run when no task is left.
    for (let i = 0; i < 200 && (await s.runtime.ctx.db.selectFrom('task').select('id').where('state', 'in', ['PENDING', 'STARTED']).execute()).length > 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(await readdir(join(s.storageRoot, 'storage', '.snapshots', src)).catch(() => [])).toEqual([]);
    const def = await s.runtime.ctx.db.selectFrom('backup_define').selectAll().executeTakeFirstOrThrow();
    expect(def.last_error).toMatch(/Backup storage is full/);

    execFileSync('mount', ['-o', 'remount,size=64m', backupRoot]);
    const ok = await s.stream('POST', '/api/vm/full01/backup/often', { body: {} });
    expect(ok.finalStatus, JSON.stringify(ok.final)).toBe(200);
    const list = (await s.req('GET', '/api/vm/full01/backup', { query: { full: 'true' } })).body.result;
    expect(list.map((b: { status: number }) => b.status)).toEqual([1]);
  }, 120_000);

  it('a snapshot of the disk while its backup runs gets Danube\'s lock answer', async () => {
    // Names carry seconds: a backup in the same second as the last one would be 406 `Backup already exists`.
    await new Promise((r) => setTimeout(r, 1100));
    const started = await s.req('POST', '/api/vm/full01/backup/often', { body: {} });
    expect(started.status, started.text).toBe(201);
    const snap = await s.req('POST', '/api/vm/full01/snapshot/during/', { body: {} });
    expect([snap.status, snap.body.result]).toEqual([400, 'Task did not acquire lock']);
    const done = await waitTask(s, started.body.task_id as string);
    expect(done.status, JSON.stringify(done)).toBe('SUCCESS');
  }, 120_000);

  it('the scheduler fires the definition; retention keeps the newest two', async () => {
    const before = (await s.req('GET', '/api/vm/full01/backup')).body.result as string[];
    expect(before).toHaveLength(2);
    await s.runtime.ctx.db.updateTable('backup_define').set({ next_run: new Date(Date.now() - 1000).toISOString() }).execute();
    // Names carry seconds: make sure the scheduled one differs from the last manual one.
    await new Promise((r) => setTimeout(r, 1100));
    const report = await s.runtime.backupScheduler.tick();
    expect(report.fired).toHaveLength(1);
    const done = await waitTask(s, report.fired[0]!.taskId);
    expect(done.status, JSON.stringify(done)).toBe('SUCCESS');
    // Retention's delete runs as a task after the create.
    let names: string[] = [];
    for (let i = 0; i < 200; i++) {
      names = (await s.req('GET', '/api/vm/full01/backup')).body.result as string[];
      if (names.length === 2 && !names.includes(before[1]!)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(names).toHaveLength(2);
    expect(names).not.toContain(before[1]);
    const def = await s.runtime.ctx.db.selectFrom('backup_define').selectAll().executeTakeFirstOrThrow();
    expect(def.last_success).not.toBeNull();
    expect(def.next_run).not.toBeNull();
  }, 120_000);
});
