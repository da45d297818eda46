/**
 * Exactly once per slot, enforced by the database: two runtimes on one PostgreSQL schema tick the
 * same due definitions at the same time, slot after slot; every (definition, slot) produces one
 * snapshot, never two, and the claims of both servers add up to exactly the due slots.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, testDatabases, withServer, type TestServer } from '../helpers/server.js';
import { makeVm } from '../helpers/fixtures.js';
import { slotsOf } from '../../src/scheduler/slot.repository.js';
import { ManualClock, settle } from './helpers.js';

type Server = TestServer & { cleanup(): Promise<void> };
type Reused = Awaited<ReturnType<typeof startTestServer>>;

const DEFINITIONS = 40;
const SLOTS = ['2026-04-01T10:00:00Z', '2026-04-01T10:01:00Z', '2026-04-01T10:02:00Z'];

describe.runIf(testDatabases().includes('postgres'))('scheduler: exactly once with two servers on PostgreSQL', () => {
  const clock = new ManualClock('2026-04-01T09:59:00Z');
  let a: Server;
  let b: Reused;
  const defineIds: number[] = [];
  beforeAll(async () => {
    a = await withServer('postgres', { clock });
    const info = (a as unknown as { dbInfo: { databaseUrl: string; searchPath?: string; storageRoot: string } }).dbInfo;
    b = await startTestServer('postgres', { clock, reuse: info });
    for (let i = 0; i < DEFINITIONS / 2; i++) {
      await makeVm(a, `eo${i}`, { disks: [1, 1] });
      for (const disk of [1, 2]) {
        const r = await a.req('POST', `/api/vm/eo${i}/define/snapshot/m/`, { body: { schedule: '* * * * *', retention: 0, disk_id: disk } });
        expect(r.status).toBe(201);
      }
    }
    const rows = await a.runtime.ctx.db.selectFrom('snapshot_define').select('id').execute();
    defineIds.push(...rows.map((r) => r.id));
  }, 120_000);
  afterAll(async () => {
    await b.close();
    await a.cleanup();
  });

  it('fires each slot of each definition once, whichever server claims it', async () => {
    let fromA = 0;
    let fromB = 0;
    const seen = new Set<string>();
    for (const slot of SLOTS) {
      clock.set(slot);
      // Both servers tick twice, all four at once.
      const reports = await Promise.all([a.runtime.scheduler.tick(), b.runtime.scheduler.tick(), b.runtime.scheduler.tick(), a.runtime.scheduler.tick()]);
      fromA += reports[0]!.fired.length + reports[3]!.fired.length;
      fromB += reports[1]!.fired.length + reports[2]!.fired.length;
      for (const r of reports) {
        expect(r.errors).toBe(0);
        for (const f of r.fired) {
          const key = `${f.defineId}@${f.slot}`;
          expect(seen.has(key), `${key} fired twice`).toBe(false);
          seen.add(key);
        }
      }
      await settle(a);
    }
    expect(fromA + fromB).toBe(DEFINITIONS * SLOTS.length);
    expect(seen.size).toBe(DEFINITIONS * SLOTS.length);

    const snaps = await a.runtime.ctx.db.selectFrom('snapshot').select(['define_id', 'name', 'status']).where('type', '=', 1).execute();
    expect(snaps).toHaveLength(DEFINITIONS * SLOTS.length);
    expect(snaps.every((x) => x.status === 1)).toBe(true);
    const perDefine = new Map<number, string[]>();
    for (const x of snaps) perDefine.set(x.define_id!, [...(perDefine.get(x.define_id!) ?? []), x.name]);
    for (const id of defineIds) {
      expect(perDefine.get(id)?.sort()).toEqual(['m-20260401_100000', 'm-20260401_100100', 'm-20260401_100200']);
      expect((await slotsOf(a.runtime.ctx.db, id)).map((x) => x.state)).toEqual(['fired', 'fired', 'fired']);
    }
  }, 120_000);
});
