/**
 * The one real-clock test of the scheduler (style rule 15's exception): a server with its loop
 * running, a definition firing every minute with retention 1, watched over three slots. It ends
 * with exactly one automatic snapshot, in the database and on storage.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { createDriver } from '../../src/storage/drivers.js';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import { withServer, testDatabases, type TestServer } from '../helpers/server.js';
import { makeVm, type VmFixture } from '../helpers/fixtures.js';
import { slotsOf } from '../../src/scheduler/slot.repository.js';
import { autoSnapshots, define, settle } from './helpers.js';

describe.runIf(testDatabases().includes('sqlite'))('scheduler: three real minutes', () => {
  let s: TestServer & { cleanup(): Promise<void> };
  let vm: VmFixture;
  beforeAll(async () => {
    s = await withServer('sqlite', { scheduler: true });
    vm = await makeVm(s, 'rt01', { disks: [1] });
  });
  afterAll(() => s.cleanup());

  it('fires `* * * * *` with retention 1 each minute and keeps exactly one snapshot', async () => {
    const def = await define(s, 'rt01', vm.uuid, 'every', { schedule: '* * * * *', retention: 1 });
    const deadline = Date.now() + 200_000;
    while ((await slotsOf(s.runtime.ctx.db, def.id)).length < 3) {
      expect(Date.now(), 'three slots within 200 s').toBeLessThan(deadline);
      await new Promise((r) => setTimeout(r, 500));
    }
    await settle(s, 30_000);
    const slots = await slotsOf(s.runtime.ctx.db, def.id);
    expect(slots.map((x) => x.state)).toEqual(['fired', 'fired', 'fired']);
    // Slots a minute apart, each fired within seconds of its time.
    for (const [i, x] of slots.entries()) {
      expect(Date.parse(x.slot) % 60_000).toBe(0);
      expect(Date.parse(x.created) - Date.parse(x.slot)).toBeLessThan(5000);
      if (i > 0) expect(Date.parse(x.slot) - Date.parse(slots[i - 1]!.slot)).toBe(60_000);
    }

    const snaps = await autoSnapshots(s, vm.uuid);
    expect(snaps).toHaveLength(1);
    const latest = new Date(slots[2]!.slot);
    expect(snaps[0]!.name.startsWith(`every-${latest.toISOString().slice(0, 16).replace(/[-:]/g, '').replace('T', '_')}`)).toBe(true);
    expect(snaps[0]).toMatchObject({ status: 1, type: 1, define_id: def.id });
    // Storage, as its driver lists it.
    const driver = createDriver({ name: 'default', driver: 'file', root: join(s.storageRoot, 'storage') }, new NodeCommandRunner());
    const onStorage = await driver.list({ path: `${vm.uuid}-disk0`, sizeBytes: 1024 * 1024, qmpSocket: null });
    expect(onStorage.map((x) => x.id)).toEqual([`as-${snaps[0]!.id}`]);

    const tasks = await s.runtime.ctx.db.selectFrom('task').select(['kind', 'state', 'type', 'user_id']).execute();
    expect(tasks.filter((t) => t.kind === 'snapshot_create').map((t) => [t.state, t.type, t.user_id])).toEqual([
      ['SUCCESS', 'a', 7],
      ['SUCCESS', 'a', 7],
      ['SUCCESS', 'a', 7],
    ]);
    expect(tasks.filter((t) => t.kind === 'snapshot_delete').map((t) => t.state)).toEqual(['SUCCESS', 'SUCCESS']);
  }, 240_000);
});
