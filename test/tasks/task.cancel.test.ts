/**
 * TaskService.cancel of a task no agent runs: a pending one is revoked with the failure cleanup;
 * one an agent claims at the very moment of the cancel goes to that agent's canceller instead;
 * one that has ended cannot be cancelled. `cancel` reads the task once and learns the rest from the
 * completion itself, so these pin what it answers in each case.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { idleNodeTaskService, testTaskSpec } from '../helpers/task-fixtures.js';
import { InProcessQueue } from '../../src/queue/in-process.queue.js';
import type { TaskService } from '../../src/tasks/task.service.js';
import type { TaskSpec } from '../../src/tasks/task.types.js';

const NODE = 'cancel-nowhere';

/** The in-process queue, where an agent takes the message just as the cancel withdraws it. */
class ClaimingQueue extends InProcessQueue {
  claim: ((taskId: string) => Promise<unknown>) | null = null;
  override async withdraw(node: string, taskId: string): Promise<boolean> {
    await this.claim?.(taskId);
    return super.withdraw(node, taskId);
  }
}

forEachDb('TaskService.cancel', (kind) => {
  let s: TestServer & { cleanup(): Promise<void> };
  let queue: ClaimingQueue;
  let tasks: TaskService;
  let nodeId: number;
  const cancelled: string[] = [];
  const failedCleanups: string[] = [];

  beforeAll(async () => {
    s = await withServer(kind, { localAgent: false });
    queue = new ClaimingQueue();
    ({ tasks, nodeId } = await idleNodeTaskService(s, NODE, queue));
    tasks.registerKind<{ label: string }>('test_cancel', {
      complete: async (_trx, _task, c, outcome) => {
        if (outcome.returncode !== 0) failedCleanups.push(c.label);
        return { result: { returncode: outcome.returncode, message: outcome.message } };
      },
    });
    tasks.setRunningCanceller(async (node, taskId) => {
      cancelled.push(`${node} ${taskId}`);
      return 'committed';
    });
  });
  afterAll(async () => s.cleanup());

  function spec(label: string): TaskSpec<{ label: string }> {
    return testTaskSpec('test_cancel', { id: nodeId, hostname: NODE }, label, [`cancel ${label}`], async () => ({ payload: { label }, context: { label } }));
  }

  const stateOf = async (id: string) => (await tasks.get(id))?.state;

  it('revokes a pending task with the failure cleanup, without asking an agent', async () => {
    const id = await tasks.submit(spec('p1'));
    expect(await tasks.cancel(id)).toBe(true);
    expect(await stateOf(id)).toBe('REVOKED');
    expect(failedCleanups).toContain('p1');
    expect(cancelled).toEqual([]);
  });

  it('hands a task claimed during the cancel to its agent, and answers what the agent says', async () => {
    const id = await tasks.submit(spec('c1'));
    queue.claim = (taskId) => tasks.markStarted(taskId);
    try {
      expect(await tasks.cancel(id)).toBe(false);
    } finally {
      queue.claim = null;
    }
    expect(await stateOf(id)).toBe('STARTED');
    expect(cancelled).toEqual([`${NODE} ${id}`]);
    expect(failedCleanups).not.toContain('c1');
  });

  it('does not cancel a task that ended, nor an unknown one', async () => {
    const id = await tasks.submit(spec('e1'));
    await tasks.complete(id, { returncode: 0, message: 'done' });
    const before = cancelled.length;
    expect(await tasks.cancel(id)).toBe(false);
    expect(await stateOf(id)).toBe('SUCCESS');
    expect(await tasks.cancel('1e1-6f1d4b1a-0000-0000-0000-000000000000')).toBe(false);
    expect(cancelled.length).toBe(before);
  });
});
