/**
 * Backups on the wire (Danube's api/vm/backup/vm_backup.py and vm_backup_list.py): list, create
 * from a definition, show, delete, bulk delete, and the node's list; the PUT (note, restore, verify)
 * is backup.put.ts.
 * The tasks run on the backup node's queue; a backup row keeps what a restore needs by value, so
 * a backup stays listed and restorable after its VM, node or pool is gone, reached through the
 * VM's original hostname.
 */
import { vmTask } from '../tasks/vm-task.js';
import { ANNOUNCE_HOURS, announceRestore } from '../transport/trust.service.js';
import type { Transaction } from 'kysely';
import type { AppContext } from '../app-context.js';
import type { Caller } from '../accounts/caller.js';
import { requireAdmin } from '../accounts/caller.js';
import type { Database, TaskRow, VmRow } from '../db/schema.js';
import { isFinalTaskState } from '../domain/task-state.js';
import { ApiError, apiError, FailureError } from '../domain/errors.js';
import { NAME_RE, NOTE_FORBIDDEN, parseBool, validateFields } from '../domain/validate.js';
import { parseOrderBy } from '../domain/order-by.js';
import type { TaskSpec } from '../tasks/task.types.js';
import { logDetail } from '../tasks/task-log.js';
import { diskLockKey, diskRef, logObject, systemCaller } from '../snapshots/snapshot.context.js';
import { findVm, requireNodeOnline, requireOperational, resolveDisk, vmDisks, VM_STOPPED } from '../vms/vm.lookup.js';
import { lastValue } from '../definitions/define.service.js';
import { backupSettings } from './backup.settings.js';
import { BACKUP_DAMAGED, BACKUP_LOST, BACKUP_OK, BACKUP_PENDING, type BackupRow } from './backup.schema.js';
import type { BackupPayload } from './backup.payloads.js';
import { backupObject, type BackupObject } from './backup.output.js';
import * as repo from './backup.repository.js';

export const LOG_BKP_CREATE = "Create backup of server's disk";
export const LOG_BKP_UPDATE = "Restore backup of server's disk";
export const LOG_BKP_DELETE = "Delete backup of server's disk";
export const LOG_BKPS_DELETE = "Delete backups of server's disk";
/** esnap: a verify of a backup (PUT {"verify": true}). */
export const LOG_BKP_VERIFY = "Verify backup of server's disk";
export const BACKUP_NOT_FOUND = 'Backup not found';
export const BACKUP_EXISTS = 'Backup already exists';
export const BKPDEF_NOT_FOUND = 'Backup definition not found';
export const BACKUP_STATUS_NOT_OK = 'VM backup status is not OK';
export const DC_BACKUP_SIZE_LIMIT = 'DC backup size limit reached';
export const NOT_ENOUGH_SPACE = 'Not enough free space on target storage';
export const INVALID_BKPNAMES = 'Invalid bkpnames';

/** Danube's lock key of a backup's disk. */
export function backupLockKey(vmUuid: string, diskRealId: number): string {
  return `vm_backup vm:${vmUuid} disk:${diskRealId}`;
}

const own = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

function requireBackupsEnabled(caller: Caller): void {
  if (!backupSettings(caller.dc).VMS_VM_BACKUP_ENABLED) throw apiError('notFound');
}

/** `<bkpdef>-YYYYmmdd_HHMMSS` in UTC, as Danube's generate_backup_name. */
export function backupName(define: string, at: Date): string {
  const p = (n: number, w = 2): string => String(n).padStart(w, '0');
  return `${define}-${p(at.getUTCFullYear(), 4)}${p(at.getUTCMonth() + 1)}${p(at.getUTCDate())}_${p(at.getUTCHours())}${p(at.getUTCMinutes())}${p(at.getUTCSeconds())}`;
}

export const resticFilename = (backupId: number): string => `bkp-${backupId}.raw`;

// ---------------------------------------------------------------------------------------------
// Which backups a request names

