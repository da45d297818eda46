/**
 * PostgreSQL restarts under a running cluster. A private PostgreSQL cluster (initdb in a temp
 * folder, its own port and socket folder) so the test may stop and start it: two servers and two
 * real agent processes run tasks; the database goes down in the middle and comes back. Servers and
 * agents reconnect, every accepted task completes, and nothing is duplicated.
 *
 * Needs the PostgreSQL server binaries (/usr/lib/postgresql/<v>/bin) and root (to run them as the
 * postgres user); skipped otherwise.
 */
import { CONTROL_KINDS } from '../../src/transport/trust.service.js';
import { platformUnavailable } from '../platform/require.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { VmFixture } from '../helpers/fixtures.js';
import { PrivatePostgres, privatePgUnavailable } from '../helpers/private-pg.js';
import {
  makeNodeVm,
  newClusterDb,
  sleep,
  spawnAgent,
  startClusterServer,
  waitFor,
  waitNodeOnline,
  type ChildAgent,
  type ClusterDb,
  type ClusterServer,
} from './cluster.helpers.js';

describe('cluster: PostgreSQL restart under load', () => {
  const unavailable = privatePgUnavailable();
  if (unavailable) {
    // Skips loudly elsewhere; with CI=true a missing initdb/runuser is a failure, not a skip.
    platformUnavailable('cluster: PostgreSQL restart under load', unavailable);
    return;
  }
  let pgsrv: PrivatePostgres;
  let db: ClusterDb;
  let dir: string;
  let a: ClusterServer;
  let b: ClusterServer;
  const agents: ChildAgent[] = [];
  const vms: Array<VmFixture & { node: string }> = [];

  beforeAll(async () => {
    pgsrv = await PrivatePostgres.create();
    db = await newClusterDb(pgsrv.url());
    dir = await mkdtemp(join(tmpdir(), 'esnap-pgrestart-'));
    a = await startClusterServer(db, { nodeSilenceS: 30 });
    b = await startClusterServer(db, { nodeSilenceS: 30 });
    for (const node of ['node1', 'node2']) {
      // Slow storage keeps tasks running while the database goes away.
      const agent = await spawnAgent(db, { node, root: join(dir, node) }, { slowMs: 300, env: { ESNAP_NODE_SILENCE_S: '30' } });
      agents.push(agent);
      await waitNodeOnline(a, node);
    }
    for (let i = 0; i < 16; i++) {
      const node = i % 2 === 0 ? 'node1' : 'node2';
      vms.push({ ...(await makeNodeVm(a, node, `vm${i}`, { disks: [2] })), node });
    }
  }, 120_000);
  afterAll(async () => {
    for (const ag of agents) await ag.kill('SIGKILL');
    await a?.close().catch(() => undefined);
    await b?.close().catch(() => undefined);
    await db?.drop().catch(() => undefined);
    await pgsrv?.destroy();
    await rm(dir, { recursive: true, force: true });
  });

  it('servers and agents reconnect; every accepted task completes once', async () => {
    const accepted: string[] = [];
    // One create on every VM (one disk lock each), through both servers, in two waves.
    for (const [i, vm] of vms.entries()) {
      const s = i % 2 === 0 ? a : b;
      const r = await s.req('POST', `/api/vm/${vm.hostname}/snapshot/snap/`, { body: {} });
      expect(r.status).toBe(201);
      accepted.push(r.body.task_id);
      if (i === 7) await sleep(200);
    }
    // Some tasks are running on the agents now; take the database away under them.
    await sleep(400);
    const before = await a.runtime.ctx.db.selectFrom('task').select('state').where('id', 'in', accepted).execute();
    expect(before.filter((t) => t.state === 'SUCCESS').length).toBeLessThan(accepted.length);
    pgsrv.stop();
    await sleep(3000);
    pgsrv.start();
    const restartedAt = Date.now();
    await waitFor(
      'every accepted task to end',
      async () => {
        try {
          const rows = await a.runtime.ctx.db.selectFrom('task').select('state').where('id', 'in', accepted).execute();
          return rows.length === accepted.length && rows.every((r) => r.state === 'SUCCESS' || r.state === 'FAILURE');
        } catch {
          return false;
        }
      },
      60_000,
      200,
    );
    expect(Date.now() - restartedAt).toBeLessThan(60_000);
    const states = await a.runtime.ctx.db.selectFrom('task').select(['id', 'state', 'result']).where('id', 'in', accepted).execute();
    expect(states.filter((t) => t.state !== 'SUCCESS')).toEqual([]);
    // Nothing duplicated: one row and one file per accepted create, all OK.
    for (const vm of vms) {
      const rows = await a.runtime.ctx.db.selectFrom('snapshot').select(['id', 'name', 'status']).where('vm_uuid', '=', vm.uuid).orderBy('name').execute();
      expect(rows.map((r) => [r.name, r.status])).toEqual([['snap', 1]]);
      const files = (await readdir(join(dir, vm.node, '.snapshots', `${vm.uuid}-disk0`))).filter((f) => !f.startsWith('.') && !f.endsWith('.json'));
      expect(files.sort()).toEqual(rows.map((r) => `es-${r.id}`).sort());
    }
    // Task jobs only: control messages (an agent's registration causes SSH trust ones) are jobs too.
    const control = [...CONTROL_KINDS].map((k) => `'${k}'`).join(', ');
    const jobs = await db.query<{ state: string; n: string }>(
      `SELECT state, count(*) AS n FROM ${db.bossSchema}.job WHERE name LIKE 'esnap.node.%' AND data->>'kind' NOT IN (${control}) GROUP BY state`,
    );
    expect(jobs.map((j) => [j.state, Number(j.n)])).toEqual([['completed', accepted.length]]);
    // Both servers answer again, and a new task runs end to end.
    for (const s of [a, b]) expect((await s.req('GET', '/api/node')).status).toBe(200);
    const after = await b.stream('POST', '/api/vm/vm1/snapshot/after', { body: {} });
    expect(after.finalStatus).toBe(200);
    for (const ag of agents) expect(ag.proc.exitCode).toBeNull();
  }, 150_000);
});
