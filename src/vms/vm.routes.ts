/**
 * HTTP views of the VM registry (DC-bound): VM list, define, disks and the recorded status. Check
 * order everywhere: permission (403), VM lookup (404, owners only unless Admin), disk_id (412),
 * body shape and fields (400), then state (406/409/417/423). Rules live in the services.
 */
import type { ViewDef, ViewRequest, ViewResult } from '../http/view.js';
import { requireAdmin } from '../accounts/caller.js';
import { FailureError } from '../domain/errors.js';
import { msg } from '../domain/messages.js';
import { parseBool } from '../domain/validate.js';
import type { VmRow } from '../db/schema.js';
import { findVm } from './vm.lookup.js';
import { listVms, vmRefs } from './vm.repository.js';
import { vmObject } from './vm.output.js';
import { createVm, deleteVm, setVmStatus, updateVm, vmStatus, vmView } from './vm.service.js';
import { createDisk, createdDisk, deleteDisk, getDisk, listDisks, updateDisk } from './disk.service.js';
import { submitPower } from './vm.power.js';
import { refuseLibvirtDiskChange, refuseLibvirtDiskDelete, refuseLibvirtVmDelete } from './libvirt.guards.js';

export { registerVmKinds } from './vm.kinds.js';

async function lookup(req: ViewRequest): Promise<VmRow> {
  const vm = await findVm(req.app.db, req.caller, req.params['hostname_or_uuid'] ?? '');
  req.ownerId = vm.owner_id;
  return vm;
}

/** Spec 6.1: a JSON body that is not an object. */
function requireObjectBody(req: ViewRequest): void {
  if (req.invalidBody) throw new FailureError({ non_field_errors: [msg.invalidData] });
}

const vmList: ViewDef = {
  path: '/vm',
  name: 'vm_list',
  description: 'List VMs of the DC (hostnames; objects with full=true). Admins see every VM, others their own.',
  dcBound: true,
  methods: {
    async GET(req) {
      const vms = await listVms(req.app.db, req.caller.dc.id, req.caller.isAdmin ? null : req.caller.user.id);
      if (!parseBool(req.data['full'] ?? false)) return { type: 'sync', result: vms.map((v) => v.hostname) };
      const refs = await vmRefs(req.app.db, vms);
      return { type: 'sync', result: vms.map((v) => vmObject(v, refs)) };
    },
  },
};

const vmDefine: ViewDef = {
  path: '/vm/:hostname_or_uuid/define',
  name: 'vm_define',
  description:
    'Show (GET), create (POST), update (PUT) or delete (DELETE) a VM definition. Deleting a VM destroys its disk images and snapshots.',
  dcBound: true,
  methods: {
    async GET(req) {
      return { type: 'sync', result: await vmView(req.app, await lookup(req)) };
    },
    async POST(req) {
      requireAdmin(req.caller);
      requireObjectBody(req);
      const vm = await createVm(req.app, req.caller, req.params['hostname_or_uuid'] ?? '', req.data);
      return { type: 'sync', result: vm, status: 201 };
    },
    async PUT(req) {
      requireAdmin(req.caller);
      const vm = await lookup(req);
      requireObjectBody(req);
      return { type: 'sync', result: await updateVm(req.app, req.caller, vm, req.data) };
    },
    async DELETE(req) {
      requireAdmin(req.caller);
      const vm = await lookup(req);
      refuseLibvirtVmDelete(vm);
      const out = await deleteVm(req.app, req.caller, vm);
      return out.kind === 'task' ? { type: 'task', taskId: out.taskId } : { type: 'sync', result: null };
    },
  },
};

const vmDiskList: ViewDef = {
  path: '/vm/:hostname_or_uuid/define/disk',
  name: 'vm_define_disk_list',
  description: 'List the disks of a VM.',
  dcBound: true,
  methods: {
    async GET(req) {
      return { type: 'sync', result: await listDisks(req.app, await lookup(req), req.caller.isSuperAdmin) };
    },
  },
};

const vmDisk: ViewDef = {
  path: '/vm/:hostname_or_uuid/define/disk/:disk_id',
  name: 'vm_define_disk',
  description:
    'Show (GET), create (POST; the image is created on storage before the answer), update (PUT) or delete (DELETE, with its snapshots) a VM disk.',
  dcBound: true,
  methods: {
    async GET(req) {
      return { type: 'sync', result: await getDisk(req.app, await lookup(req), req.params['disk_id'], req.caller.isSuperAdmin) };
    },
    async POST(req): Promise<ViewResult> {
      requireAdmin(req.caller);
      const vm = await lookup(req);
      refuseLibvirtDiskChange(vm);
      requireObjectBody(req);
      const created = await createDisk(req.app, req.caller, vm, req.params['disk_id'], req.data);
      // The answer is the disk once the image exists; a task still running at the stream timeout answers pending.
      const status = await req.waitForTask(created.taskId);
      if (!status) return { type: 'task', taskId: created.taskId };
      return { type: 'sync', result: await createdDisk(req.app, vm, created, status), status: 201 };
    },
    async PUT(req) {
      requireAdmin(req.caller);
      const vm = await lookup(req);
      refuseLibvirtDiskChange(vm);
      requireObjectBody(req);
      return { type: 'sync', result: await updateDisk(req.app, vm, req.params['disk_id'], req.data) };
    },
    async DELETE(req) {
      requireAdmin(req.caller);
      const vm = await lookup(req);
      await refuseLibvirtDiskDelete(req.app.db, vm, req.params['disk_id']);
      return { type: 'task', taskId: await deleteDisk(req.app, req.caller, vm, req.params['disk_id']) };
    },
  },
};

const vmStatusView: ViewDef = {
  path: '/vm/:hostname_or_uuid/status',
  name: 'vm_status',
  description: 'Show the recorded status of a VM and its running tasks.',
  dcBound: true,
  methods: {
    async GET(req) {
      return { type: 'sync', result: await vmStatus(req.app, await lookup(req)) };
    },
  },
};

function statusAction(target: 'running' | 'stopped', path: string, name: string, what: string): ViewDef {
  return {
    path,
    name,
    description: `Record that a VM managed outside esnap is ${what} (idempotent).`,
    dcBound: true,
    methods: {
      async PUT(req) {
        const vm = await lookup(req);
        // A libvirt domain is really started or stopped, on its node (src/hypervisor/libvirt.power.ts).
        if (vm.libvirt === 1) return { type: 'task', taskId: await submitPower(req.app, req.caller, vm, target, req.data) };
        return { type: 'sync', result: await setVmStatus(req.app, req.caller, vm, target) };
      },
    },
  };
}

export const vmViews: ViewDef[] = [
  vmList,
  vmDefine,
  vmDiskList,
  vmDisk,
  vmStatusView,
  statusAction('running', '/vm/:hostname_or_uuid/status/start', 'vm_status_start', 'running'),
  statusAction('stopped', '/vm/:hostname_or_uuid/status/stop', 'vm_status_stop', 'stopped'),
];