/**
 * Danube: the VM when it exists (and `hostname` is not in the data), else the backups whose
 * original hostname is the one given. Non-admins reach only backups of VMs they own.
 */
async function vmScope(ctx: AppContext, caller: Caller, hostname: string, data: Readonly<Record<string, unknown>>): Promise<{ vm: VmRow | null; scope: repo.BackupScope }> {
  if (!own(data, 'hostname')) {
    try {
      const vm = await findVm(ctx.db, caller, hostname);
      return { vm, scope: { dcId: caller.dc.id, vmUuid: vm.uuid } };
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) throw err;
    }
  }
  if (!caller.isAdmin) throw apiError('vmNotFound');
  return { vm: null, scope: { dcId: caller.dc.id, vmHostname: hostname } };
}

/** Danube's filter_disk_id on the backup's array disk id (412 `Invalid disk_id`). */
function diskFilter(raw: unknown, dflt: number | null): number | null {
  if (raw === undefined || raw === null || raw === '') return dflt;
  const n = typeof raw === 'number' ? raw : /^\s*[0-9]+\s*$/.test(String(raw)) ? Number(raw) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > 6) throw apiError('invalidDiskId');
  return n;
}

const ORDER_FIELDS = ['name', 'size', 'time', 'created', 'hostname', 'disk_id'] as const;

/** `GET /vm/<vm>/backup`: names, or objects with `full`; filters disk_id, define; order_by. */
export async function listVmBackups(ctx: AppContext, caller: Caller, hostname: string, data: Readonly<Record<string, unknown>>, onVm: (vm: VmRow) => void) {
  requireBackupsEnabled(caller);
  const { vm, scope } = await vmScope(ctx, caller, hostname, data);
  if (vm) onVm(vm);
  return list(ctx, caller, scope, data, false);
}

/** `GET /node/<node>/backup` (SuperAdmin): every backup on that backup node; `vm` filters by hostname. */
export async function listNodeBackups(ctx: AppContext, caller: Caller, hostname: string, data: Readonly<Record<string, unknown>>) {
  requireBackupsEnabled(caller);
  const node = await ctx.db.selectFrom('node').select('id').where('hostname', '=', hostname).executeTakeFirst();
  // Backups outlive their node row: the hostname they recorded still finds them.
  const scope: repo.BackupScope = node ? { nodeId: node.id } : { nodeHostname: hostname };
  const vmFilter = lastValue(data['vm']);
  const withVm: repo.BackupScope = vmFilter === undefined ? scope : { ...scope, vmHostnameFilter: String(vmFilter) };
  if (!node && (await repo.countBackups(ctx.db, scope)) === 0) throw apiError('nodeNotFound');
  return list(ctx, caller, withVm, data, true);
}

async function list(ctx: AppContext, caller: Caller, scope: repo.BackupScope, data: Readonly<Record<string, unknown>>, nodeView: boolean) {
  const disk = diskFilter(lastValue(data['disk_id']), null);
  const define = lastValue(data['define']);
  const order = parseOrderBy(lastValue(data['order_by']), ORDER_FIELDS, '-created');
  const rows = await repo.listBackups(ctx.db, { ...scope, ...(disk !== null ? { diskId: disk } : {}), ...(define !== undefined ? { define: String(define) } : {}) }, order);
  if (!parseBool(lastValue(data['full'])) && !parseBool(lastValue(data['extended']))) return rows.map((r) => r.name);
  return rows.map((r) => backupObject(r, caller.isAdmin, nodeView));
}

export interface BackupTarget {
  readonly vm: VmRow | null;
  readonly bkp: repo.BackupListRow;
}

/** GET/PUT/DELETE `/vm/<vm>/backup/<bkpname>`: the backup (disk_id default 1), 404 `Backup not found`. */
export async function resolveBackup(ctx: AppContext, caller: Caller, hostname: string, bkpname: string, data: Readonly<Record<string, unknown>>, onVm: (vm: VmRow) => void): Promise<BackupTarget> {
  requireBackupsEnabled(caller);
  const { vm, scope } = await vmScope(ctx, caller, hostname, data);
  if (vm) onVm(vm);
  const diskId = diskFilter(data['disk_id'] ?? lastValue(data['disk_id']), 1)!;
  const bkp = await repo.findBackup(ctx.db, { ...scope, diskId }, bkpname);
  if (!bkp) throw new ApiError(404, BACKUP_NOT_FOUND);
  return { vm, bkp };
}

