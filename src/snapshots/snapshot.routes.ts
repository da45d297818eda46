/** HTTP views of snapshots (spec 4.4, 4.5, 4.7): lookups and check order here, rules in the services. */
import type { FastAnswer, FastRequest, ViewDef, ViewRequest, ViewResult } from '../http/view.js';
import { apiError, validationFailed } from '../domain/errors.js';
import { parseBool, parseIntField } from '../domain/validate.js';
import { parseOrderBy } from '../domain/order-by.js';
import { requireSuperAdmin } from '../accounts/caller.js';
import {
  findVm,
  vmDisks,
  resolveDisk,
  requireNodeOnline,
  requireOperational,
  requireSnapshotsEnabled,
  vmNode,
} from '../vms/vm.lookup.js';
import { findNode, findStorage } from '../nodes/node.repository.js';
import { findSnapshot, listSnapshots, type ListFilter, type SortField } from './snapshot.repository.js';
import { snapshotObject } from './snapshot.output.js';
import { listVmSnapshotsJson, lookupAndListSnapshots } from './snapshot.list-json.js';
import { callerFromLookup } from '../accounts/caller-lookup.js';
import { hashKey } from '../accounts/secrets.js';
import { dcSettings } from '../accounts/dc.settings.js';
import { loadStorageAndNode, type DiskTarget } from './snapshot.context.js';
import { bulkDelete, createSnapshot, deleteSnapshot, updateSnapshotFields } from './snapshot.service.js';
import { rollbackSnapshot } from './snapshot.rollback.js';
import { submitNodeSync, submitVmSync } from './snapshot.sync.js';
import type { VmDiskRow, VmRow } from '../db/schema.js';

const PATH_SEGMENT_RE = /^[A-Za-z0-9._-]+$/;
// In the order Danube's 412 message lists them.
const SORT_FIELDS: readonly SortField[] = ['hostname', 'created', 'name', 'disk_id', 'size'];

function pathParam(req: ViewRequest, name: string): string {
  const v = req.params[name] ?? '';
  // Danube's URL patterns only match these characters; anything else is an unknown URL.
  if (!PATH_SEGMENT_RE.test(v)) throw apiError('notFound');
  return v;
}

/** Module switch and VM lookup (with the node check for the methods that need it), then its disks. */
async function vmOf(req: ViewRequest, opts: { nodeCheck: boolean }): Promise<{ vm: VmRow; disks: VmDiskRow[] }> {
  requireSnapshotsEnabled(req.caller);
  const vm = await findVm(req.app.db, req.caller, pathParam(req, 'hostname_or_uuid'));
  req.ownerId = vm.owner_id;
  if (opts.nodeCheck) requireNodeOnline(await vmNode(req.app.db, vm));
  return { vm, disks: await vmDisks(req.app.db, vm.uuid) };
}

/** The VM and the disk named by `disk_id` (412 when there is none). */
async function target(req: ViewRequest, opts: { nodeCheck: boolean }): Promise<DiskTarget> {
  const { vm, disks } = await vmOf(req, opts);
  const disk = resolveDisk(disks, req.data['disk_id']);
  const { storage, node } = await loadStorageAndNode(req.app.db, disk);
  return { vm, disks, disk, diskArrayId: disks.indexOf(disk) + 1, storage, node };
}

/** Every disk of the VM as targets; a VM without disks has no valid disk_id (412). */
async function allDisks(req: ViewRequest): Promise<DiskTarget[]> {
  const { vm, disks } = await vmOf(req, { nodeCheck: true });
  if (disks.length === 0) throw apiError('invalidDiskId');
  const out: DiskTarget[] = [];
  for (const [i, disk] of disks.entries()) {
    const sn = await loadStorageAndNode(req.app.db, disk);
    out.push({ vm, disks, disk, diskArrayId: i + 1, ...sn });
  }
  return out;
}

function listFilter(req: Pick<ViewRequest, 'data'>, base: ListFilter, disks: readonly VmDiskRow[] | null): ListFilter {
  const f: ListFilter = { ...base };
  const type = req.data['type'];
  if (type !== undefined && type !== '' && type !== null) {
    const n = parseIntField(type);
    if (n !== 1 && n !== 2) throw apiError('invalidSnapshotType');
    f.type = n;
  }
  // Danube: an empty `define` is no filter; an empty `disk_id` is still 412 `Invalid disk_id`.
  if (typeof req.data['define'] === 'string' && req.data['define'] !== '') f.define = req.data['define'];
  if (req.data['disk_id'] !== undefined && disks) f.diskRealId = resolveDisk(disks, req.data['disk_id']).real_id;
  return f;
}

function wantsObjects(req: Pick<ViewRequest, 'data'>): boolean {
  return parseBool(req.data['full'] ?? false) || parseBool(req.data['extended'] ?? false);
}

