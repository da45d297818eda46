/**
 * What a create that ended FAILURE left on storage is destroyed by the disk's next sync, whatever
 * happens in between, and no sync adopts it (migration 0012, src/snapshots/snapshot.discard.ts).
 * The chaos run (seed 1, 10,000 operations) found six leftovers adopted as "found" snapshots: the
 * list of what to destroy lived only in the repair sync's payload, and that sync was cut off by
 * another kill. Real qcow2 images and qemu-img, a real server; the cuts are made at the process
 * edge (the runner fails a task right after `qemu-img snapshot -c` ran, or before `-d` runs), as
 * an agent killed at that instant would (the driver takes the plain qemu-img path, so each step is
 * one command).
 */
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import { FaultRunner, isCommand } from '../helpers/fault-runner.js';
import { resyncAfterRepair } from '../../src/snapshots/snapshot.sync.js';
import { retryPendingDiscards } from '../../src/snapshots/snapshot.discard-sweep.js';
import type { TaskRow } from '../../src/db/schema.js';
import { withServer, type TestServer } from '../helpers/server.js';
import { settle } from '../scheduler/helpers.js';
import { platformUnavailable } from '../platform/require.js';
import { qemuUnavailable } from '../platform/qemu.js';

/** The cuts an agent kill would make at these instants, and a step run during a sync. */
const cuts = {
  /** Fail the task right after `qemu-img snapshot -c` made the snapshot. */
  afterCreate: false,
  /** Fail the task before `qemu-img snapshot -d` runs. */
  beforeDelete: false,
  /** Runs once at the next qemu-img command (a sync reading the image, after its prepare). */
  onQemuImg: null as (() => Promise<void>) | null,
};
const runner = new FaultRunner({
  async before(argv) {
    // The driver takes plain qemu-img (as where qemu-storage-daemon is not installed), whose runs
    // pass here one command at a time.
    if (argv[0] === 'qemu-storage-daemon') return { code: 127, stdout: '', stderr: 'qemu-storage-daemon: not installed here', durationMs: 0 };
    if (cuts.beforeDelete && isCommand(argv, 'qemu-img', 'snapshot', '-d')) throw new Error('agent killed before qemu-img snapshot -d');
    const hook = cuts.onQemuImg;
    if (hook && argv[0] === 'qemu-img') {
      cuts.onQemuImg = null;
      await hook();
    }
    return undefined;
  },
  after(argv) {
    if (cuts.afterCreate && isCommand(argv, 'qemu-img', 'snapshot', '-c')) throw new Error('agent killed after qemu-img snapshot -c');
  },
});