export function showBackup(caller: Caller, t: BackupTarget): BackupObject {
  return backupObject(t.bkp, caller.isAdmin, false);
}

export async function requireBackupNodeOnline(ctx: AppContext, bkp: BackupRow) {
  const node = await ctx.db.selectFrom('node').selectAll().where('id', '=', bkp.node_id).executeTakeFirst();
  if (!node || node.status !== 2) throw apiError('nodeNotOperational');
  return node;
}

export function apiview(method: string, bkp: { vm_hostname: string; vm_disk_id: number; name: string }, vm: boolean, extra: Record<string, unknown> = {}) {
  return { view: 'vm_backup', method, hostname: bkp.vm_hostname, disk_id: bkp.vm_disk_id, bkpname: bkp.name, vm, ...extra };
}

export function baseDetail(bkp: { vm_hostname: string; name: string; vm_disk_id: number }): Array<readonly [string, unknown]> {
  return [
    ['hostname', bkp.vm_hostname],
    ['bkpname', bkp.name],
    ['disk_id', bkp.vm_disk_id],
  ];
}

export function logObj(vm: VmRow | null, bkp: BackupRow) {
  return vm ? logObject(vm) : { type: 'node', name: bkp.node_hostname, alias: bkp.node_hostname, pk: bkp.node_hostname };
}

/** The rows a restic backup lives by, for the agent. */
export function location(bkp: BackupRow) {
  return { storage: bkp.storage_name, resticId: bkp.restic_id, filename: bkp.file_path };
}

// ---------------------------------------------------------------------------------------------
// Create

export interface BackupCreateContext {
  readonly backupId: number;
  readonly defineId: number;
  readonly vmUuid: string;
  /** What a cleanup after a failure needs (backup.kinds.ts). */
  readonly cleanup?: Extract<BackupPayload, { op: 'backup_cleanup' }>;
  /** A scheduled run's slot (backup_slot), marked failed when the backup fails. */
  readonly slot?: string;
  /** The disk's node when its freeze was announced there: withdrawn at the end. */
  readonly announcedTo?: string;
}

/** POST `/vm/<vm>/backup/<bkpdef>`: a backup of the definition's disk, now. */
export async function createBackup(ctx: AppContext, caller: Caller, hostname: string, bkpdef: string, data: Readonly<Record<string, unknown>>, onVm: (vm: VmRow) => void, auto = false): Promise<string> {
  requireAdmin(caller);
  requireBackupsEnabled(caller);
  const spec = await planCreateBackup(ctx, caller, hostname, bkpdef, data, onVm, auto);
  return ctx.tasks.submit(spec);
}

