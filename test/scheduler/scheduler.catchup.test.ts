/**
 * Missed slots: a server that was down finds, at start-up, the most recent missed slot of each
 * definition and fires it once (Danube's beat); `catchup: false` skips them. The restarted server
 * runs its real loop on the manual clock: its first tick is the start-up one.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { forEachDb, startTestServer, withServer, type TestServer } from '../helpers/server.js';
import { makeVm, type VmFixture } from '../helpers/fixtures.js';
import { slotsOf } from '../../src/scheduler/slot.repository.js';
import { ManualClock, autoSnapshots, define, defineByName, settle } from './helpers.js';

type Server = TestServer & { cleanup(): Promise<void> };
type Reused = Awaited<ReturnType<typeof startTestServer>> & { destroy(): Promise<void> };

async function until<T>(f: () => Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 10));
  }
}

forEachDb('scheduler: catch-up after downtime', (kind) => {
  const clock = new ManualClock('2026-03-01T08:00:00Z');
  let first: Server;
  let second: Reused | null = null;
  let a: VmFixture;
  let b: VmFixture;
  beforeAll(async () => {
    first = await withServer(kind, { clock });
    a = await makeVm(first, 'cu1', { disks: [1] });
    b = await makeVm(first, 'cu2', { disks: [1] });
  });
  afterAll(async () => {
    await second?.close();
    await first.cleanup();
  });

  it('fires the most recent missed slot once at start-up; catchup false skips; later slots run on time', async () => {
    const cu = await define(first, 'cu1', a.uuid, 'cu', { schedule: '0 * * * *', retention: 0 });
    const nc = await define(first, 'cu2', b.uuid, 'nc', { schedule: '0 * * * *', retention: 0, catchup: false });
    const info = (first as unknown as { dbInfo: { databaseUrl: string; searchPath?: string; storageRoot: string } }).dbInfo;
    await first.close();

    // Down from 08:00 to 13:30: slots 09:00 … 13:00 were missed.
    clock.set('2026-03-01T13:30:00Z');
    second = (await startTestServer(kind, { clock, reuse: info, scheduler: true })) as Reused;
    const s = second;
    const snaps = await until(async () => {
      const x = await autoSnapshots(s, a.uuid);
      return x.length > 0 && x;
    });
    await until(async () => (await slotsOf(s.runtime.ctx.db, nc.id)).length > 0);
    await settle(s);
    expect(snaps.map((x) => x.name)).toEqual(['cu-20260301_133000']);
    expect((await slotsOf(s.runtime.ctx.db, cu.id)).map((x) => [x.slot, x.source, x.state])).toEqual([['2026-03-01T13:00:00.000Z', 'catchup', 'fired']]);
    expect(await autoSnapshots(s, b.uuid)).toEqual([]);
    expect((await slotsOf(s.runtime.ctx.db, nc.id)).map((x) => [x.slot, x.state, x.reason])).toEqual([['2026-03-01T13:00:00.000Z', 'skipped', 'missed']]);
    for (const [uuid, name] of [[a.uuid, 'cu'], [b.uuid, 'nc']] as const) {
      expect((await defineByName(s, uuid, name)).next_run).toBe('2026-03-01T14:00:00.000Z');
    }
    const metrics = (await s.req('GET', '/metrics')).text;
    expect(metrics).toContain('esnap_schedule_slots_skipped_total{vm="cu1",disk="1",define="cu",reason="missed"} 4');
    expect(metrics).toContain('esnap_schedule_slots_skipped_total{vm="cu2",disk="1",define="nc",reason="missed"} 5');

    // The loop sleeps until the next minute boundary; at 14:00 both fire on time.
    await clock.untilSleeping();
    clock.set('2026-03-01T14:00:00.005Z');
    await until(async () => (await autoSnapshots(s, b.uuid)).length === 1);
    await settle(s);
    expect((await autoSnapshots(s, a.uuid)).map((x) => x.name)).toEqual(['cu-20260301_133000', 'cu-20260301_140000']);
    expect((await autoSnapshots(s, b.uuid)).map((x) => x.name)).toEqual(['nc-20260301_140000']);
  });
});
