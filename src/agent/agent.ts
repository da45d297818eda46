/**
 * The agent of one node: it works the node's queue, runs storage drivers and reports outcomes.
 * In embedded mode it runs inside `esnap serve` and reports straight to the TaskService; in
 * cluster mode the same class runs in `esnap agent` with a reporter that sends results onward.
 */
import type { Logger } from '../app-context.js';
import type { QueueMessage, TaskQueue } from '../queue/queue.js';
import type { DiskRef, StorageDriver } from '../storage/driver.js';
import type { CommandRunner } from '../storage/runner.js';
import { defaultRunner } from '../storage/node-runner.js';
import { assertDiskNotInUse } from '../storage/in-use.js';
import { StorageError } from '../storage/driver.js';
import { atomicSnapshots, planAtomicGroups } from '../storage/capabilities.js';
import type { TaskOutcome } from '../tasks/task.service.js';
import { withFreeze, DEFAULT_FREEZE_LIMIT_MS } from '../guest/freeze.js';
import type { StorageUsage } from '../nodes/node.repository.js';
import { storagesTouched } from '../nodes/storage.usage.js';
import type { Virsh } from '../hypervisor/virsh.js';
import { runPower } from '../hypervisor/libvirt.power.js';
import type { AgentPayload, CreateData, CreateItem, CreatedSnapshot, ListData, ListedSnapshot } from './payloads.js';

export interface AgentReporter {
  /** Claims the task (PENDING → STARTED); false means skip it (cancelled or taken). */
  started(taskId: string): Promise<boolean>;
  finished(taskId: string, outcome: TaskOutcome): Promise<void>;
  /** Fresh usage of this node's storages (src/nodes/storage.usage.ts says when); optional. */
  storageUsage?(usage: readonly StorageUsage[]): Promise<void>;
}

function causedByMissingTool(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return true;
  }
  return false;
}

export function failure(message: string, returncode = 1): TaskOutcome {
  return { returncode, message, detail: `Got bad return code (${returncode}). Error: ${message}` };
}

export class Agent {
  constructor(
    readonly node: string,
    private readonly drivers: ReadonlyMap<string, StorageDriver>,
    private readonly queue: TaskQueue,
    private readonly reporter: AgentReporter,
    private readonly log: Logger,
    private readonly opts: { freezeLimitMs?: number; runner?: CommandRunner; libvirt?: Virsh | null } = {},
  ) {}

  #warnedNoProbe = false;