export async function planCreateBackup(ctx: AppContext, caller: Caller, hostname: string, bkpdef: string, data: Readonly<Record<string, unknown>>, onVm: (vm: VmRow) => void, auto: boolean): Promise<TaskSpec<BackupCreateContext>> {
  const vm = await findVm(ctx.db, caller, hostname);
  onVm(vm);
  const disks = await vmDisks(ctx.db, vm.uuid);
  const disk = resolveDisk(disks, data['disk_id']);
  const define = await ctx.db
    .selectFrom('backup_define as d')
    .innerJoin('node', 'node.id', 'd.node_id')
    .innerJoin('node_storage as ns', 'ns.id', 'd.storage_id')
    .selectAll('d')
    .select(['node.hostname as node_hostname', 'node.status as node_status', 'ns.name as storage_name', 'ns.driver as storage_driver'])
    .where('d.vm_uuid', '=', vm.uuid)
    .where('d.disk_real_id', '=', disk.real_id)
    .where('d.name', '=', bkpdef)
    .executeTakeFirst();
  if (!define) throw new ApiError(404, BKPDEF_NOT_FOUND);
  const diskArrayId = disks.indexOf(disk) + 1;
  const now = ctx.clock.now();
  const name = backupName(define.name, now);
  if (await repo.findBackup(ctx.db, { dcId: vm.dc_id, vmHostname: vm.hostname, diskId: diskArrayId }, name)) throw new ApiError(406, BACKUP_EXISTS);
  const v = validateFields({ name, ...(own(data, 'note') ? { note: data['note'] } : {}) }, {
    name: { kind: 'string', required: true, min: 1, max: 24, pattern: NAME_RE },
    note: { kind: 'string', max: 128, forbidden: NOTE_FORBIDDEN, nullAsEmpty: true },
  });
  if (!v.ok) throw new FailureError(v.errors);
  // Danube's order: the DC size limit, the VM, the backup node.
  const limit = backupSettings(caller.dc).VMS_VM_BACKUP_DC_SIZE_LIMIT;
  if (limit !== null && (await repo.dcBackupSize(ctx.db, vm.dc_id)) >= Number(limit) * 1024 * 1024) throw new ApiError(417, DC_BACKUP_SIZE_LIMIT);
  requireOperational(vm);
  if (define.node_status !== 2) throw apiError('nodeNotOperational');
  if (disk.damaged !== null) throw apiError('diskDamaged');
  const storage = await ctx.db.selectFrom('node_storage').selectAll().where('id', '=', disk.storage_id).executeTakeFirstOrThrow();
  const sourceNode = await ctx.db.selectFrom('node').selectAll().where('id', '=', storage.node_id).executeTakeFirstOrThrow();
  requireNodeOnline(sourceNode);
  const fsfreeze = define.fsfreeze === 1 && vm.qga_socket !== null;
  // Type 1: the newest backup's base snapshot on the source disk makes the next send incremental.
  const newest =
    define.type === 1
      ? await ctx.db
          .selectFrom('backup')
          .select(['base_snapshot', 'file_path'])
          .where('define_id', '=', define.id)
          .where('status', '=', BACKUP_OK)
          .where('base_snapshot', 'is not', null)
          .orderBy('id', 'desc')
          .executeTakeFirst()
      : undefined;
  const base = newest?.base_snapshot ?? null;
  const iso = now.toISOString();
  const tz = auto ? 'a' : 'e';
  return {
    kind: 'backup_create',
    ...vmTask(caller, vm, { id: define.node_id, hostname: define.node_hostname }, tz),
    // The backup reads a snapshot of the disk: snapshot operations on it wait (lock refused).
    locks: [backupLockKey(vm.uuid, disk.real_id), diskLockKey(vm.uuid, disk.real_id)],
    apiview: apiview('POST', { vm_hostname: vm.hostname, vm_disk_id: diskArrayId, name }, true),
    log: {
      msg: LOG_BKP_CREATE,
      detail: logDetail([...baseDetail({ vm_hostname: vm.hostname, name, vm_disk_id: diskArrayId }), ['fsfreeze', fsfreeze]]),
      object: logObject(vm),
    },
    prepare: async (trx, taskId) => {
      const row = await trx
        .insertInto('backup')
        .values({
          dc_id: vm.dc_id,
          vm_uuid: vm.uuid,
          vm_hostname: vm.hostname,
          vm_disk_id: diskArrayId,
          disk_real_id: disk.real_id,
          disk_size_mb: disk.size_mb,
          define_id: define.id,
          name,
          status: BACKUP_PENDING,
          type: define.type,
          node_id: define.node_id,
          node_hostname: define.node_hostname,
          storage_id: define.storage_id,
          storage_name: define.storage_name,
          storage_driver: define.storage_driver,
          source_node_hostname: sourceNode.hostname,
          source_storage_name: storage.name,
          source_storage_driver: storage.driver,
          file_path: '',
          restic_id: null,
          base_snapshot: null,
          checksum: '',
          size: null,
          time: null,
          note: (v.value['note'] as string | undefined) ?? '',
          last: 0,
          fsfreeze: fsfreeze ? 1 : 0,
          task_id: taskId,
          status_change: iso,
          created: iso,
          changed: iso,
        })
        .returning('id')
        .executeTakeFirstOrThrow();
      const socket = fsfreeze && vm.status !== VM_STOPPED && vm.qga_socket ? vm.qga_socket : null;
      // The guest agent's socket is on the disk's node: when that is not the backup node, the
      // freeze of this task is announced to it (before the task reaches the backup node's queue),
      // and its forced command freezes the guest around the snapshot (src/backups/source-snapshot.ts).
      const announcedTo = socket !== null && sourceNode.hostname !== define.node_hostname ? sourceNode.hostname : null;
      if (announcedTo) {
        const until = new Date(Date.parse(iso) + ANNOUNCE_HOURS * 3600_000).toISOString();
        await announceRestore(ctx, announcedTo, { taskId, storage: storage.name, disk: diskRef(vm, disk).path, freezeSocket: socket!, until });
      }
      const freeze = socket !== null ? { socket, ...(announcedTo ? { task: taskId } : {}) } : undefined;
      const payload: BackupPayload = {
        op: 'backup_create',
        backupId: row.id,
        type: define.type,
        source: { node: sourceNode.hostname, storage: storage.name, disk: diskRef(vm, disk) },
        snapshot: `is-${row.id}`,
        storage: define.storage_name,
        filename: resticFilename(row.id),
        tags: ['esnap', `dc:${vm.dc_id}`, `vm:${vm.uuid}`, `bkp:${row.id}`],
        ...(freeze ? { freeze } : {}),
        ...(define.type === 1 ? { base, ...(newest?.file_path ? { baseFile: newest.file_path } : {}) } : {}),
        compression: define.compression,
        bwlimit: define.bwlimit,
      };
      await trx.updateTable('backup').set({ file_path: resticFilename(row.id) }).where('id', '=', row.id).execute();
      const cleanup = { op: 'backup_cleanup', backupId: row.id, type: define.type, source: payload.source, snapshot: payload.snapshot, storage: payload.storage } as const;
      return { payload, context: { backupId: row.id, defineId: define.id, vmUuid: vm.uuid, cleanup, ...(announcedTo ? { announcedTo } : {}) } };
    },
  };
}

