/**
 * Exactly once per slot with two real `esnap serve` processes on one PostgreSQL schema (the other
 * exactly-once test runs two runtimes in one process, on a manual clock).
 *
 * A spawned server has the real clock, and cron is minute-granular, so the race is the catch-up at
 * start-up: every definition's slot was missed while "the servers were down", and each server's
 * first tick fires it. To make sure both servers really compete rather than one finishing before
 * the other starts, the test holds every definition row locked (FOR UPDATE, as another server's
 * claim would) until both servers have finished a tick: a tick passes over rows a claim holds
 * (SKIP LOCKED) instead of waiting for them, and the held definitions stay due, so each server
 * retries them about a second later; then the test lets them go and both take what they get. The
 * schedule is yearly (1 January 00:00 UTC), so the catch-up slot is the only slot in the test's
 * lifetime and the expected counts are exact.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, testDatabases } from '../helpers/server.js';
import { listeningPort, spawnEsnap, type EsnapProcess } from '../helpers/esnap-process.js';
import type { AgentRuntime } from '../../src/agent/agent-runtime.js';
import {
  makeNodeVm,
  newClusterDb,
  startAgent,
  startClusterServer,
  waitFor,
  waitNodeOnline,
  type ClusterDb,
  type ClusterServer,
} from '../cluster/cluster.helpers.js';

const DEFINITIONS = 50;
const NODE = 'eo-node';

/** `esnap serve` on the test's schema, with its scheduler and no local agent. */
function serve(db: ClusterDb, dataDir: string): EsnapProcess {
  return spawnEsnap(['serve'], {
    ESNAP_DATABASE_URL: db.agentUrl(),
    ESNAP_DATA_DIR: dataDir,
    ESNAP_LISTEN: '127.0.0.1:0',
    ESNAP_ADMIN_API_KEY: ADMIN_KEY,
    ESNAP_LOCAL_AGENT: '0',
    ESNAP_METRICS_PUBLIC: '1',
  });
}

/** Scheduler ticks the server has finished, from its /metrics (0 until it listens). */
async function ticksDone(s: EsnapProcess): Promise<number> {
  if (!s.output().includes('"esnap listening"')) return 0;
  const r = await fetch(`http://127.0.0.1:${listeningPort(s.output())}/metrics`);
  const m = /^esnap_scheduler_tick_duration_seconds_count(?:\{[^}]*\})? (\d+)$/m.exec(await r.text());
  return m ? Number(m[1]) : 0;
}

describe.runIf(testDatabases().includes('postgres'))('scheduler: exactly once with two server processes on PostgreSQL', () => {
  let db: ClusterDb;
  let setup: ClusterServer;
  let agent: AgentRuntime;
  let dir: string;
  const servers: EsnapProcess[] = [];
  const slot = new Date(Date.UTC(new Date().getUTCFullYear(), 0, 1)).toISOString();

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'esnap-eo-proc-'));
    db = await newClusterDb();
    // An in-process server (no scheduler) to create the VMs and definitions, and one agent that
    // takes the snapshots the two spawned servers will start.
    setup = await startClusterServer(db);
    agent = await startAgent(db, { node: NODE, root: join(dir, 'storage') });
    await waitNodeOnline(setup, NODE);
    for (let i = 0; i < DEFINITIONS; i++) {
      await makeNodeVm(setup, NODE, `eop${i}`);
      const r = await setup.req('POST', `/api/vm/eop${i}/define/snapshot/y/`, { body: { schedule: '0 0 1 1 *', retention: 0, disk_id: 1 } });
      expect(r.status, r.text).toBe(201);
    }
    // Every definition missed its slot of this year while no server ran.
    await setup.runtime.ctx.db.updateTable('snapshot_define').set({ next_run: slot }).execute();
  }, 60_000);

  afterAll(async () => {
    for (const s of servers) await s.stop();
    await agent?.stop();
    await setup?.close();
    await db?.drop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('fires the missed slot of each definition once, whichever process claims it', async () => {
    const holder = new pg.Client({ connectionString: db.agentUrl() });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT id FROM snapshot_define FOR UPDATE');
      const holderPid = (await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;

      servers.push(serve(db, join(dir, 'a')), serve(db, join(dir, 'b')));
      // Both servers have finished a tick while every row was held (and neither waits on them).
      await waitFor(
        'both servers ticked past the held rows',
        async () => {
          for (const s of servers) if (s.proc.exitCode !== null) throw new Error(`a server exited:\n${s.output()}`);
          const blocked = await db.query<{ n: string }>('SELECT count(*) AS n FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))', [holderPid]);
          expect(Number(blocked[0]!.n)).toBe(0);
          for (const s of servers) if ((await ticksDone(s)) < 1) return false;
          return true;
        },
        20_000,
        50,
      );
      expect(await setup.runtime.ctx.db.selectFrom('schedule_slot').select('define_id').execute()).toEqual([]);
      await holder.query('COMMIT');
    } finally {
      await holder.end();
    }

    const q = setup.runtime.ctx.db;
    await waitFor(
      'every automatic snapshot taken',
      async () => {
        // All created first, then none open: read the other way round, a batch inserted between
        // the two reads would count as created and not yet as open.
        const created = await q.selectFrom('task').select('id').where('kind', '=', 'snapshot_create').execute();
        const open = await q.selectFrom('task').select('id').where('state', 'in', ['PENDING', 'STARTED']).execute();
        return open.length === 0 && created.length >= DEFINITIONS;
      },
      20_000,
      50,
    );

    const defines = await q.selectFrom('snapshot_define').select(['id', 'next_run', 'last_success']).execute();
    expect(defines).toHaveLength(DEFINITIONS);
    const ids = defines.map((d) => d.id).sort((a, b) => a - b);

    const slots = await q.selectFrom('schedule_slot').selectAll().execute();
    expect(slots.map((s) => s.define_id).sort((a, b) => a - b)).toEqual(ids);
    expect(new Set(slots.map((s) => `${s.slot}|${s.state}|${s.source}`))).toEqual(new Set([`${slot}|fired|catchup`]));

    const tasks = await q.selectFrom('task').select(['context', 'state', 'type', 'result']).where('kind', '=', 'snapshot_create').execute();
    // Listed rather than counted, so a failure shows what became of the odd task.
    expect(tasks.filter((t) => !(t.state === 'SUCCESS' && t.type === 'a'))).toEqual([]);
    expect(tasks.map((t) => (JSON.parse(t.context) as { defineId: number }).defineId).sort((a, b) => a - b)).toEqual(ids);

    const snaps = await q.selectFrom('snapshot').select(['define_id', 'status']).where('type', '=', 1).execute();
    expect(snaps.every((s) => s.status === 1)).toBe(true);
    expect(snaps.map((s) => s.define_id!).sort((a, b) => a - b)).toEqual(ids);

    const nextYear = new Date(Date.UTC(new Date(slot).getUTCFullYear() + 1, 0, 1)).toISOString();
    expect(new Set(defines.map((d) => d.next_run))).toEqual(new Set([nextYear]));
    expect(defines.every((d) => d.last_success !== null)).toBe(true);

    // Both processes are still serving.
    for (const s of servers) expect(s.proc.exitCode).toBeNull();
  }, 60_000);
});
