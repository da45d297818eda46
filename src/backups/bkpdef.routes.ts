/**
 * HTTP views of backup definitions (Danube's api/vm/backup/views.py and api/node/backup/views.py):
 * reading is open to VM owners, writes need an Admin of the DC (IsAdminOrReadOnly), the node
 * list a SuperAdmin. Rules and check order live in the service.
 */
import type { ViewDef, ViewRequest, ViewResult } from '../http/view.js';
import { requireAdmin, requireSuperAdmin } from '../accounts/caller.js';
import { FailureError } from '../domain/errors.js';
import { msg } from '../domain/messages.js';
import type { VmRow } from '../db/schema.js';
import {
  createBkpDef,
  deleteBkpDef,
  listAllBkpDefs,
  listNodeBkpDefs,
  listVmBkpDefs,
  resolveBkpDefTarget,
  showBkpDef,
  updateBkpDef,
} from './bkpdef.service.js';

const setOwner = (req: ViewRequest) => (vm: VmRow) => {
  req.ownerId = vm.owner_id;
};

async function target(req: ViewRequest) {
  if (req.method !== 'GET') requireAdmin(req.caller);
  const t = await resolveBkpDefTarget(
    req.app,
    req.caller,
    req.method,
    req.params['hostname_or_uuid'] ?? '',
    req.params['bkpdef'] ?? '',
    req.data,
    setOwner(req),
  );
  if (req.method !== 'GET' && req.invalidBody) throw new FailureError({ non_field_errors: [msg.invalidData] });
  return t;
}

const sync = (result: unknown, status?: number): ViewResult =>
  status === undefined ? { type: 'sync', result } : { type: 'sync', result, status };

const LIST_PARAMS = 'Parameters: full, extended (adds the backup count), order_by (name, disk_id, hostname, created; default hostname,-created).';

export const backupDefineViews: ViewDef[] = [
  {
    path: '/vm/define/backup',
    name: 'vm_define_backup_list_all',
    description: `List all backup definitions of all VMs in the datacenter (Admins see every VM, others their own). ${LIST_PARAMS}`,
    dcBound: true,
    methods: { GET: async (req) => sync(await listAllBkpDefs(req.app, req.caller, req.data)) },
  },
  {
    path: '/vm/:hostname_or_uuid/define/backup',
    name: 'vm_define_backup_list',
    description: `List a VM's backup definitions. ${LIST_PARAMS} disk_id filters by disk.`,
    dcBound: true,
    methods: {
      GET: async (req) => sync(await listVmBkpDefs(req.app, req.caller, req.params['hostname_or_uuid'] ?? '', req.data, setOwner(req))),
    },
  },
  {
    path: '/vm/:hostname_or_uuid/define/backup/:bkpdef',
    name: 'vm_define_backup',
    description:
      'Show (GET), create (POST), update (PUT) or delete (DELETE) a backup definition of a VM disk. Fields: disk_id ' +
      '(default 1), type (1 dataset: native zfs/btrfs send to a storage of the same driver, 2 file: restic; default 1, ' +
      'fixed after creation), node (a backup node), zpool (a storage of that node), schedule, retention, active, ' +
      "compression (0-3), bwlimit, desc, fsfreeze, and esnap's tz and catchup (default true: after downtime the most recent missed slot still fires once; false: a late slot is skipped). Non-admins see node as null. Writes need an Admin.",
    dcBound: true,
    methods: {
      GET: async (req) => sync(showBkpDef(req.caller, await target(req), req.data)),
      POST: async (req) => sync(await createBkpDef(req.app, req.caller, await target(req), req.params['bkpdef'] ?? '', req.data), 201),
      PUT: async (req) => sync(await updateBkpDef(req.app, req.caller, await target(req), req.data)),
      DELETE: async (req) => sync(await deleteBkpDef(req.app, req.caller, await target(req))),
    },
  },
  {
    path: '/node/:hostname/define/backup',
    name: 'node_vm_define_backup_list',
    description: `List the backup definitions targeted at a backup node (SuperAdmin). ${LIST_PARAMS}`,
    dcBound: false,
    methods: {
      GET: async (req) => {
        requireSuperAdmin(req.caller);
        return sync(await listNodeBkpDefs(req.app, req.caller, req.params['hostname'] ?? '', req.data));
      },
    },
  },
];
