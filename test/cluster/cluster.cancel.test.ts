/**
 * Cancelling a running task in cluster mode (issue 19 item 1): the server has no agent of its own,
 * the node's agent holds the job; the cancel reaches the agent by NOTIFY, the agent kills the
 * copy, undoes the snapshot and reports the task revoked; past the point of no return it answers
 * and the server says 406.
 */
import { afterAll, beforeAll, expect, it, describe } from 'vitest';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AgentRuntime } from '../../src/agent/agent-runtime.js';
import { SlowCopyRunner } from '../helpers/slow-copy-runner.js';
import { makeNodeVm, newClusterDb, startAgent, startClusterServer, waitFor, waitNodeOnline, waitTask, type ClusterDb, type ClusterServer } from './cluster.helpers.js';

describe('cluster: cancel of a running task', () => {
  let db: ClusterDb;
  let dir: string;
  let server: ClusterServer;
  let agent: AgentRuntime;
  const runner = new SlowCopyRunner();

  beforeAll(async () => {
    db = await newClusterDb();
    dir = await mkdtemp(join(tmpdir(), 'esnap-cluster-cancel-'));
    server = await startClusterServer(db);
    agent = await startAgent(db, { node: 'node1', root: join(dir, 'node1') }, { runner });
    await waitNodeOnline(server, 'node1');
    await makeNodeVm(server, 'node1', 'web01', { disks: [1] });
  });
  afterAll(async () => {
    await agent?.stop();
    await server?.close();
    await db?.drop();
    await rm(dir, { recursive: true, force: true });
  });

  it('stops the agent’s running create through NOTIFY: REVOKED, nothing left on storage', async () => {
    runner.slowCopyS = 30;
    const r = await server.req('POST', '/api/vm/web01/snapshot/doomed/', { body: {} });
    expect(r.status).toBe(201);
    const id = r.body.task_id as string;
    await waitFor('the copy to run', async () => runner.sleeping > 0);
    runner.slowCopyS = 0;
    const c = await server.req('PUT', `/api/task/${id}/cancel/`, { body: {} });
    expect([c.status, c.body]).toEqual([410, { status: 'REVOKED', result: 'terminated', task_id: id }]);
    expect((await server.req('GET', '/api/vm/web01/snapshot/doomed/')).status).toBe(404);
    const left = (await readdir(join(dir, 'node1', '.snapshots'), { recursive: true, withFileTypes: true })).filter((e) => e.isFile());
    expect(left.map((e) => e.name)).toEqual([]);
    expect(agent.runningTasks()).toEqual([]);
  });

  it('answers 406 past the point of no return, and the task finishes', async () => {
    expect((await server.stream('POST', '/api/vm/web01/snapshot/v1/', { body: {} })).finalStatus).toBe(200);
    runner.slowCopyS = 2;
    const r = await server.req('PUT', '/api/vm/web01/snapshot/v1/', { body: {} });
    const id = r.body.task_id as string;
    await waitFor('the rollback to run', async () => runner.sleeping > 0);
    runner.slowCopyS = 0;
    const c = await server.req('PUT', `/api/task/${id}/cancel/`, { body: {} });
    expect([c.status, c.body]).toEqual([406, { detail: 'Task cannot be canceled' }]);
    expect((await waitTask(server, id)).body.status).toBe('SUCCESS');
  });
});
