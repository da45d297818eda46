/**
 * HTTP views of snapshot definitions (spec 4.1–4.3). Rules and check order live in the service;
 * here only the permission step (4.3 step 1), the body shape and the answer's status.
 */
import type { ViewDef, ViewRequest, ViewResult } from '../http/view.js';
import { requireAdmin } from '../accounts/caller.js';
import { FailureError } from '../domain/errors.js';
import { msg } from '../domain/messages.js';
import type { VmRow } from '../db/schema.js';
import {
  createDefine,
  deleteDefinition,
  resolveTarget,
  showDefine,
  updateDefinition,
} from './define.service.js';
import { previewDefinition, runDefinitionNow } from './define.run.js';
import { listAllDefines, listVmDefines } from './define.list.js';

function setOwner(req: ViewRequest): (vm: VmRow) => void {
  return (vm) => {
    req.ownerId = vm.owner_id;
  };
}

function requireObjectBody(req: ViewRequest): void {
  if (req.invalidBody) throw new FailureError({ non_field_errors: [msg.invalidData] });
}

/** `as` is the method whose checks apply (run now is checked as a write, like PUT). */
async function target(req: ViewRequest, as: ViewRequest['method'] = req.method) {
  // Step 1: reading is open to every VM owner; writes need an Admin of the DC.
  if (as !== 'GET') requireAdmin(req.caller);
  const t = await resolveTarget(
    req.app,
    req.caller,
    as,
    req.params['hostname_or_uuid'] ?? '',
    req.params['snapdef'] ?? '',
    req.data,
    setOwner(req),
  );
  if (as !== 'GET') requireObjectBody(req);
  return t;
}

const sync = (result: unknown, status?: number): ViewResult =>
  status === undefined ? { type: 'sync', result } : { type: 'sync', result, status };

export const defineViews: ViewDef[] = [
  {
    path: '/vm/define/snapshot',
    name: 'vm_define_snapshot_list_all',
    description:
      'List all snapshot definitions of all VMs in the datacenter (Admins see every VM, others their own). ' +
      'Parameters: full, extended (adds the snapshot count), order_by (name, disk_id, hostname, created; ' +
      'default hostname,-created).',
    dcBound: true,
    methods: {
      GET: async (req) => sync(await listAllDefines(req.app, req.caller, req.data)),
    },
  },
  {
    path: '/vm/:hostname_or_uuid/define/snapshot',
    name: 'vm_define_snapshot_list',
    description:
      "List a VM's snapshot definitions. Parameters: full, extended (adds the snapshot count), disk_id (filter), " +
      'order_by (name, disk_id, hostname, created; default hostname,-created).',
    dcBound: true,
    methods: {
      GET: async (req) => sync(await listVmDefines(req.app, req.caller, req.params['hostname_or_uuid'] ?? '', req.data, setOwner(req))),
    },
  },
  {
    path: '/vm/:hostname_or_uuid/define/snapshot/:snapdef',
    name: 'vm_define_snapshot',
    description:
      'Show (GET), create (POST), update (PUT) or delete (DELETE) a snapshot definition of a VM disk. ' +
      'Fields: disk_id (default 1), schedule (5-field cron), retention, active, desc, fsfreeze, and esnap\'s ' +
      'tz (IANA zone, default UTC), catchup (default true), retention_days. Predefined names hourly, daily, ' +
      'weekly and monthly get default schedules and retentions. Writes need an Admin.',
    dcBound: true,
    methods: {
      GET: async (req) => sync(showDefine(await target(req), req.data)),
      POST: async (req) => {
        const t = await target(req);
        return sync(await createDefine(req.app, req.caller, t, req.params['snapdef'] ?? '', req.data), 201);
      },
      PUT: async (req) => {
        const t = await target(req);
        return sync(await updateDefinition(req.app, req.caller, t, req.data));
      },
      DELETE: async (req) => {
        const t = await target(req);
        return sync(await deleteDefinition(req.app, req.caller, t));
      },
    },
  },
  {
    path: '/vm/:hostname_or_uuid/define/snapshot/:snapdef/run',
    name: 'vm_define_snapshot_run',
    description:
      "Start the definition's automatic snapshot now (POST): same naming (<define>-YYYYmmdd_HHMMSS, UTC), " +
      'checks, task and retention as a scheduled run, as the calling user. Parameter: disk_id (default 1). ' +
      'A busy disk answers 400 "Task did not acquire lock" at once. Needs an Admin.',
    dcBound: true,
    methods: {
      POST: async (req) => {
        const t = await target(req, 'PUT');
        return { type: 'task', taskId: await runDefinitionNow(req.app, req.caller, t) };
      },
    },
  },
  {
    path: '/vm/:hostname_or_uuid/define/snapshot/:snapdef/preview',
    name: 'vm_define_snapshot_preview',
    description:
      'Preview a definition (GET): its next five runs in UTC and in its time zone, and the snapshots retention ' +
      'would delete now. Parameters: disk_id (default 1), and schedule, tz, retention, retention_days to preview ' +
      'a change before making it.',
    dcBound: true,
    methods: {
      GET: async (req) => sync(await previewDefinition(req.app, req.caller, await target(req), req.data)),
    },
  },
];