/** After a failed or interrupted create, a task on the backup node removes what it left. */
export async function submitCleanup(ctx: AppContext, node: { id: number; hostname: string }, vm: { uuid: string; hostname: string; alias: string; owner_id: number; dc_id: number }, p: NonNullable<BackupCreateContext['cleanup']>): Promise<void> {
  const caller = await systemCaller(ctx, vm.dc_id);
  await ctx.tasks.submit({
    kind: 'backup_cleanup',
    ...vmTask(caller, vm, node, 'a'),
    locks: [],
    apiview: { view: 'vm_backup', method: 'DELETE', hostname: vm.hostname, cleanup: true },
    log: { msg: 'Remove leftovers of a failed backup', detail: logDetail([['hostname', vm.hostname], ['backup_id', p.backupId]]), object: { type: 'vm', name: vm.hostname, alias: vm.alias, pk: vm.uuid } },
    prepare: async () => ({ payload: p, context: {} }),
  });
}

/** The backups a `backup_check` looks for, with what names each in the storage. */
export interface BackupCheckContext {
  readonly items: ReadonlyArray<{ readonly id: number; readonly type: number; readonly resticId: string | null; readonly filename: string }>;
}

/**
 * After a delete that failed or ended uncertain, a task on the backup node looks which of its
 * backups are still stored: those gone leave the database, the others are ok again (backup.kinds.ts).
 * The rows stay pending meanwhile; without a check (none could be started) they are ok again.
 */
