/**
 * Cancelling a running task (issue 19 item 1), in embedded mode on both databases (SQLite with the
 * in-process queue, PostgreSQL with pg-boss): the agent kills the driver's command, undoes what it
 * began, and the task ends REVOKED as if it never ran; past the point of no return (a rollback
 * rewriting in place) the answer is 406 `Task cannot be canceled` and the task finishes.
 *
 * The file driver copies with `cp` on this machine's ext4; the test's runner makes that copy slow
 * by running a real `sleep` before it with the same options, so the cancel kills a real process.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { forEachDb, withServer, type TestServer } from '../helpers/server.js';
import { makeVm, type VmFixture } from '../helpers/fixtures.js';
import { SlowCopyRunner } from '../helpers/slow-copy-runner.js';

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function filesUnder(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name);
}

forEachDb('cancel of a running task', (kind) => {
  let s: TestServer & { cleanup(): Promise<void> };
  let vm: VmFixture;
  const runner = new SlowCopyRunner();
  beforeAll(async () => {
    s = await withServer(kind, { runner });
    vm = await makeVm(s, 'cancel01');
  });
  afterAll(async () => s.cleanup());

  it('stops a running create: REVOKED with the status object, no snapshot on storage or in the database, lock freed', async () => {
    const snapDir = join(s.storageRoot, 'storage', '.snapshots');
    const before = await filesUnder(snapDir);
    runner.slowCopyS = 30;
    const r = await s.req('POST', '/api/vm/cancel01/snapshot/doomed/', { body: {} });
    expect(r.status).toBe(201);
    const id = r.body.task_id as string;
    await until(() => runner.sleeping > 0);
    expect((await s.req('GET', `/api/task/${id}/status/`)).body.status).toBe('STARTED');
    runner.slowCopyS = 0;
    const t0 = Date.now();
    const c = await s.req('PUT', `/api/task/${id}/cancel/`, { body: {} });
    expect([c.status, c.body]).toEqual([410, { status: 'REVOKED', result: 'terminated', task_id: id }]);
    expect(Date.now() - t0).toBeLessThan(10_000); // the 30 s copy was killed, not waited for
    expect((await s.req('GET', '/api/vm/cancel01/snapshot/doomed/')).status).toBe(404);
    expect(await filesUnder(snapDir)).toEqual(before);
    const log = (await s.req('GET', '/api/task/log/')).body.results.filter((e: { task: string }) => e.task === id);
    expect(log.map((e: { status: string; detail: string }) => [e.status, e.detail])).toEqual([
      ['REVOKED', 'terminated'],
      ['PENDING', "snapname='doomed', disk_id=1, type=2, fsfreeze=false"],
    ]);
    // The disk's lock is free: the same snapshot can be taken now.
    expect((await s.stream('POST', '/api/vm/cancel01/snapshot/doomed/', { body: {} })).finalStatus).toBe(200);
  });

  it('refuses past the point of no return: a rollback rewriting in place answers 406 and finishes', async () => {
    await writeFile(vm.diskPaths[0]!, Buffer.from('before-v1'), { flag: 'r+' });
    expect((await s.stream('POST', '/api/vm/cancel01/snapshot/v1/', { body: {} })).finalStatus).toBe(200);
    await writeFile(vm.diskPaths[0]!, Buffer.from('after--v2'), { flag: 'r+' });
    runner.slowCopyS = 2;
    const r = await s.req('PUT', '/api/vm/cancel01/snapshot/v1/', { body: {} });
    expect(r.status).toBe(201);
    const id = r.body.task_id as string;
    await until(() => runner.sleeping > 0);
    runner.slowCopyS = 0;
    const c = await s.req('PUT', `/api/task/${id}/cancel/`, { body: {} });
    expect([c.status, c.body]).toEqual([406, { detail: 'Task cannot be canceled' }]);
    let st = await s.req('GET', `/api/task/${id}/status/`);
    for (let i = 0; i < 500 && st.status === 201; i++) {
      await new Promise((res) => setTimeout(res, 20));
      st = await s.req('GET', `/api/task/${id}/status/`);
    }
    expect([st.status, st.body.status]).toEqual([200, 'SUCCESS']);
    expect((await readFile(vm.diskPaths[0]!)).subarray(0, 9).toString()).toBe('before-v1');
  });

  it('a task that has ended cannot be cancelled', async () => {
    const done = await s.stream('POST', '/api/vm/cancel01/snapshot/ended/', { body: {} });
    const c = await s.req('PUT', `/api/task/${done.headers['es_task_id']}/cancel/`, { body: {} });
    expect([c.status, c.body]).toEqual([406, { detail: 'Task cannot be canceled' }]);
  });
});
