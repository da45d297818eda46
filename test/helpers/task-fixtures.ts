/**
 * A TaskService of a test's own on a test server's database, for tasks on a node that has no
 * agent: what is sent stays in the test's queue, where it can be counted or taken, and the test
 * registers its own kinds.
 *
 * Example:
 *   const { tasks, nodeId } = await idleNodeTaskService(s, 'nowhere', new InProcessQueue());
 *   tasks.registerKind('test_noop', { complete: async () => ({ result: { returncode: 0, message: 'ok' } }) });
 *   const id = await tasks.submit(testTaskSpec('test_noop', { id: nodeId, hostname: 'nowhere' }, 'p1', ['lock p1'], async () => ({ payload: {}, context: {} })));
 */
import { SYSTEM_USER_ID, SYSTEM_USERNAME, systemClock } from '../../src/app-context.js';
import type { TaskQueue } from '../../src/queue/queue.js';
import { LocalTaskEvents } from '../../src/tasks/task.events.js';
import { TaskService } from '../../src/tasks/task.service.js';
import type { TaskSpec } from '../../src/tasks/task.types.js';
import { silentLogger } from '../../src/runtime.js';
import { insertIdleNode } from './fixtures.js';
import type { TestServer } from './server.js';

/** Inserts the agent-less node `hostname` and a TaskService on `queue` (local events, real clock, no log). */
export async function idleNodeTaskService(s: TestServer, hostname: string, queue: TaskQueue): Promise<{ tasks: TaskService; nodeId: number }> {
  const nodeId = await insertIdleNode(s, hostname);
  const tasks = new TaskService(s.runtime.ctx.db, queue, new LocalTaskEvents(), systemClock, silentLogger);
  return { tasks, nodeId };
}

/** Whose a test's task is: the system user's, owned by user 1 in DC 1 (DC-bound), on no VM. */
export const SYSTEM_TASK = { userId: SYSTEM_USER_ID, username: SYSTEM_USERNAME, ownerId: 1, dcId: 1, dcBound: true, vmUuid: null } as const;

/** A system task of `kind` on `node`, named after `label` in its apiview and task log. */
export function testTaskSpec<C>(kind: string, node: { id: number; hostname: string }, label: string, locks: readonly string[], prepare: TaskSpec<C>['prepare']): TaskSpec<C> {
  return {
    kind,
    type: 'a',
    ...SYSTEM_TASK,
    node,
    locks,
    apiview: { view: 'test', label },
    log: { msg: 'Test task', detail: `label=${label}`, object: { type: 'vm', name: label, alias: label, pk: label } },
    prepare,
  };
}