export async function submitBackupCheck(ctx: AppContext, ids: readonly number[]): Promise<void> {
  const rows = (await repo.findBackupsById(ctx.db, ids)).filter((r) => r.status === BACKUP_PENDING);
  if (rows.length === 0) return;
  const first = rows[0]!;
  const back = () => ctx.db.updateTable('backup').set({ status: BACKUP_OK, status_change: ctx.clock.now().toISOString() }).where('id', 'in', rows.map((r) => r.id)).where('status', '=', BACKUP_PENDING).execute();
  try {
    const caller = await systemCaller(ctx, first.dc_id);
    const node = { id: first.node_id, hostname: first.node_hostname };
    const vm = first.vm_uuid ? await ctx.db.selectFrom('vm').selectAll().where('uuid', '=', first.vm_uuid).executeTakeFirst() : undefined;
    const payload: BackupPayload = { op: 'backup_check', type: first.type, storage: first.storage_name, resticIds: rows.flatMap((r) => (r.restic_id ? [r.restic_id] : [])), items: rows.map(location) };
    const context: BackupCheckContext = { items: rows.map((r) => ({ id: r.id, type: r.type, resticId: r.restic_id, filename: r.file_path })) };
    await ctx.tasks.submit<BackupCheckContext>({
      kind: 'backup_check',
      ...vmTask(caller, { uuid: first.vm_uuid, owner_id: vm?.owner_id ?? caller.user.id, dc_id: first.dc_id }, node, 'a'),
      locks: [],
      apiview: { view: 'vm_backup_list', method: 'GET', hostname: first.vm_hostname, check: true },
      log: { msg: 'Check backups after a failed delete', detail: logDetail([['hostname', first.vm_hostname], ['bkpnames', rows.map((r) => r.name).join(',')]]), object: logObj(vm ?? null, first) },
      prepare: async () => ({ payload, context }),
    });
  } catch (err) {
    ctx.log.error({ err, backups: rows.map((r) => r.id) }, 'backup check not started: the backups are ok again');
    await back();
  }
}

/**
 * A delete that succeeded after it had been failed (its agent silent past the deadline): its
 * failure's check may have found the backups still there and made them ok; they are checked again.
 * Other tasks are left to the snapshots' re-sync. Part of the cluster's Resync (result.consumer.ts).
 */
export async function recheckLateBackupDeletes(ctx: AppContext, tasks: readonly TaskRow[]): Promise<void> {
  for (const t of tasks) {
    if (t.kind !== 'backup_delete' || !isFinalTaskState(t.state)) continue;
    const ids = (JSON.parse(t.context) as Partial<BackupDeleteContext>).backupIds ?? [];
    if (ids.length === 0) continue;
    await ctx.db.updateTable('backup').set({ status: BACKUP_PENDING, status_change: ctx.clock.now().toISOString() }).where('id', 'in', [...ids]).where('status', '=', BACKUP_OK).execute();
    await submitBackupCheck(ctx, ids);
  }
}

// ---------------------------------------------------------------------------------------------
// Delete

export interface BackupDeleteContext {
  readonly backupIds: readonly number[];
  readonly bulk: boolean;
  readonly detail: string;
}

/** DELETE one backup: a lost one only leaves the database (sync answer), others through a task. */
export async function deleteBackup(ctx: AppContext, caller: Caller, t: BackupTarget): Promise<{ task: string } | { sync: unknown }> {
  requireAdmin(caller);
  return deleteMany(ctx, caller, t.vm, [t.bkp], false);
}

