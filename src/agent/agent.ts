/**
 * The agent of one node: it works the node's queue, runs storage drivers and reports outcomes.
 * In embedded mode it runs inside `esnap serve` and reports straight to the TaskService; in
 * cluster mode the same class runs in `esnap agent` with a reporter that sends results onward.
 */
import type { Logger } from '../app-context.js';
import type { QueueMessage, TaskQueue } from '../queue/queue.js';
import type { DiskRef, StorageDriver } from '../storage/driver.js';
import type { CommandRunner } from '../storage/runner.js';
import { assertDiskNotInUse } from '../storage/in-use.js';
import { StorageError } from '../storage/driver.js';
import { currentSignal, OperationCancelled, OpScope, outsideScope, pointOfNoReturn, runInScope, type CancelAnswer } from '../storage/op-scope.js';
import { atomicSnapshots, planAtomicGroups } from '../storage/capabilities.js';
import { failure } from '../tasks/task.service.js';
import type { TaskOutcome } from '../tasks/task.types.js';
import { withFreeze, DEFAULT_FREEZE_LIMIT_MS, freezeFailed } from '../guest/freeze.js';
import { withLibvirtFreeze } from '../hypervisor/libvirt.freeze.js';
import type { StorageUsage } from '../nodes/node.repository.js';
import { storagesTouched } from '../nodes/storage.usage.js';
import type { AgentPayload, CreateData, CreateItem, CreatedSnapshot, DamageData, ListedSnapshot, ListResult } from './payloads.js';
import { DISK_DAMAGED } from '../domain/errors.js';
import type { Virsh } from '../hypervisor/virsh.js';
import { runPower } from '../hypervisor/libvirt.power.js';
import { CONTROL_KINDS } from '../transport/trust.service.js';
import { runBackupOp } from '../backups/backup.agent.js';
import { defaultTransferFor, type TransferFor } from '../backups/transfer.js';
import type { SshSide } from '../backups/engine.js';
import type { StorageConfig } from '../storage/drivers.js';

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

export { failure };

/** What an agent reports for a task it stopped on a cancel: storage is as before the task. */
export const CANCELLED_OUTCOME: TaskOutcome = { returncode: 1, message: 'terminated', detail: 'terminated', cancelled: true };

/**
 * Whether a driver declares the point of no return of its rollbacks and restores itself
 * (`pointOfNoReturn()` before its atomic switch, see op-scope.ts). Drivers that do not are
 * committed before the call: their rewrite in place cannot be undone, so a cancel then answers 406.
 */
export interface CancellableRollback {
  readonly cancellableRollback?: boolean;
}

export class Agent {
  constructor(
    readonly node: string,
    private readonly drivers: ReadonlyMap<string, StorageDriver>,
    private readonly queue: TaskQueue,
    private readonly reporter: AgentReporter,
    private readonly log: Logger,
    /** `runner` is the process's one command runner (its drivers' own), injected so its hook logs every command. */
    private readonly opts: {
      freezeLimitMs?: number;
      runner: CommandRunner;
      libvirt?: Virsh | null;
      /** Backups (src/backups/): key folder, storage roots, and the transport to other nodes. */
      backup?: {
        keysDir: string | null;
        roots: ReadonlyMap<string, string>;
        remote?: TransferFor;
        /** The storages' configuration (type 1 backups need a zfs storage's dataset). */
        storages?: ReadonlyMap<string, StorageConfig>;
        /** The agent's SSH side once started (cluster mode), else null. */
        ssh?: () => SshSide | null;
      };
    },
  ) {
    this.#transferFor = defaultTransferFor(node, drivers, opts.backup?.remote);
  }

  readonly #transferFor: TransferFor;

  /**
   * Where control messages go (kinds in CONTROL_KINDS: SSH trust, restore announcements,
   * src/transport/trust.service.ts). They are not tasks: no claim, no outcome. Without a handler
   * (embedded mode: no SSH) they are dropped.
   */
  control: ((msg: QueueMessage) => Promise<void>) | null = null;

  #warnedNoProbe = false;
  /** The scope of each task this agent has taken, from before its claim until its end is reported. */
  readonly #scopes = new Map<string, OpScope>();

