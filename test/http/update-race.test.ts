/**
 * Updates racing deletes (issue 12, defect 4): every update path reads its object, writes, then
 * answers with what it wrote. A DELETE that completes between those steps must turn the update into
 * the object's 404, never a 500 (PostgreSQL showed `TypeError … reading 'hostname'` on snapshot
 * note updates). Each case loops concurrent PUTs while the object is deleted, several rounds.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { forEachDb, withServer, type Reply, type TestServer } from '../helpers/server.js';
import { makeVm } from '../helpers/fixtures.js';

const ROUNDS = 8;
const LOOPS = 4;

/**
 * Runs LOOPS loops of `put` that start before `del` and end a few requests after it has completed;
 * returns every answer. `del` resolves when the object is gone.
 */
async function race(put: (i: number) => Promise<Reply>, del: () => Promise<void>): Promise<Reply[]> {
  const answers: Reply[] = [];
  let deleted = false;
  let started = 0;
  const loop = async (): Promise<void> => {
    let after = 0;
    for (let i = 0; after < 3; i++) {
      answers.push(await put(i));
      if (i === 1) started++;
      if (deleted) after++;
    }
  };
  const loops = Array.from({ length: LOOPS }, loop);
  while (started < LOOPS) await new Promise((r) => setImmediate(r));
  await del();
  deleted = true;
  await Promise.all(loops);
  return answers;
}

/** No 5xx; every answer is the update's success or the object's own 404. */
function expectOnly(answers: Reply[], okStatus: number, notFound: string): void {
  const seen = answers.map((a) => (a.status === okStatus ? String(okStatus) : `${a.status} ${JSON.stringify(a.body)}`));
  expect(seen.filter((x) => x !== String(okStatus) && x !== `404 ${JSON.stringify({ detail: notFound })}`)).toEqual([]);
  // The race was really run: updates landed before the delete and 404s came after it.
  expect(seen.filter((x) => x === String(okStatus)).length).toBeGreaterThan(0);
  expect(seen.filter((x) => x.startsWith('404')).length).toBeGreaterThan(0);
}

forEachDb('updates racing deletes', (kind) => {
  let s: TestServer & { cleanup(): Promise<void> };
  beforeAll(async () => {
    s = await withServer(kind);
  });
  afterAll(async () => s.cleanup());

  it('snapshot note and pin PUTs while a DELETE completes: 200 or 404 Snapshot not found', async () => {
    await makeVm(s, 'racer', { disks: [1] });
    for (let round = 0; round < ROUNDS; round++) {
      const name = `r${round}`;
      expect((await s.stream('POST', `/api/vm/racer/snapshot/${name}/`, { body: {} })).finalStatus).toBe(200);
      const answers = await race(
        (i) => s.req('PUT', `/api/vm/racer/snapshot/${name}/`, { body: i % 2 ? { note: `n${i}` } : { pinned: false } }),
        async () => {
          expect((await s.stream('DELETE', `/api/vm/racer/snapshot/${name}/`)).finalStatus).toBe(200);
        },
      );
      expectOnly(answers, 200, 'Snapshot not found');
    }
  });

  it('definition PUTs while it is deleted: 200 or 404 Snapshot definition not found', async () => {
    for (let round = 0; round < ROUNDS; round++) {
      await makeVm(s, `dvm${round}`, { disks: [1] });
      const def = `/api/vm/dvm${round}/define/snapshot/daily/`;
      expect((await s.req('POST', def, { body: { schedule: '0 3 * * *', retention: 1 } })).status).toBe(201);
      const answers = await race((i) => s.req('PUT', def, { body: { desc: `d${i}` } }), async () => void expect((await s.req('DELETE', def)).status).toBe(200));
      expectOnly(answers, 200, 'Snapshot definition not found');
    }
  });

  it('VM define and status PUTs while the VM is deleted: 200 or 404 VM not found', async () => {
    for (let round = 0; round < ROUNDS; round++) {
      // A VM without disks is deleted at once (no task).
      const vm = `/api/vm/bare${round}/define/`;
      expect((await s.req('POST', vm, { body: {} })).status).toBe(201);
      const put = (i: number): Promise<Reply> =>
        i % 2 ? s.req('PUT', vm, { body: { alias: `a${i}`, status: i % 4 === 1 ? 'running' : 'stopped' } }) : s.req('PUT', `/api/vm/bare${round}/status/${i % 4 ? 'start' : 'stop'}/`);
      expectOnly(await race(put, async () => void expect((await s.req('DELETE', vm)).status).toBe(200)), 200, 'VM not found');
    }
  });

  it('DC and DC settings PUTs while the DC is deleted: 200 or 404 Datacenter not found', async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const dc = `/api/dc/dc${round}/`;
      expect((await s.req('POST', dc, { body: {} })).status).toBe(201);
      const put = (i: number): Promise<Reply> =>
        i % 2 ? s.req('PUT', dc, { body: { alias: `x${i}` } }) : s.req('PUT', `${dc}settings/`, { body: { VMS_VM_SNAPSHOT_LIMIT_AUTO: i + 1 } });
      expectOnly(await race(put, async () => void expect((await s.req('DELETE', dc)).status).toBe(200)), 200, 'Datacenter not found');
    }
  });

  it('user PUTs while the user is deleted: 200 or 404 User not found', async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const user = `/api/accounts/user/u${round}/`;
      expect((await s.req('POST', user, { body: {} })).status).toBe(201);
      const answers = await race((i) => s.req('PUT', user, { body: { email: `u${i}@example.test` } }), async () => void expect((await s.req('DELETE', user)).status).toBe(200));
      expectOnly(answers, 200, 'User not found');
    }
  });
});
