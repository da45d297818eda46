/**
 * A rollback on zfs destroys the snapshots newer than its target (`zfs rollback -r`). When it is
 * cut off after that (its agent killed: the task ends FAILURE and the disk is re-synced), the rows
 * of the destroyed snapshots must go as its success would have made them go, not stay as lost (the
 * chaos run, seed 1 with 10,000 operations, op 3333). Real zfs-fuse pool, real server; the cut is
 * made at the process edge (the runner fails the task right after `zfs rollback` ran), then the
 * repair is the one the cluster's results consumer runs for an interrupted task.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import { FaultRunner, isCommand } from '../helpers/fault-runner.js';
import { resyncAfterRepair } from '../../src/snapshots/snapshot.sync.js';
import { withServer, type TestServer } from '../helpers/server.js';
import { settle } from '../scheduler/helpers.js';
import { platformUnavailable } from '../platform/require.js';
import { makeZfsPool, zfsUnavailable, type ZfsPool } from '../platform/zfs.js';

/** Set while the task must fail right after `zfs rollback` has run. */
let cutAfterRollback = false;

const reason = await zfsUnavailable();
if (reason !== null) {
  platformUnavailable('zfs rollback repair', reason);
} else {
  const runner = new FaultRunner({
    after(argv) {
      if (cutAfterRollback && isCommand(argv, 'zfs', 'rollback')) throw new Error('agent killed after zfs rollback');
    },
  });
  let pool: ZfsPool;
  let s: TestServer & { cleanup(): Promise<void> };

  beforeAll(async () => {
    pool = await makeZfsPool(256);
    const r = await new NodeCommandRunner().run(['zfs', 'create', `${pool.name}/vms`]);
    expect(r.code, r.stderr).toBe(0);
    s = await withServer('sqlite', { runner, storages: () => [{ name: 'default', driver: 'zfs', dataset: `${pool.name}/vms` }] });
    expect((await s.req('POST', '/api/vm/rb01/define/', { body: {} })).status).toBe(201);
    expect((await s.req('POST', '/api/vm/rb01/define/disk/1/', { body: { size: 8 } })).status).toBe(201);
  }, 120_000);
  afterAll(async () => {
    await s?.cleanup();
    await pool?.cleanup();
  });

  it('a zfs rollback cut off after `zfs rollback -r`: the repair forgets the newer snapshots it destroyed, none is lost', async () => {
    for (const n of ['s1', 's2', 's3']) {
      const c = await s.stream('POST', `/api/vm/rb01/snapshot/${n}/`, { body: {} });
      expect(c.finalStatus, JSON.stringify(c.final)).toBe(200);
    }
    cutAfterRollback = true;
    const rb = await s.stream('PUT', '/api/vm/rb01/snapshot/s1/', { body: { force: true } });
    cutAfterRollback = false;
    expect(rb.final).toMatchObject({ status: 'FAILURE' });
    const task = await s.runtime.ctx.db.selectFrom('task').selectAll().where('kind', '=', 'snapshot_rollback').orderBy('created', 'desc').executeTakeFirstOrThrow();
    expect(task.state).toBe('FAILURE');
    // What the cluster's results consumer does for a task its agent did not finish.
    await resyncAfterRepair(s.runtime.ctx, [task]);
    await settle(s, 120_000);
    const rows = await s.runtime.ctx.db.selectFrom('snapshot').select(['name', 'status']).orderBy('id').execute();
    // Before the fix: s2 and s3 stayed with status 4 (lost).
    expect(rows).toEqual([{ name: 's1', status: 1 }]);
  }, 180_000);
}