function taskOrSync(r: { kind: 'task'; taskId: string } | { kind: 'sync'; result: unknown }): ViewResult {
  return r.kind === 'task' ? { type: 'task', taskId: r.taskId } : { type: 'sync', result: r.result };
}

/**
 * The list in one statement on PostgreSQL, two on SQLite (issue 17): the API key's user, the DC,
 * the VM and the list together, the checks applied to what came back in the general path's order
 * (authentication, DC, module switch, VM). Requests this does not cover take the general path:
 * another credential, a `disk_id` filter (the disks decide its 412), a `type` or `order_by` the
 * general path refuses (412 after the VM's 404), an `order_by` of more than one field.
 */
async function fastList(req: FastRequest): Promise<FastAnswer | null> {
  const apiKey = req.http.headers['es-api-key'];
  if (typeof apiKey !== 'string' || apiKey === '' || req.data['disk_id'] !== undefined) return null;
  const hostnameOrUuid = req.params['hostname_or_uuid'] ?? '';
  if (!PATH_SEGMENT_RE.test(hostnameOrUuid)) return null;
  let filter: ListFilter;
  let sort: ReturnType<typeof parseOrderBy<SortField>>;
  try {
    filter = listFilter(req, { vmUuid: '' }, null);
    sort = parseOrderBy(req.data['order_by'], SORT_FIELDS, '-created');
  } catch {
    return null;
  }
  if (sort.length > 1) return null;
  const r = await lookupAndListSnapshots(req.app.db, {
    keyHash: hashKey(apiKey),
    dcName: req.dcName,
    vm: hostnameOrUuid,
    filter: { ...(filter.type !== undefined ? { type: filter.type } : {}), ...(filter.define !== undefined ? { define: filter.define } : {}) },
    sort,
    full: wantsObjects(req),
  });
  const caller = callerFromLookup(r.row, req.dcName !== undefined);
  if (!caller) return null;
  if (!dcSettings(caller.dc).VMS_VM_SNAPSHOT_ENABLED) return { caller, ownerId: null, result: apiError('notFound') };
  if (!r.vm) return { caller, ownerId: null, result: apiError('vmNotFound') };
  return { caller, ownerId: r.vm.ownerId, result: { type: 'sync', result: await r.list() } };
}

const vmSnapshotList: ViewDef = {
  path: '/vm/:hostname_or_uuid/snapshot',
  name: 'vm_snapshot_list',
  description: "List (GET), synchronize (PUT) or delete (DELETE) snapshots of a VM's disk.",
  dcBound: true,
  fastGet: fastList,
  methods: {
    async GET(req) {
      // The hot path (issue 17): the disks are read only to resolve a `disk_id` filter; the list's
      // own disk ids and the JSON come from one statement (snapshot.list-json.ts).
      requireSnapshotsEnabled(req.caller);
      const vm = await findVm(req.app.db, req.caller, pathParam(req, 'hostname_or_uuid'));
      req.ownerId = vm.owner_id;
      const disks = req.data['disk_id'] !== undefined ? await vmDisks(req.app.db, vm.uuid) : null;
      const filter = listFilter(req, { vmUuid: vm.uuid }, disks);
      const sort = parseOrderBy(req.data['order_by'], SORT_FIELDS, '-created');
      return { type: 'sync', result: await listVmSnapshotsJson(req.app.db, vm, { ...filter, vmUuid: vm.uuid }, sort, wantsObjects(req)) };
    },
    async PUT(req) {
      const t = await target(req, { nodeCheck: true });
      requireOperational(t.vm);
      return { type: 'task', taskId: await submitVmSync(req.app, req.caller, t) };
    },
    async DELETE(req) {
      const t = await target(req, { nodeCheck: true });
      const names = req.data['snapnames'];
      if (!Array.isArray(names) || names.length === 0) throw apiError('invalidSnapnames');
      // The VM status check comes after the name matching (spec 4.4 order); bulkDelete does both.
      return taskOrSync(await bulkDelete(req.app, req.caller, t, names));
    },
  },
};

