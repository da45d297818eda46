/**
 * HTTP views of backups (Danube's vm_backup_list, vm_backup, node's backup list): reading is open
 * to VM owners, writes need an Admin of the DC, the node list a SuperAdmin. Rules live in
 * backup.service.ts.
 */
import type { ViewDef, ViewRequest, ViewResult } from '../http/view.js';
import { requireAdmin, requireSuperAdmin } from '../accounts/caller.js';
import { FailureError } from '../domain/errors.js';
import { msg } from '../domain/messages.js';
import type { VmRow } from '../db/schema.js';
import { createBackup, deleteBackup, deleteBackups, listNodeBackups, listVmBackups, resolveBackup, showBackup } from './backup.service.js';
import { putBackup } from './backup.put.js';

const setOwner = (req: ViewRequest) => (vm: VmRow) => {
  req.ownerId = vm.owner_id;
};

const sync = (result: unknown, status?: number): ViewResult => (status === undefined ? { type: 'sync', result } : { type: 'sync', result, status });
const task = (taskId: string): ViewResult => ({ type: 'task', taskId });

function writeCheck(req: ViewRequest): void {
  requireAdmin(req.caller);
  if (req.invalidBody) throw new FailureError({ non_field_errors: [msg.invalidData] });
}

const target = (req: ViewRequest) =>
  resolveBackup(req.app, req.caller, req.params['hostname_or_uuid'] ?? '', req.params['bkpname'] ?? '', req.data, setOwner(req));

export const backupViews: ViewDef[] = [
  {
    path: '/vm/:hostname_or_uuid/backup',
    name: 'vm_backup_list',
    description:
      "List a VM's backups (GET; the VM's original hostname also finds the backups of a deleted VM): full, disk_id, define, " +
      'order_by (name, size, time, created, hostname, disk_id; default -created). Delete several (DELETE, Admin): bkpnames (a list), disk_id.',
    dcBound: true,
    methods: {
      GET: async (req) => sync(await listVmBackups(req.app, req.caller, req.params['hostname_or_uuid'] ?? '', req.data, setOwner(req))),
      DELETE: async (req) => {
        writeCheck(req);
        const r = await deleteBackups(req.app, req.caller, req.params['hostname_or_uuid'] ?? '', req.data, setOwner(req));
        return 'task' in r ? task(r.task) : sync(r.sync);
      },
    },
  },
  {
    path: '/vm/:hostname_or_uuid/backup/:bkpname',
    name: 'vm_backup',
    description:
      'Show (GET) a backup; create one now from a backup definition (POST /vm/<vm>/backup/<bkpdef>, named <bkpdef>-YYYYmmdd_HHMMSS UTC; ' +
      'disk_id, note); PUT: {"verify": true} re-reads the backup and compares its SHA-256 (status 5 damaged when it differs), ' +
      'only note: changes the note, otherwise a restore into a stopped VM (target_hostname_or_uuid, target_disk_id, force); ' +
      'DELETE removes it. Writes need an Admin.',
    dcBound: true,
    methods: {
      GET: async (req) => sync(showBackup(req.caller, await target(req))),
      POST: async (req) => {
        writeCheck(req);
        return task(await createBackup(req.app, req.caller, req.params['hostname_or_uuid'] ?? '', req.params['bkpname'] ?? '', req.data, setOwner(req)));
      },
      PUT: async (req) => {
        writeCheck(req);
        const r = await putBackup(req.app, req.caller, await target(req), req.data);
        return 'task' in r ? task(r.task) : sync(r.sync);
      },
      DELETE: async (req) => {
        writeCheck(req);
        const r = await deleteBackup(req.app, req.caller, await target(req));
        return 'task' in r ? task(r.task) : sync(r.sync);
      },
    },
  },
  {
    path: '/node/:hostname/backup',
    name: 'node_vm_backup_list',
    description: 'List the backups on a backup node (SuperAdmin): full, vm (a hostname; empty: backups of deleted VMs), disk_id, define, order_by.',
    dcBound: false,
    methods: {
      GET: async (req) => {
        requireSuperAdmin(req.caller);
        return sync(await listNodeBackups(req.app, req.caller, req.params['hostname'] ?? '', req.data));
      },
    },
  },
];
