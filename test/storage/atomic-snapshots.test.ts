/**
 * Snapshots of several disks in one atomic operation: the pure plan that groups a multi-disk
 * create by the drivers' capability, and the agent's use of it (disk_id "all"). The zfs commands
 * are answered at the process boundary, as OpenZFS would: zfs-fuse on this machine takes one
 * snapshot per call, so the one-call path cannot run against a real pool here.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import type { CreateData } from '../../src/agent/payloads.js';
import type { Logger } from '../../src/app-context.js';
import type { TaskQueue } from '../../src/queue/queue.js';
import { BtrfsDriver } from '../../src/storage/btrfs/btrfs.driver.js';
import { atomicSnapshots, planAtomicGroups } from '../../src/storage/capabilities.js';
import type { StorageDriver } from '../../src/storage/driver.js';
import { FileDriver } from '../../src/storage/file/file.driver.js';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import { Qcow2Driver } from '../../src/storage/qcow2/qcow2.driver.js';
import type { CommandRunner, RunOptions, RunResult } from '../../src/storage/runner.js';
import { MINIMAL_CAPABILITIES, type ZfsCapabilities } from '../../src/storage/zfs/zfs.capabilities.js';
import { ZfsDriver } from '../../src/storage/zfs/zfs.driver.js';

const OPENZFS: ZfsCapabilities = { listParsable: true, sizeProperty: 'written', commaDestroy: true, multiSnapshot: true };

describe('planAtomicGroups', () => {
  it('groups equal keys where their first item is, and keeps null keys alone', () => {
    expect(planAtomicGroups([])).toEqual([]);
    expect(planAtomicGroups([null, null])).toEqual([[0], [1]]);
    expect(planAtomicGroups(['zfs:tank', 'zfs:tank', 'zfs:tank'])).toEqual([[0, 1, 2]]);
    expect(planAtomicGroups(['zfs:tank', null, 'zfs:tank', 'zfs:other', 'zfs:other', null])).toEqual([[0, 2], [1], [3, 4], [5]]);
  });

  it('every item is in exactly one group', () => {
    const keys = ['a', null, 'b', 'a', null, 'b', 'c'];
    expect(planAtomicGroups(keys).flat().sort()).toEqual(keys.map((_, i) => i));
  });
});

describe('atomicSnapshots capability', () => {
  it('zfs has it, keyed by pool, only while the detected zfs takes several snapshots per call', () => {
    const runner: CommandRunner = { run: () => Promise.reject(new Error('no process in this test')) };
    const openzfs = new ZfsDriver({ dataset: 'tank/vms', runner, capabilities: OPENZFS });
    expect(atomicSnapshots(openzfs)?.atomicGroup({ path: 'web01/disk0' })).toBe('zfs:tank');
    expect(new ZfsDriver({ dataset: 'tank', runner, capabilities: OPENZFS }).atomicGroup({ path: 'd' })).toBe('zfs:tank');
    expect(new ZfsDriver({ dataset: 'tank/vms', runner, capabilities: MINIMAL_CAPABILITIES }).atomicGroup({ path: 'd' })).toBeNull();
    // Not yet initialised (capabilities unknown): alone, the safe answer.
    expect(new ZfsDriver({ dataset: 'tank/vms', runner }).atomicGroup({ path: 'd' })).toBeNull();
    for (const d of [
      new BtrfsDriver({ root: '/nonexistent', runner }),
      new Qcow2Driver({ root: '/nonexistent', runner }),
      new FileDriver({ root: '/nonexistent', runner }),
    ] as StorageDriver[]) {
      expect(atomicSnapshots(d)).toBeNull();
    }
  });
});

/** The folder every fake dataset is mounted on, holding a whole `disk.img` (the agent checks it before a create). */
let mounted = '';
beforeAll(async () => {
  mounted = await mkdtemp(join(tmpdir(), 'esnap-atomic-mnt-'));
  await writeFile(join(mounted, 'disk.img'), '');
});
afterAll(() => rm(mounted, { recursive: true, force: true }));

/** Answers zfs like OpenZFS would; `failOn` makes a snapshot call naming that dataset fail. */
class FakeZfs implements CommandRunner {
  readonly calls: string[][] = [];
  constructor(private readonly failOn?: string) {}
  run(argv: readonly string[], _options?: RunOptions): Promise<RunResult> {
    this.calls.push([...argv]);
    const ok = (stdout = ''): RunResult => ({ code: 0, stdout, stderr: '', durationMs: 1 });
    if (argv[1] === 'snapshot' && this.failOn && argv.some((a) => a.startsWith(`${this.failOn}@`))) {
      return Promise.resolve({ code: 1, stdout: '', stderr: `cannot create snapshot '${this.failOn}@x': out of space\n`, durationMs: 1 });
    }
    if (argv[1] === 'get' && argv.includes('mountpoint,mounted')) return Promise.resolve(ok(`mountpoint\t${mounted}\nmounted\tyes`));
    if (argv[1] === 'get' && argv.includes('written')) {
      return Promise.resolve(ok(argv.filter((a) => a.includes('@')).map((n) => `${n}\t4096`).join('\n')));
    }
    return Promise.resolve(ok());
  }
  snapshots(): string[][] {
    return this.calls.filter((c) => c[1] === 'snapshot').map((c) => c.filter((a) => a.includes('@')));
  }
}

