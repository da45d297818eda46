/**
 * The server side of VM start and stop (issue 14): submit and completion of the `vm_power` task;
 * the agent side is runPower in src/hypervisor/libvirt.power.ts.
 */
import type { AppContext } from '../app-context.js';
import type { VmRow } from '../db/schema.js';
import type { Caller } from '../accounts/caller.js';
import { validationFailed } from '../domain/errors.js';
import { parseBool, parseIntField } from '../domain/validate.js';
import { logDetail } from '../tasks/task-log.js';
import { diskLockKey, requireNodeOnline, vmDisks, vmNode, VM_RUNNING, VM_STOPPED } from './vm.lookup.js';
import { vmLogObject } from './vm.output.js';
import { vmTask } from '../tasks/vm-task.js';
import { DEFAULT_STOP_TIMEOUT_S, type PowerPayload } from '../hypervisor/libvirt.power.js';

const MAX_STOP_TIMEOUT_S = 86_400;

interface PowerContext {
  readonly vmUuid: string;
  readonly target: 'running' | 'stopped';
}

/** Submits the start or stop task; returns its id. Bad `timeout`: 400 with the field's message. */
export async function submitPower(ctx: AppContext, caller: Caller, vm: VmRow, target: 'running' | 'stopped', data: Readonly<Record<string, unknown>>): Promise<string> {
  let timeoutS = DEFAULT_STOP_TIMEOUT_S;
  if (data['timeout'] !== undefined) {
    const n = parseIntField(data['timeout']);
    if (n === null || n < 1 || n > MAX_STOP_TIMEOUT_S) {
      throw validationFailed({ timeout: [`Ensure this value is an integer between 1 and ${MAX_STOP_TIMEOUT_S}.`] });
    }
    timeoutS = n;
  }
  const force = parseBool(data['force'] ?? false);
  const node = await vmNode(ctx.db, vm);
  requireNodeOnline(node);
  const msg = target === 'running' ? 'Start server' : 'Stop server';
  const action = target === 'running' ? 'start' : 'stop';
  return ctx.tasks.submit<PowerContext>({
    kind: 'vm_power',
    ...vmTask(caller, vm, node),
    // A start also takes the disk locks: it never starts QEMU under a rollback or restore in flight.
    locks: [`vm_power vm:${vm.uuid}`, ...(action === 'start' ? (await vmDisks(ctx.db, vm.uuid)).map((d) => diskLockKey(vm.uuid, d.real_id)) : [])],
    apiview: { view: 'vm_status', method: 'PUT', hostname: vm.hostname, action },
    log: { msg, detail: logDetail(action === 'stop' ? [['timeout', timeoutS], ['force', force]] : []), object: vmLogObject(vm) },
    prepare: async () => ({
      payload: { op: 'vm_power', domain: vm.uuid, action, timeoutS, force } satisfies PowerPayload,
      context: { vmUuid: vm.uuid, target },
    }),
  });
}

export function registerPowerKinds(ctx: AppContext): void {
  ctx.tasks.registerKind<PowerContext>('vm_power', {
    async complete(trx, _task, c, outcome) {
      if (outcome.returncode === 0) {
        const now = ctx.clock.now().toISOString();
        const status = c.target === 'running' ? VM_RUNNING : VM_STOPPED;
        await trx.updateTable('vm').set({ status, status_change: now, changed: now }).where('uuid', '=', c.vmUuid).where('status', '!=', status).execute();
      }
      return { result: { returncode: outcome.returncode, message: outcome.message, detail: outcome.detail ?? '' } };
    },
  });
}