  /**
   * A cancel of a task this agent runs: `cancelled` when its operation is being stopped (the
   * agent then undoes it and reports the task revoked), `committed` when it is past its point of
   * no return and will finish, `unknown` when this agent does not run it.
   */
  cancel(taskId: string): CancelAnswer | 'unknown' {
    const scope = this.#scopes.get(taskId);
    if (!scope) return 'unknown';
    const answer = scope.cancel();
    if (answer === 'cancelled') this.log.info({ taskId, node: this.node }, 'cancelling a running task');
    return answer;
  }

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
        runner: this.opts.runner,
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
    if (CONTROL_KINDS.has(msg.kind)) {
      try {
        await this.control?.(msg);
      } catch (err) {
        this.log.error({ err, kind: msg.kind }, 'control message failed');
      }
      return;
    }
    // The scope exists before the claim: a cancel that arrives while the claim is recorded finds it.
    const scope = new OpScope();
    this.#scopes.set(msg.taskId, scope);
    try {
      if (!(await this.reporter.started(msg.taskId))) return;
      let outcome: TaskOutcome;
      try {
        outcome = await runInScope(scope, () => this.run(msg.payload as AgentPayload));
        // An operation that ended well although it was cancelled has been undone by run().
        if (scope.cancelled && !scope.committed) outcome = CANCELLED_OUTCOME;
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        if (scope.cancelled && !scope.committed) outcome = CANCELLED_OUTCOME;
        else {
          if (!(err instanceof StorageError)) this.log.error({ err, taskId: msg.taskId }, 'agent operation failed');
          outcome = failure(message);
        }
      }
      // A cancel from here on is too late: the outcome stands (406, the task finishes).
      scope.end();
      // Before the outcome: the usage is current by the time the task is seen to have ended.
      await this.reportUsage(storagesTouched(msg.payload));
      await this.reporter.finished(msg.taskId, outcome);
    } finally {
      this.#scopes.delete(msg.taskId);
    }
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
    const signal = currentSignal();
    const keys = items.map((item) => {
      const key = atomicSnapshots(this.#driver(item.storage))?.atomicGroup(item.disk) ?? null;
      return key === null ? null : `${key}\u0000${item.name}`; // one call carries one name
    });
    const made: CreateItem[] = [];
    const out: CreatedSnapshot[] = [];
    let inProgress: readonly number[] = [];
    try {
      for (const group of planAtomicGroups(keys)) {
        if (signal?.aborted) throw new OperationCancelled();
        inProgress = group;
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
        inProgress = [];
      }
      // A cancel that the driver did not notice (an in-process step) still undoes the snapshots.
      if (signal?.aborted) throw new OperationCancelled();
      return out;
    } catch (err) {
      // A cancel killed the driver mid-call: what it left of the snapshot in progress goes too
      // (its id is this task's own, new one; destroy ignores ids that do not exist).
      const cancelled = signal?.aborted === true && !(err instanceof StorageError && err.code === 'snapshot_exists');
      if (cancelled) for (const i of inProgress) made.push(items[i]!);
      for (const item of made.reverse()) {
        try {
          await outsideScope(() => this.#driver(item.storage).destroy(item.disk, [item.id]));
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
        // A missing or cut-off image is never snapshotted: the server flags the disk (cheap checks
        // only, a create must stay fast; syncs and start-up run the thorough ones).
        const damage: Record<string, string> = {};
        for (const item of p.items) {
          const why = await this.#driver(item.storage).imageDamage(item.disk);
          if (why !== null) damage[item.disk.path] = why;
        }
        if (Object.keys(damage).length > 0) {
          const outcome = failure(DISK_DAMAGED);
          return { ...outcome, detail: `${outcome.detail} (${Object.values(damage).join(', ')})`, data: { damage } satisfies DamageData };
        }
        if (p.freeze) {
          // Sync, freeze, snapshot, always thaw (with a hard limit on how long the guest stays
          // frozen). A failed freeze still takes the snapshot; it is just not consistent.
          const limitMs = this.opts.freezeLimitMs ?? DEFAULT_FREEZE_LIMIT_MS;
          const create = (): Promise<CreatedSnapshot[]> => this.#createAll(p.items);
          const frozen =
            'socket' in p.freeze
              ? await withFreeze({ socket: p.freeze.socket, limitMs, log: this.log }, create)
              : this.opts.libvirt
                ? await withLibvirtFreeze({ virsh: this.opts.libvirt, domain: p.freeze.domain, limitMs, log: this.log }, create)
                : { value: await create(), frozen: false, error: freezeFailed('this agent does not run with ESNAP_HYPERVISOR=libvirt') };
          const data: CreateData = { items: frozen.value, frozen: frozen.frozen, freezeError: frozen.error };
          const detail = frozen.error ? `msg='${frozen.error}'` : '';
          return { returncode: 0, message: 'Snapshot successfully created', detail, data };
        }
        const data: CreateData = { items: await this.#createAll(p.items), frozen: false };
        return { returncode: 0, message: 'Snapshot successfully created', detail: '', data };
      }
      case 'destroy':
        // A destroy cannot be undone: from its start a cancel answers 406.
        pointOfNoReturn();
        await this.#driver(p.storage).destroy(p.disk, p.ids);
        return { returncode: 0, message: 'Snapshots successfully deleted', detail: '' };
      case 'rollback': {
        const d = this.#driver(p.storage);
        await this.#assertNotInUse(d, p.target ?? p.disk);
        // Until here nothing changed. A driver that writes aside declares its own point of no
        // return (its atomic switch); for the others it is now, before the rewrite in place.
        if (!(d as CancellableRollback).cancellableRollback) pointOfNoReturn();
        if (!p.target) {
          await d.rollback(p.disk, p.id);
          return { returncode: 0, message: 'Snapshot successfully restored', detail: '' };
        }
        // A restore's detail is what Danube's restore command reports: its return code and whole seconds.
        const began = Date.now();
        await d.restore(p.disk, p.id, p.target);
        return { returncode: 0, message: 'Snapshot successfully restored', detail: `rc=0, time_elapsed=${Math.round((Date.now() - began) / 1000)}` };
      }
      case 'list': {
        const d = this.#driver(p.storage);
        const data: ListResult = { snapshots: {}, damage: {} };
        for (const disk of p.disks) {
          const discard = p.discard?.[disk.path] ?? [];
          if (discard.length > 0 && (await d.diskExists(disk))) await d.destroy(disk, discard);
          const why = await d.imageDamage(disk, { thorough: true });
          data.damage[disk.path] = why;
          if (!(await d.diskExists(disk))) {
            data.snapshots[disk.path] = null;
            continue;
          }
          const snaps = await d.list(disk);
          data.snapshots[disk.path] = snaps.map(
            (s): ListedSnapshot => ({ id: s.id, created: s.created.toISOString(), size: s.size, name: s.name ?? null }),
          );
        }
        return { returncode: 0, message: 'Snapshots successfully synced', data };
      }
      case 'disk_create':
        pointOfNoReturn();
        await this.#driver(p.storage).createDisk(p.disk);
        return { returncode: 0, message: 'Disk successfully created', detail: '' };
      case 'disk_delete':
        pointOfNoReturn();
        for (const item of p.items) await this.#driver(item.storage).deleteDisk(item.disk);
        return { returncode: 0, message: 'Disk successfully deleted', detail: '' };
      case 'noop':
        return { returncode: 0, message: 'OK', detail: '' };
      case 'backup_create':
      case 'backup_restore':
      case 'backup_verify':
      case 'backup_delete':
      case 'backup_cleanup':
      case 'backup_check':
        if (p.op === 'backup_restore' && p.target.node === this.node) {
          await this.#assertNotInUse(this.#driver(p.target.storage), p.target.disk);
        }
        return runBackupOp(p, {
          node: this.node,
          runner: this.opts.runner,
          log: this.log,
          transferFor: this.#transferFor,
          roots: this.opts.backup?.roots ?? new Map(),
          keysDir: this.opts.backup?.keysDir ?? null,
          storageConfigs: this.opts.backup?.storages ?? new Map(),
          ssh: this.opts.backup?.ssh?.() ?? null,
          ...(this.opts.freezeLimitMs !== undefined ? { freezeLimitMs: this.opts.freezeLimitMs } : {}),
        });
      case 'vm_power':
        if (!this.opts.libvirt) return failure(`Node ${this.node} has no hypervisor adapter (ESNAP_HYPERVISOR)`);
        return runPower(this.opts.libvirt, p);
    }
  }
}
