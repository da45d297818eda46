/**
 * The cluster sweep reads only the tasks it has to (issue 17): after its first pass, the tasks
 * opened since its last read and the known ones past their deadline (or new on the last pass),
 * not every open task on every pass; and it still fails the overdue tasks and leaves the others.
 * The tasks are on a node without an agent, so their jobs wait in the node's queue.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { CompiledQuery, QueryResult } from 'kysely';
import { testDatabases } from '../helpers/server.js';
import { insertIdleNode } from '../helpers/fixtures.js';
import { testTaskSpec } from '../helpers/task-fixtures.js';
import { newClusterDb, startClusterServer, type ClusterDb, type ClusterServer } from '../cluster/cluster.helpers.js';
import { ClusterSweep } from '../../src/tasks/deadline.sweep.js';
import { nodeQueueName } from '../../src/queue/pgboss.queue.js';

const NODE = 'sweep-node';

describe.runIf(testDatabases().includes('postgres'))('cluster sweep: reads only what it judges [postgres]', () => {
  let db: ClusterDb;
  let s: ClusterServer;
  let nodeId: number;
  /** Task rows each statement of the test's sweeps returned. */
  const taskRows: number[] = [];
  let counting = false;
  beforeAll(async () => {
    db = await newClusterDb();
    // The server's own sweep judges nothing within the test (an hour's deadline).
    s = await startClusterServer(db, { agentDeadlineS: 3600, nodeSilenceS: 3600 });
    nodeId = await insertIdleNode(s, NODE);
    await s.runtime.cluster!.queue.createQueue(nodeQueueName(NODE), 'node');
    // The outcome is the result, so the sweep's failure message shows.
    s.runtime.ctx.tasks.registerKind('test_sweep', { complete: async (_trx, _task, _context, outcome) => ({ result: outcome }) });
    const executor = s.runtime.ctx.db.getExecutor();
    const run = executor.executeQuery.bind(executor);
    vi.spyOn(executor, 'executeQuery').mockImplementation(async (q: CompiledQuery) => {
      const r = (await run(q)) as QueryResult<unknown>;
      if (counting && /from "task"/i.test(q.sql)) taskRows.push(r.rows.length);
      return r as never;
    });
  }, 60_000);
  afterAll(async () => {
    vi.restoreAllMocks();
    await s?.close();
    await db?.drop();
  });

  const submit = (label: string) =>
    s.runtime.ctx.tasks.submit(testTaskSpec('test_sweep', { id: nodeId, hostname: NODE }, label, [`sweep ${label}`], async () => ({ payload: {}, context: {} })));

  /** One pass of `sweep`; how many task rows it read. */
  async function pass(sweep: ClusterSweep): Promise<number> {
    taskRows.length = 0;
    counting = true;
    try {
      await sweep.tick();
    } finally {
      counting = false;
    }
    return taskRows.reduce((a, b) => a + b, 0);
  }

  const states = async (ids: readonly string[]) =>
    Object.fromEntries((await s.runtime.ctx.db.selectFrom('task').select(['id', 'state']).where('id', 'in', ids).execute()).map((t) => [t.id, t.state]));

  it('after its first pass, reads the new tasks and the overdue ones only', async () => {
    const first = [];
    for (let i = 0; i < 5; i++) first.push(await submit(`a${i}`));
    const sweep = new ClusterSweep(s.runtime.ctx, s.runtime.cluster!.queue, { deadlineS: 3600, silenceS: 3600 });
    expect(await pass(sweep)).toBe(5); // the first pass reads every open task
    expect(await pass(sweep)).toBe(5); // the five again, once, to check their queue jobs
    expect(await pass(sweep)).toBe(0); // nothing new, nothing overdue
    const b = await submit('b');
    expect(await pass(sweep)).toBe(1); // the new one
    expect(await pass(sweep)).toBe(1); // its job checked
    expect(await pass(sweep)).toBe(0);
    // Nothing was past its deadline.
    expect(Object.values(await states([...first, b]))).toEqual(Array(6).fill('PENDING'));
  });

  it('fails the tasks past their deadline and leaves the others', async () => {
    const open = (await s.runtime.ctx.db.selectFrom('task').select('id').where('state', '=', 'PENDING').execute()).map((t) => t.id);
    expect(open).toHaveLength(6);
    // A deadline of 0: a task is overdue from the second pass that sees it open.
    const sweep = new ClusterSweep(s.runtime.ctx, s.runtime.cluster!.queue, { deadlineS: 0, silenceS: 3600 });
    await pass(sweep);
    expect(Object.values(await states(open))).toEqual(Array(6).fill('PENDING'));
    const late = await submit('late');
    await pass(sweep);
    const after = await states([...open, late]);
    for (const id of open) expect(after[id]).toBe('FAILURE');
    expect(after[late]).toBe('PENDING');
    const result = await s.runtime.ctx.db.selectFrom('task').select('result').where('id', '=', open[0]!).executeTakeFirstOrThrow();
    expect(result.result).toContain(`Task queue worker (fast@${NODE}) is not responding!`);
    await pass(sweep);
    expect((await states([late]))[late]).toBe('FAILURE');
  });
});