  /**
   * The first step of a rollback or restore: nothing may run on the disk being rewritten, whatever
   * status was recorded — a QEMU answering on the VM's QMP socket, or QEMU's lock on the image.
   * Without qemu-utils on the node no lock can be probed; that is logged once and the QMP check
   * alone decides.
   */
  async #assertNotInUse(driver: StorageDriver, disk: DiskRef): Promise<void> {
    const image = await driver.imageOf(disk);
    try {
      await assertDiskNotInUse({
        imagePath: image.path,
        format: image.format,
        qmpSocket: disk.qmpSocket ?? null,
        runner: this.opts.runner ?? defaultRunner,
      });
    } catch (err) {
      if (!causedByMissingTool(err)) throw err;
      if (!this.#warnedNoProbe) {
        this.#warnedNoProbe = true;
        this.log.warn({ err }, 'qemu-io/qemu-img not installed: rollbacks cannot check QEMU image locks');
      }
    }
  }

  async start(concurrency = 4): Promise<void> {
    for (const d of this.drivers.values()) await d.init();
    await this.queue.work(this.node, (msg) => this.handle(msg), { concurrency });
  }

  /** Size and free bytes of the named storages (all when omitted); null where they cannot be read. */
  async storageStats(names?: readonly string[]): Promise<Map<string, { size: number; free: number } | null>> {
    const out = new Map<string, { size: number; free: number } | null>();
    for (const [name, d] of this.drivers) {
      if (names && !names.includes(name)) continue;
      try {
        out.set(name, await d.stats());
      } catch (err) {
        this.log.warn({ err, storage: name }, 'storage stats failed');
        out.set(name, null);
      }
    }
    return out;
  }

  async handle(msg: QueueMessage): Promise<void> {
    if (!(await this.reporter.started(msg.taskId))) return;
    let outcome: TaskOutcome;
    try {
      outcome = await this.run(msg.payload as AgentPayload);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (!(err instanceof StorageError)) this.log.error({ err, taskId: msg.taskId }, 'agent operation failed');
      outcome = failure(message);
    }
    // Before the outcome: the usage is current by the time the task is seen to have ended.
    await this.reportUsage(storagesTouched(msg.payload));
    await this.reporter.finished(msg.taskId, outcome);
  }

  /**
   * Hands the usage of the named storages (all when omitted) to the reporter. Never throws: a
   * storage that cannot be read keeps its last recorded numbers (the failure is logged).
   */
  async reportUsage(names?: readonly string[]): Promise<void> {
    if (!this.reporter.storageUsage || names?.length === 0) return;
    try {
      const stats = await this.storageStats(names);
      const usage = [...stats].flatMap(([name, s]) => (s ? [{ name, size: s.size, free: s.free }] : []));
      if (usage.length > 0) await this.reporter.storageUsage(usage);
    } catch (err) {
      this.log.warn({ err, node: this.node }, 'storage usage report failed');
    }
  }

  #driver(storage: string): StorageDriver {
    const d = this.drivers.get(storage);
    if (!d) throw new StorageError('backend', `Storage ${storage} does not exist on node ${this.node}`);
    return d;
  }

  /**
   * Creates every item's snapshot; when one fails, the ones already made are destroyed again, so
   * a multi-disk snapshot exists on all disks or on none. Disks that one driver can snapshot in a
   * single atomic operation (ZFS disks of one pool where zfs takes several snapshots per call) are
   * planned into one group and taken together, at one instant; the rest one by one. The result has
   * one entry per item, in the payload's order.
   */
  async #createAll(items: readonly CreateItem[]): Promise<CreatedSnapshot[]> {
    const keys = items.map((item) => {
      const key = atomicSnapshots(this.#driver(item.storage))?.atomicGroup(item.disk) ?? null;
      return key === null ? null : `${key}\u0000${item.name}`; // one call carries one name
    });
    const made: CreateItem[] = [];
    const out: CreatedSnapshot[] = [];
    try {
      for (const group of planAtomicGroups(keys)) {
        const first = items[group[0]!]!;
        const driver = this.#driver(first.storage);
        const atomic = group.length > 1 ? atomicSnapshots(driver) : null;
        const infos = atomic
          ? await atomic.createAtomic(
              group.map((i) => ({ driver: this.#driver(items[i]!.storage), disk: items[i]!.disk, id: items[i]!.id })),
              { name: first.name },
            )
          : [await driver.create(first.disk, first.id, { name: first.name })];
        group.forEach((i, k) => {
          made.push(items[i]!);
          out[i] = { size: infos[k]!.size, created: infos[k]!.created.toISOString() };
        });
      }
      return out;
    } catch (err) {
      for (const item of made.reverse()) {
        try {
          await this.#driver(item.storage).destroy(item.disk, [item.id]);
        } catch (undoErr) {
          this.log.error({ err: undoErr, id: item.id }, 'could not undo a partial multi-disk snapshot');
        }
      }
      throw err;
    }
  }

  async run(p: AgentPayload): Promise<TaskOutcome> {
    switch (p.op) {
      case 'create': {
        if (p.freeze) {
          // Sync, freeze, snapshot, always thaw (with a hard limit on how long the guest stays
          // frozen). A failed freeze still takes the snapshot; it is just not consistent.
          const frozen = await withFreeze(
            { socket: p.freeze.socket, limitMs: this.opts.freezeLimitMs ?? DEFAULT_FREEZE_LIMIT_MS, log: this.log },
            () => this.#createAll(p.items),
          );
          const data: CreateData = { items: frozen.value, frozen: frozen.frozen, freezeError: frozen.error };
          const detail = frozen.error ? `msg='${frozen.error}'` : '';
          return { returncode: 0, message: 'Snapshot successfully created', detail, data };
        }
        const data: CreateData = { items: await this.#createAll(p.items), frozen: false };
        return { returncode: 0, message: 'Snapshot successfully created', detail: '', data };
      }
      case 'destroy':
        await this.#driver(p.storage).destroy(p.disk, p.ids);
        return { returncode: 0, message: 'Snapshots successfully deleted', detail: '' };
      case 'rollback': {
        const d = this.#driver(p.storage);
        await this.#assertNotInUse(d, p.target ?? p.disk);
        if (p.target) await d.restore(p.disk, p.id, p.target);
        else await d.rollback(p.disk, p.id);
        return { returncode: 0, message: 'Snapshot successfully restored', detail: '' };
      }
      case 'list': {
        const d = this.#driver(p.storage);
        const data: ListData = {};
        for (const disk of p.disks) {
          if (!(await d.diskExists(disk))) {
            data[disk.path] = null;
            continue;
          }
          const snaps = await d.list(disk);
          data[disk.path] = snaps.map(
            (s): ListedSnapshot => ({ id: s.id, created: s.created.toISOString(), size: s.size, name: s.name ?? null }),
          );
        }
        return { returncode: 0, message: 'Snapshots successfully synced', data };
      }
      case 'disk_create':
        await this.#driver(p.storage).createDisk(p.disk);
        return { returncode: 0, message: 'Disk successfully created', detail: '' };
      case 'disk_delete':
        for (const item of p.items) await this.#driver(item.storage).deleteDisk(item.disk);
        return { returncode: 0, message: 'Disk successfully deleted', detail: '' };
      case 'noop':
        return { returncode: 0, message: 'OK', detail: '' };
      case 'vm_power':
        if (!this.opts.libvirt) return failure(`Node ${this.node} has no hypervisor adapter (ESNAP_HYPERVISOR)`);
        return runPower(this.opts.libvirt, p);
    }
  }
}
