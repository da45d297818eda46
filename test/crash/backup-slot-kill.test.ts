/**
 * kill -9 of a real `esnap serve` (its process group, on PostgreSQL, with its own agent as backup
 * node) between claiming a scheduled backup's slot and queuing its task: after the restart the
 * slot fires exactly once — no missed slot (the committed task is sent and the backup is made),
 * no second backup (the restarted scheduler finds the slot claimed).
 *
 * The kill lands at that point without timing: the test holds pg-boss's job table locked
 * (`LOCK TABLE … IN EXCLUSIVE MODE`, in a transaction of its own), lets the schedule come due, and
 * waits until the claim has committed (the slot's row and the PENDING task are visible), while
 * the task's queue message cannot be written (pg-boss's insert waits on the test's lock); then
 * SIGKILL, then the lock goes. The schedule is yearly (1 January 00:00 UTC), set back to this year's slot: the
 * catch-up slot is the only slot of the test's lifetime. The scheduler ticks on the minute, so the
 * claim comes within about a minute.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { startServe, sleep, type EsnapServe } from '../helpers/esnap-process.js';
import { newBackupServeData, type ServeData } from '../helpers/serve-data.js';
import { testDatabases } from '../helpers/server.js';
import { openDatabase } from '../../src/db/dialect.js';
import { bossSchemaForUrl } from '../../src/queue/pgboss.names.js';
import { platformUnavailable } from '../platform/require.js';
import { resticUnavailable } from '../platform/restic.js';

const NODE = 'bsknode';

describe.runIf(testDatabases().includes('postgres'))('backup slot: kill -9 between the claim and the queue [postgres]', async () => {
  const reason = await resticUnavailable();
  if (reason !== null) return platformUnavailable('backup slot kill test needs restic', reason);
  let data: ServeData;
  let env: Record<string, string>;
  let server: EsnapServe | null = null;
  let reader: ReturnType<typeof openDatabase> | null = null;
  const slot = new Date(Date.UTC(new Date().getUTCFullYear(), 0, 1)).toISOString();
  const nextSlot = new Date(Date.UTC(new Date().getUTCFullYear() + 1, 0, 1)).toISOString();

  beforeAll(async () => {
    data = await newBackupServeData('postgres', { prefix: 'esnap-bkslotkill-', node: NODE });
    env = { ...data.env, ESNAP_BACKUP_NODE: '1' };
  });
  afterAll(async () => {
    await server?.killGroup();
    await reader?.db.destroy();
    await data?.cleanup();
  });

  /** What the database says of the slot, its tasks and backups. */
  const state = async () => {
    reader ??= openDatabase(data.dbUrl);
    const db = reader.db;
    return {
      slots: await db.selectFrom('backup_slot').select(['slot', 'state', 'source']).execute(),
      tasks: await db.selectFrom('task').select(['id', 'state']).where('kind', '=', 'backup_create').execute(),
      backups: await db.selectFrom('backup').select(['name', 'status']).execute(),
      nextRun: (await db.selectFrom('backup_define').select('next_run').executeTakeFirst())?.next_run ?? null,
    };
  };

  it('fires the slot exactly once after a kill between its claim and its queue message', async () => {
    server = await startServe(env, { group: true });
    expect((await server.api('POST', '/api/vm/bsk/define/', {})).status).toBe(201);
    const disk = await server.api('POST', '/api/vm/bsk/define/disk/1/', { size: 8 });
    expect(disk.status).toBe(201);
    const fh = await open(join(data.dir, 'storage', disk.body.result.path as string), 'r+');
    await fh.write(randomBytes(8 * 1024 * 1024), 0, 8 * 1024 * 1024, 0);
    await fh.close();
    const def = await server.api('POST', '/api/vm/bsk/define/backup/y', { type: 2, node: NODE, zpool: 'backup', schedule: '0 0 1 1 *', retention: 5 });
    expect(def.status, JSON.stringify(def.body)).toBe(201);

    const bossJob = `${bossSchemaForUrl(data.dbUrl)}.job`;
    const holder = new pg.Client({ connectionString: data.dbUrl });
    await holder.connect();
    let taskId: string;
    try {
      await holder.query('BEGIN');
      await holder.query(`LOCK TABLE ${bossJob} IN EXCLUSIVE MODE`);
      // The slot missed "while the server was down": due now, claimed at the next minute's tick.
      await state();
      await reader!.db.updateTable('backup_define').set({ next_run: slot }).execute();

      for (let i = 0; ; i++) {
        if (!server.alive()) throw new Error(`the server exited:\n${server.output()}`);
        const s = await state();
        if (s.slots.length > 0 && s.tasks.length > 0) break;
        if (i > 1800) throw new Error(`no claim within 90 s: ${JSON.stringify(s)}\n${server.output()}`);
        await sleep(50);
      }
      // Claimed and committed, its queue message not written (the insert waits on the lock).
      const claimed = await state();
      expect(claimed.slots).toEqual([{ slot, state: 'fired', source: 'catchup' }]);
      expect(claimed.tasks.map((t) => t.state)).toEqual(['PENDING']);
      taskId = claimed.tasks[0]!.id;
      // Its queue message is not written: the insert cannot pass the lock (the holder reads the table).
      const queued = await holder.query<{ n: string }>(`SELECT count(*) AS n FROM ${bossJob} WHERE data->>'taskId' = $1`, [taskId]);
      expect(Number(queued.rows[0]!.n)).toBe(0);
      await server.killGroup();
      server = null;
      await holder.query('COMMIT');
    } finally {
      await holder.end();
    }

    const down = await state();
    expect(down.slots).toEqual([{ slot, state: 'fired', source: 'catchup' }]);
    expect(down.tasks).toEqual([{ id: taskId, state: 'PENDING' }]);
    expect(down.nextRun).toBe(nextSlot);

    server = await startServe(env, { group: true });
    let after = await state();
    for (let i = 0; after.tasks.some((t) => t.state === 'PENDING' || t.state === 'STARTED'); i++) {
      if (i > 3600) throw new Error(`the backup task did not end within 180 s: ${JSON.stringify(after)}\n${server.output()}`);
      await sleep(50);
      after = await state();
    }
    expect(after.tasks).toEqual([{ id: taskId, state: 'SUCCESS' }]);
    expect(after.slots).toEqual([{ slot, state: 'fired', source: 'catchup' }]);
    expect(after.backups.map((b) => b.status)).toEqual([1]);
    expect(after.nextRun).toBe(nextSlot);
    const list = await server.api('GET', '/api/vm/bsk/backup?full=true');
    expect(list.status).toBe(200);
    expect(list.body.result.map((b: { status: number }) => b.status)).toEqual([1]);
  }, 300_000);
});