const silent: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
const noQueue = {} as TaskQueue;
const noReporter = { started: () => Promise.resolve(true), finished: () => Promise.resolve() };

async function agentWith(caps: ZfsCapabilities, zfs: FakeZfs, extra: Record<string, StorageDriver> = {}): Promise<Agent> {
  const drivers = new Map<string, StorageDriver>([
    ['vms', new ZfsDriver({ dataset: 'tank/vms', runner: zfs, capabilities: caps })],
    ['fast', new ZfsDriver({ dataset: 'tank/fast', runner: zfs, capabilities: caps })],
    ['other', new ZfsDriver({ dataset: 'other/vms', runner: zfs, capabilities: caps })],
    ...Object.entries(extra),
  ]);
  for (const d of drivers.values()) await d.init();
  zfs.calls.length = 0;
  return new Agent('node1', drivers, noQueue, noReporter, silent, { runner: zfs });
}

const items = [
  { storage: 'vms', disk: { path: 'web01/disk0' }, id: 'es-11', name: 'before upgrade' },
  { storage: 'other', disk: { path: 'web01/disk1' }, id: 'es-12', name: 'before upgrade' },
  { storage: 'fast', disk: { path: 'web01/disk2' }, id: 'es-13', name: 'before upgrade' },
];

describe('agent: create on all disks of a VM', () => {
  it('takes the disks of one pool in ONE zfs snapshot call, each with its own id, and reports each disk in order', async () => {
    const zfs = new FakeZfs();
    const agent = await agentWith(OPENZFS, zfs);
    const outcome = await agent.run({ op: 'create', items });
    expect(zfs.snapshots()).toEqual([['tank/vms/web01/disk0@es-11', 'tank/fast/web01/disk2@es-13'], ['other/vms/web01/disk1@es-12']]);
    expect(zfs.calls.find((c) => c[1] === 'snapshot')?.slice(0, 4)).toEqual(['zfs', 'snapshot', '-o', 'es:snapname=before upgrade']);
    expect(outcome.returncode).toBe(0);
    const data = outcome.data as CreateData;
    expect(data.items).toHaveLength(3);
    expect(data.items.map((i) => i.size)).toEqual([4096, 4096, 4096]);
  });

  it('one snapshot per call where zfs takes one (zfs-fuse)', async () => {
    const zfs = new FakeZfs();
    const agent = await agentWith(MINIMAL_CAPABILITIES, zfs);
    await agent.run({ op: 'create', items });
    expect(zfs.snapshots()).toEqual([['tank/vms/web01/disk0@es-11'], ['other/vms/web01/disk1@es-12'], ['tank/fast/web01/disk2@es-13']]);
  });

  it('all or none: a failed group destroys the snapshots the groups before it made', async () => {
    const zfs = new FakeZfs('other/vms/web01/disk1');
    const agent = await agentWith(OPENZFS, zfs);
    await expect(agent.run({ op: 'create', items })).rejects.toThrow(/out of space/);
    const destroyed = zfs.calls.filter((c) => c[1] === 'destroy').map((c) => c[2]);
    expect(destroyed.sort()).toEqual(['tank/fast/web01/disk2@es-13', 'tank/vms/web01/disk0@es-11']);
  });

  it('a disk on another backend is snapshotted on its own, beside the zfs group', async () => {
    const root = await mkdtemp(join(tmpdir(), 'esnap-atomic-'));
    try {
      const zfs = new FakeZfs();
      const file = new FileDriver({ root, runner: new NodeCommandRunner() });
      const agent = await agentWith(OPENZFS, zfs, { files: file });
      await file.createDisk({ path: 'web01-disk3', sizeBytes: 4096 });
      const mixed = [...items, { storage: 'files', disk: { path: 'web01-disk3' }, id: 'es-14', name: 'before upgrade' }];
      const outcome = await agent.run({ op: 'create', items: mixed });
      expect(zfs.snapshots()).toEqual([['tank/vms/web01/disk0@es-11', 'tank/fast/web01/disk2@es-13'], ['other/vms/web01/disk1@es-12']]);
      expect((await file.list({ path: 'web01-disk3' })).map((s) => [s.id, s.name])).toEqual([['es-14', 'before upgrade']]);
      expect((outcome.data as CreateData).items).toHaveLength(4);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('does not group disks whose items carry different names (one call sets one es:snapname)', async () => {
    const zfs = new FakeZfs();
    const agent = await agentWith(OPENZFS, zfs);
    await agent.run({ op: 'create', items: [items[0]!, { ...items[2]!, name: 'other name' }] });
    expect(zfs.snapshots()).toEqual([['tank/vms/web01/disk0@es-11'], ['tank/fast/web01/disk2@es-13']]);
  });
});
