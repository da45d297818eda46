/**
 * An agent needs no access to esnap's tables: `esnap agent` runs as a PostgreSQL role that may
 * only use the pg-boss schema, registers its node, heartbeats and runs snapshot tasks end to end,
 * while the same role is refused on every esnap table.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import {
  makeNodeVm,
  newClusterDb,
  spawnAgent,
  startClusterServer,
  waitNodeOnline,
  type ChildAgent,
  type ClusterDb,
  type ClusterServer,
} from './cluster.helpers.js';

describe('cluster: the agent under a role limited to the pg-boss schema', () => {
  const role = `esnap_agent_${randomBytes(4).toString('hex')}`;
  let db: ClusterDb;
  let dir: string;
  let s: ClusterServer;
  let agent: ChildAgent | null = null;

  const asRole = async (text: string): Promise<{ ok: boolean; code?: string; rows?: unknown[] }> => {
    const c = new pg.Client({ connectionString: db.agentUrl(role) });
    await c.connect();
    try {
      const r = await c.query(text);
      return { ok: true, rows: r.rows };
    } catch (err) {
      return { ok: false, code: (err as { code?: string }).code };
    } finally {
      await c.end();
    }
  };

  beforeAll(async () => {
    db = await newClusterDb();
    dir = await mkdtemp(join(tmpdir(), 'esnap-role-'));
    // The server installs pg-boss and esnap's tables; then the agent's role gets the pg-boss schema only.
    s = await startClusterServer(db);
    await db.query(`CREATE ROLE ${role} LOGIN`);
    await db.query(`GRANT USAGE ON SCHEMA ${db.bossSchema} TO ${role}`);
    await db.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ${db.bossSchema} TO ${role}`);
  });
  afterAll(async () => {
    await agent?.kill('SIGKILL');
    await s?.close();
    await db?.drop();
    await db?.query(`DROP ROLE IF EXISTS ${role}`);
    await rm(dir, { recursive: true, force: true });
  });

  it('cannot read or write any esnap table, but can use pg-boss', async () => {
    const tables = await db.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name`,
      [db.schema],
    );
    expect(tables.map((t) => t.table_name)).toEqual(expect.arrayContaining(['node', 'snapshot', 'task', 'task_lock', 'vm', 'vm_disk']));
    for (const t of tables) {
      const read = await asRole(`SELECT 1 FROM ${db.schema}.${t.table_name} LIMIT 1`);
      expect({ table: t.table_name, ...read }).toEqual({ table: t.table_name, ok: false, code: '42501' });
    }
    expect(await asRole(`INSERT INTO ${db.schema}.node (hostname, uuid, status, created) VALUES ('x', 'x', 2, 'x')`)).toEqual({ ok: false, code: '42501' });
    // Unqualified names resolve to nothing it may read, even with esnap's schema on its search path.
    expect((await asRole('SELECT 1 FROM task')).ok).toBe(false);
    expect((await asRole(`SELECT count(*) FROM ${db.bossSchema}.job`)).ok).toBe(true);
  });

  it('registers its node, heartbeats and runs snapshot tasks', async () => {
    const root = join(dir, 'node1');
    agent = await spawnAgent(db, { node: 'node1', root }, { user: role });
    await waitNodeOnline(s, 'node1').catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n${agent!.output()}`);
    });
    const vm = await makeNodeVm(s, 'node1', 'roled', { disks: [2] });
    const r = await s.stream('POST', '/api/vm/roled/snapshot/by-role', { body: {} });
    expect(r.finalStatus).toBe(200);
    expect(r.final).toMatchObject({ status: 'SUCCESS', result: { message: 'Snapshot successfully created' } });
    const snap = (await s.req('GET', '/api/vm/roled/snapshot/by-role')).body.result;
    expect(await readdir(join(root, '.snapshots', `${vm.uuid}-disk0`))).toContain(`es-${snap.id}`);
    const sync = await s.stream('PUT', '/api/vm/roled/snapshot', { body: {} });
    expect(sync.final).toMatchObject({ result: { returncode: 0, message: 'Snapshots successfully synced' } });
    const del = await s.stream('DELETE', '/api/vm/roled/snapshot/by-role', { body: {} });
    expect(del.finalStatus).toBe(200);
    // The agent's connections (pool and LISTEN) run as the limited role.
    const conns = await db.query<{ n: string }>(`SELECT count(*) AS n FROM pg_stat_activity WHERE usename = $1`, [role]);
    expect(Number(conns[0]!.n)).toBeGreaterThanOrEqual(2);
    expect(agent.output()).not.toMatch(/permission denied/);
  });
});
