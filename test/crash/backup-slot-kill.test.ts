/**
 * kill -9 of a real `esnap serve` (its process group, with its own agent as backup node) around a
 * scheduled backup's slot: after the restart the slot fires exactly once — no missed slot (the
 * committed task is sent and the backup is made), no second backup (the restarted scheduler finds
 * the slot claimed, and the queue message, where one was written, is taken once).
 *
 * Where the kill lands, without timing:
 * - between the claim and the queue message (PostgreSQL): the test holds pg-boss's job table locked
 *   (`LOCK TABLE … IN EXCLUSIVE MODE`, in a transaction of its own) and waits until the claim has
 *   committed (the slot's row and the PENDING task are visible) while the message cannot be written;
 * - right after the queue message (PostgreSQL, and SQLite's in-memory queue): the server runs
 *   without its agent (ESNAP_LOCAL_AGENT=0), so nothing takes the message; the test waits until the
 *   message is written (PostgreSQL: pg-boss's job row; SQLite: the claim, sent to the in-process
 *   queue in the same step) and kills. The restart brings the agent back.
 *
 * The schedule is yearly (1 January 00:00 UTC), set back to this year's slot while the server is
 * stopped: the catch-up slot is the only slot of the test's lifetime. The scheduler ticks on the
 * minute, so the claim comes within about a minute.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { startServe, sleep, type EsnapServe } from '../helpers/esnap-process.js';
import { newBackupServeData, type ServeData } from '../helpers/serve-data.js';
import { testDatabases, type TestDb } from '../helpers/server.js';
import { openDatabase } from '../../src/db/dialect.js';
import { bossSchemaForUrl } from '../../src/queue/pgboss.names.js';
import { platformUnavailable } from '../platform/require.js';
import { resticUnavailable } from '../platform/restic.js';

const NODE = 'bsknode';

type KillPoint = 'before the queue message' | 'after the queue message';

const cases: ReadonlyArray<readonly [TestDb, KillPoint]> = [
  ['postgres', 'before the queue message'],
  ['postgres', 'after the queue message'],
  ['sqlite', 'after the queue message'],
];

describe('backup slot: kill -9 around the queue message', async () => {
  const reason = await resticUnavailable();
  if (reason !== null) return platformUnavailable('backup slot kill test needs restic', reason);
  let data: ServeData | null = null;
  let server: EsnapServe | null = null;
  let reader: ReturnType<typeof openDatabase> | null = null;
  const slot = new Date(Date.UTC(new Date().getUTCFullYear(), 0, 1)).toISOString();
  const nextSlot = new Date(Date.UTC(new Date().getUTCFullYear() + 1, 0, 1)).toISOString();

  afterEach(async () => {
    await server?.killGroup();
    server = null;
    await reader?.db.destroy();
    reader = null;
    await data?.cleanup();
    data = null;
  });

  /** What the database says of the slot, its tasks and backups. */
  const state = async (d: ServeData) => {
    reader ??= openDatabase(d.dbUrl);
    const db = reader.db;
    return {
      slots: await db.selectFrom('backup_slot').select(['slot', 'state', 'source']).execute(),
      tasks: await db.selectFrom('task').select(['id', 'state']).where('kind', '=', 'backup_create').execute(),
      backups: await db.selectFrom('backup').select(['name', 'status']).execute(),
      nextRun: (await db.selectFrom('backup_define').select('next_run').executeTakeFirst())?.next_run ?? null,
    };
  };

  /** Polls until the slot is claimed: its row and its PENDING task committed. */
  const waitClaim = async (d: ServeData, s: EsnapServe): Promise<string> => {
    for (let i = 0; ; i++) {
      if (!s.alive()) throw new Error(`the server exited:\n${s.output()}`);
      const st = await state(d);
      if (st.slots.length > 0 && st.tasks.length > 0) {
        expect(st.slots).toEqual([{ slot, state: 'fired', source: 'catchup' }]);
        expect(st.tasks.map((t) => t.state)).toEqual(['PENDING']);
        return st.tasks[0]!.id;
      }
      if (i > 1800) throw new Error(`no claim within 90 s: ${JSON.stringify(st)}\n${s.output()}`);
      await sleep(50);
    }
  };

  const queueJobs = async (client: pg.Client, bossJob: string, taskId: string): Promise<number> => {
    const r = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${bossJob} WHERE data->>'taskId' = $1`, [taskId]);
    return Number(r.rows[0]!.n);
  };

  for (const [kind, point] of cases) {
    it.runIf(testDatabases().includes(kind))(`fires the slot exactly once after a kill ${point} [${kind}]`, async () => {
      const d = (data = await newBackupServeData(kind, { prefix: 'esnap-bkslotkill-', node: NODE }));
      const env = { ...d.env, ESNAP_BACKUP_NODE: '1' };
      // Set-up with the agent (it registers the node as a backup node).
      server = await startServe(env, { group: true });
      expect((await server.api('POST', '/api/vm/bsk/define/', {})).status).toBe(201);
      const disk = await server.api('POST', '/api/vm/bsk/define/disk/1/', { size: 8 });
      expect(disk.status).toBe(201);
      const fh = await open(join(d.dir, 'storage', disk.body.result.path as string), 'r+');
      await fh.write(randomBytes(8 * 1024 * 1024), 0, 8 * 1024 * 1024, 0);
      await fh.close();
      const def = await server.api('POST', '/api/vm/bsk/define/backup/y', { type: 2, node: NODE, zpool: 'backup', schedule: '0 0 1 1 *', retention: 5 });
      expect(def.status, JSON.stringify(def.body)).toBe(201);
      // The slot missed "while the server was down": due now, claimed at the next minute's tick.
      const missSlot = async (): Promise<void> => {
        await state(d);
        await reader!.db.updateTable('backup_define').set({ next_run: slot }).execute();
      };

      let taskId: string;
      if (point === 'before the queue message') {
        // The server keeps running (its start needs pg-boss's tables): the lock comes first, then the slot.
        const bossJob = `${bossSchemaForUrl(d.dbUrl)}.job`;
        const holder = new pg.Client({ connectionString: d.dbUrl });
        await holder.connect();
        try {
          await holder.query('BEGIN');
          await holder.query(`LOCK TABLE ${bossJob} IN EXCLUSIVE MODE`);
          await missSlot();
          taskId = await waitClaim(d, server);
          // Its queue message is not written: the insert cannot pass the lock (the holder reads the table).
          expect(await queueJobs(holder, bossJob, taskId)).toBe(0);
          await server.killGroup();
          server = null;
          await holder.query('COMMIT');
        } finally {
          await holder.end();
        }
      } else {
        // A clean stop, the slot missed meanwhile, and a start without the agent.
        expect(await server.stop()).toBe(0);
        server = null;
        await missSlot();
        server = await startServe({ ...env, ESNAP_LOCAL_AGENT: '0' }, { group: true });
        taskId = await waitClaim(d, server);
        if (kind === 'postgres') {
          const bossJob = `${bossSchemaForUrl(d.dbUrl)}.job`;
          const client = new pg.Client({ connectionString: d.dbUrl });
          await client.connect();
          try {
            for (let i = 0; (await queueJobs(client, bossJob, taskId)) === 0; i++) {
              if (i > 600) throw new Error(`no queue message within 30 s\n${server.output()}`);
              await sleep(50);
            }
            expect(await queueJobs(client, bossJob, taskId)).toBe(1);
          } finally {
            await client.end();
          }
        }
        // Nothing took the message: no agent runs.
        expect((await state(d)).tasks).toEqual([{ id: taskId, state: 'PENDING' }]);
        await server.killGroup();
        server = null;
      }

      const down = await state(d);
      expect(down.slots).toEqual([{ slot, state: 'fired', source: 'catchup' }]);
      expect(down.tasks).toEqual([{ id: taskId, state: 'PENDING' }]);
      expect(down.nextRun).toBe(nextSlot);

      server = await startServe(env, { group: true });
      let after = await state(d);
      for (let i = 0; after.tasks.some((t) => t.state === 'PENDING' || t.state === 'STARTED'); i++) {
        if (i > 3600) throw new Error(`the backup task did not end within 180 s: ${JSON.stringify(after)}\n${server.output()}`);
        await sleep(50);
        after = await state(d);
      }
      expect(after.tasks).toEqual([{ id: taskId, state: 'SUCCESS' }]);
      expect(after.slots).toEqual([{ slot, state: 'fired', source: 'catchup' }]);
      expect(after.backups.map((b) => b.status)).toEqual([1]);
      expect(after.nextRun).toBe(nextSlot);
      const list = await server.api('GET', '/api/vm/bsk/backup?full=true');
      expect(list.status).toBe(200);
      expect(list.body.result.map((b: { status: number }) => b.status)).toEqual([1]);
      if (kind === 'postgres') {
        // The message written before the kill was taken once: one job for the task, completed.
        const client = new pg.Client({ connectionString: d.dbUrl });
        await client.connect();
        try {
          expect(await queueJobs(client, `${bossSchemaForUrl(d.dbUrl)}.job`, taskId)).toBeLessThanOrEqual(1);
        } finally {
          await client.end();
        }
      }
    }, 300_000);
  }
});