const vmSnapshot: ViewDef = {
  path: '/vm/:hostname_or_uuid/snapshot/:snapname',
  name: 'vm_snapshot',
  description: 'Show (GET), create (POST), roll back, restore or update the note of (PUT), or delete (DELETE) a snapshot.',
  dcBound: true,
  methods: {
    async GET(req) {
      const t = await target(req, { nodeCheck: false });
      const snap = await findSnapshot(req.app.db, t.vm.uuid, t.disk.real_id, pathParam(req, 'snapname'));
      if (!snap) throw apiError('snapshotNotFound');
      return { type: 'sync', result: snapshotObject(snap, t.disks) };
    },
    async POST(req) {
      // esnap's `disk_id: "all"`: every disk of the VM under one name, in one task.
      const all = req.data['disk_id'] === 'all';
      const targets = all ? await allDisks(req) : [await target(req, { nodeCheck: true })];
      const t = targets[0]!;
      const name = pathParam(req, 'snapname');
      for (const x of targets) if (await findSnapshot(req.app.db, x.vm.uuid, x.disk.real_id, name)) throw apiError('snapshotExists');
      requireOperational(t.vm);
      if (req.invalidBody) throw validationFailed({ non_field_errors: ['Invalid data'] });
      const taskId = await createSnapshot(req.app, req.caller, targets, {
        name,
        note: req.data['note'],
        fsfreeze: req.data['fsfreeze'],
        diskIdRaw: req.data['disk_id'],
        allDisks: all,
      });
      return { type: 'task', taskId };
    },
    async PUT(req) {
      const t = await target(req, { nodeCheck: false });
      const snap = await findSnapshot(req.app.db, t.vm.uuid, t.disk.real_id, pathParam(req, 'snapname'));
      if (!snap) throw apiError('snapshotNotFound');
      if (req.invalidBody) throw validationFailed({ non_field_errors: ['Invalid data'] });
      if ('note' in req.data || 'pinned' in req.data) {
        // A DELETE may complete between any two of these statements: a row gone at the update
        // or at the re-read is the same 404 as one gone before the request.
        const updated = await updateSnapshotFields(req.app, snap, req.data);
        const fresh = updated ? await findSnapshot(req.app.db, t.vm.uuid, t.disk.real_id, snap.name) : undefined;
        if (!fresh) throw apiError('snapshotNotFound');
        return { type: 'sync', result: snapshotObject(fresh, t.disks) };
      }
      return { type: 'task', taskId: await rollbackSnapshot(req.app, req.caller, t, snap, req.data) };
    },
    async DELETE(req) {
      const t = await target(req, { nodeCheck: true });
      const snap = await findSnapshot(req.app.db, t.vm.uuid, t.disk.real_id, pathParam(req, 'snapname'));
      if (!snap) throw apiError('snapshotNotFound');
      requireOperational(t.vm);
      return taskOrSync(await deleteSnapshot(req.app, req.caller, t, snap));
    },
  },
};

const nodeStorageSnapshot: ViewDef = {
  path: '/node/:hostname/storage/:zpool/snapshot',
  name: 'node_vm_snapshot_list',
  description: 'List (GET) or synchronize (PUT) the snapshots on a node storage.',
  dcBound: false,
  methods: {
    async GET(req) {
      requireSuperAdmin(req.caller);
      const { storage } = await nodeStorage(req);
      const filter: ListFilter = { storageId: storage.id };
      if (typeof req.data['vm'] === 'string' && req.data['vm'] !== '') filter.hostname = req.data['vm'];
      const f = listFilter(req, filter, null);
      const sort = parseOrderBy(req.data['order_by'], SORT_FIELDS, '-created');
      let rows = await listSnapshots(req.app.db, f, sort);
      const diskCache = new Map<string, VmDiskRow[]>();
      const disksOf = async (uuid: string): Promise<VmDiskRow[]> => {
        let d = diskCache.get(uuid);
        if (!d) {
          d = await vmDisks(req.app.db, uuid);
          diskCache.set(uuid, d);
        }
        return d;
      };
      if (req.data['disk_id'] !== undefined) {
        // esnap filters by the array disk id of each snapshot's VM (Danube answered 500 here).
        const n = parseIntField(req.data['disk_id']);
        if (n === null || n < 1) throw apiError('invalidDiskId');
        const kept = [];
        for (const r of rows) {
          const disks = await disksOf(r.vm_uuid);
          if (disks[n - 1]?.real_id === r.disk_real_id) kept.push(r);
        }
        rows = kept;
      }
      if (!wantsObjects(req)) return { type: 'sync', result: rows.map((r) => r.name) };
      const out = [];
      for (const r of rows) out.push(snapshotObject(r, await disksOf(r.vm_uuid)));
      return { type: 'sync', result: out };
    },
    async PUT(req) {
      requireSuperAdmin(req.caller);
      const { node, storage } = await nodeStorage(req);
      requireNodeOnline(node);
      return { type: 'task', taskId: await submitNodeSync(req.app, req.caller, node, storage) };
    },
  },
};

async function nodeStorage(req: ViewRequest) {
  const node = await findNode(req.app.db, req.params['hostname'] ?? '');
  const storage = node ? await findStorage(req.app.db, node.id, req.params['zpool'] ?? '') : undefined;
  if (!node || !storage) throw apiError('storageNotFound');
  return { node, storage };
}

export const snapshotViews: ViewDef[] = [vmSnapshotList, vmSnapshot, nodeStorageSnapshot];