/** DELETE `/vm/<vm>/backup` with `bkpnames` (a non-empty list), disk_id default 1. */
export async function deleteBackups(ctx: AppContext, caller: Caller, hostname: string, data: Readonly<Record<string, unknown>>, onVm: (vm: VmRow) => void) {
  requireAdmin(caller);
  requireBackupsEnabled(caller);
  const { vm, scope } = await vmScope(ctx, caller, hostname, data);
  if (vm) onVm(vm);
  const diskId = diskFilter(data['disk_id'], 1)!;
  const names = data['bkpnames'];
  if (!Array.isArray(names) || names.length === 0 || !names.every((n) => typeof n === 'string')) throw new FailureError(INVALID_BKPNAMES, 400);
  const rows = await repo.findBackups(ctx.db, { ...scope, diskId }, names as string[]);
  if (rows.length === 0) throw new ApiError(404, BACKUP_NOT_FOUND);
  const first = rows[0]!;
  if (rows.some((r) => r.node_id !== first.node_id || r.vm_uuid !== first.vm_uuid || r.storage_id !== first.storage_id)) throw new FailureError(INVALID_BKPNAMES, 400);
  return deleteMany(ctx, caller, vm, rows, true);
}

/** Retention's delete: the rows by id (one VM disk, one storage), as one bulk delete task. */
export async function deleteBackupRows(ctx: AppContext, caller: Caller, ids: readonly number[]): Promise<void> {
  const rows = await repo.findBackupsById(ctx.db, ids);
  if (rows.length === 0) return;
  const vm = rows[0]!.vm_uuid ? ((await ctx.db.selectFrom('vm').selectAll().where('uuid', '=', rows[0]!.vm_uuid).executeTakeFirst()) ?? null) : null;
  await deleteMany(ctx, caller, vm, rows, true, 'a');
}

async function deleteMany(ctx: AppContext, caller: Caller, vm: VmRow | null, rows: readonly repo.BackupListRow[], bulk: boolean, tt: 'e' | 'a' = 'e'): Promise<{ task: string } | { sync: unknown }> {
  const first = rows[0]!;
  const lost = rows.filter((r) => r.status === BACKUP_LOST);
  const rest = rows.filter((r) => r.status !== BACKUP_LOST);
  if (rest.some((r) => r.status !== BACKUP_OK && r.status !== BACKUP_DAMAGED)) throw new ApiError(417, BACKUP_STATUS_NOT_OK);
  const node = await requireBackupNodeOnline(ctx, first);
  if (vm) requireOperational(vm);
  const names = (rs: readonly BackupRow[]) => rs.map((r) => r.name).join(',');
  if (lost.length > 0) {
    await ctx.db.deleteFrom('backup').where('id', 'in', lost.map((r) => r.id)).execute();
    if (rest.length === 0) return { sync: { message: bulk ? 'Backups successfully deleted from DB' : 'Backup successfully deleted from DB' } };
  }
  const resticIds = rest.flatMap((r) => (r.restic_id ? [r.restic_id] : []));
  const detail = bulk ? logDetail([['hostname', first.vm_hostname], ['bkpnames', names(rest)], ['disk_id', first.vm_disk_id]]) : logDetail(baseDetail(first));
  const now = ctx.clock.now().toISOString();
  return {
    task: await ctx.tasks.submit<BackupDeleteContext>({
      kind: 'backup_delete',
      ...vmTask(caller, { uuid: first.vm_uuid, owner_id: vm?.owner_id ?? caller.user.id, dc_id: first.dc_id }, node, tt),
      locks: [backupLockKey(first.vm_uuid ?? first.vm_hostname, first.disk_real_id)],
      apiview: bulk
        ? { view: 'vm_backup_list', method: 'DELETE', hostname: first.vm_hostname, disk_id: first.vm_disk_id, bkpnames: rest.map((r) => r.name), vm: first.vm_uuid !== null }
        : apiview('DELETE', first, first.vm_uuid !== null),
      log: { msg: bulk ? LOG_BKPS_DELETE : LOG_BKP_DELETE, detail, object: logObj(vm, first) },
      prepare: async (trx: Transaction<Database>) => {
        await trx.updateTable('backup').set({ status: BACKUP_PENDING, status_change: now }).where('id', 'in', rest.map((r) => r.id)).execute();
        const payload: BackupPayload = { op: 'backup_delete', type: first.type, storage: first.storage_name, resticIds, items: rest.map(location) };
        return { payload, context: { backupIds: rest.map((r) => r.id), bulk, detail } };
      },
    }),
  };
}