const reason = await qemuUnavailable();
if (reason !== null) {
  platformUnavailable('snapshot discards (qcow2)', reason);
} else {
  let root: string;
  let s: TestServer & { cleanup(): Promise<void> };
  let image: string;
  let n = 0;

  const db = () => s.runtime.ctx.db;
  /** Snapshot ids qemu-img lists in the image. */
  const onStorage = async (): Promise<string[]> => {
    const r = await new NodeCommandRunner().run(['qemu-img', 'snapshot', '-l', '-U', image]);
    expect(r.code, r.stderr).toBe(0);
    return [...r.stdout.matchAll(/^\s*\d+\s+([ae]s-\d+)\s/gm)].map((m) => m[1]!);
  };
  const rows = async () => (await db().selectFrom('snapshot').select(['name', 'note']).orderBy('id').execute()).map((r) => r.name);
  const lastTask = async (kind: string): Promise<TaskRow> =>
    db().selectFrom('task').selectAll().where('kind', '=', kind).orderBy('created', 'desc').orderBy('id', 'desc').executeTakeFirstOrThrow();
  /** A create cut off right after qemu-img made its snapshot: FAILURE, the snapshot on storage. */
  const cutCreate = async (): Promise<{ task: TaskRow; id: string }> => {
    cuts.afterCreate = true;
    const c = await s.stream('POST', `/api/vm/dc01/snapshot/cut${++n}/`, { body: {} });
    cuts.afterCreate = false;
    expect(c.final).toMatchObject({ status: 'FAILURE' });
    const task = await lastTask('snapshot_create');
    const id = (JSON.parse(task.payload) as { items: Array<{ id: string }> }).items[0]!.id;
    expect(await onStorage()).toContain(id);
    return { task, id };
  };
  const discards = async () => (await db().selectFrom('snapshot_discard').select('snapshot').execute()).map((r) => r.snapshot);

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'esnap-discard-'));
    s = await withServer('sqlite', { runner, storages: () => [{ name: 'default', driver: 'qcow2', root }] });
    expect((await s.req('POST', '/api/vm/dc01/define/', { body: {} })).status).toBe(201);
    expect((await s.req('POST', '/api/vm/dc01/define/disk/1/', { body: { size: 8 } })).status).toBe(201);
    const disk = await db().selectFrom('vm_disk').select('path').executeTakeFirstOrThrow();
    image = join(root, disk.path);
    const c = await s.stream('POST', '/api/vm/dc01/snapshot/keep/', { body: {} });
    expect(c.finalStatus, JSON.stringify(c.final)).toBe(200);
  }, 120_000);
  afterAll(async () => {
    await s?.cleanup();
    if (root) await rm(root, { recursive: true, force: true });
  });
  beforeEach(async () => {
    await settle(s, 60_000);
    expect(await rows()).toEqual(['keep']);
    expect(await discards()).toEqual([]);
  });

  it('the repair sync cut off in turn: the next sync of the disk destroys the leftover and adopts nothing', async () => {
    const { task, id } = await cutCreate();
    // The failure completion recorded what the create may have left.
    expect(await discards()).toEqual([id]);
    cuts.beforeDelete = true;
    await resyncAfterRepair(s.runtime.ctx, [task]);
    await settle(s, 60_000);
    cuts.beforeDelete = false;
    expect((await lastTask('snapshot_sync')).state).toBe('FAILURE');
    expect(await onStorage()).toContain(id);
    expect(await discards()).toEqual([id]);
    // Before the fix, this sync listed the leftover and made a row "Found by snapshot sync".
    const sync = await s.stream('PUT', '/api/vm/dc01/snapshot/', { body: {} });
    expect(sync.finalStatus, JSON.stringify(sync.final)).toBe(200);
    expect(await rows()).toEqual(['keep']);
    expect(await onStorage()).not.toContain(id);
    expect(await discards()).toEqual([]);
  }, 180_000);

  it('a repair sync cut off while it had discards is run again by the repair of that sync', async () => {
    const { task, id } = await cutCreate();
    cuts.beforeDelete = true;
    await resyncAfterRepair(s.runtime.ctx, [task]);
    await settle(s, 60_000);
    cuts.beforeDelete = false;
    const cutSync = await lastTask('snapshot_sync');
    expect(cutSync.state).toBe('FAILURE');
    // What the results consumer does for the sync whose agent did not finish it.
    await resyncAfterRepair(s.runtime.ctx, [cutSync]);
    await settle(s, 60_000);
    expect((await lastTask('snapshot_sync')).state).toBe('SUCCESS');
    expect(await onStorage()).not.toContain(id);
    expect(await rows()).toEqual(['keep']);
    expect(await discards()).toEqual([]);
  }, 180_000);

  it('a disk no sync reaches: the discard sweep syncs it on its second sight of the discard', async () => {
    const { id } = await cutCreate();
    const seen = new Set<string>();
    // First sight: nothing yet (a repair sync may be on its way).
    expect(await retryPendingDiscards(s.runtime.ctx, seen)).toBe(0);
    expect(await retryPendingDiscards(s.runtime.ctx, seen)).toBe(1);
    await settle(s, 60_000);
    expect(await onStorage()).not.toContain(id);
    expect(await rows()).toEqual(['keep']);
    expect(await discards()).toEqual([]);
    // Nothing pending: no more syncs.
    expect(await retryPendingDiscards(s.runtime.ctx, seen)).toBe(0);
  }, 180_000);

  it('a discard recorded while a sync was already listing: that sync does not adopt the leftover', async () => {
    const { id } = await cutCreate();
    const recorded = await db().selectFrom('snapshot_discard').selectAll().executeTakeFirstOrThrow();
    // The sync is prepared without it (as if the failure had not committed yet) ...
    await db().deleteFrom('snapshot_discard').execute();
    // ... and it commits while the agent lists the image.
    cuts.onQemuImg = async () => void (await db().insertInto('snapshot_discard').values(recorded).execute());
    const sync = await s.stream('PUT', '/api/vm/dc01/snapshot/', { body: {} });
    expect(sync.finalStatus, JSON.stringify(sync.final)).toBe(200);
    expect(cuts.onQemuImg).toBeNull();
    // Not adopted; still pending, so the next sync destroys it.
    expect(await rows()).toEqual(['keep']);
    expect(await discards()).toEqual([id]);
    const again = await s.stream('PUT', '/api/vm/dc01/snapshot/', { body: {} });
    expect(again.finalStatus, JSON.stringify(again.final)).toBe(200);
    expect(await onStorage()).not.toContain(id);
    expect(await discards()).toEqual([]);
  }, 180_000);
}
