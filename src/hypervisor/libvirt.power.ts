/**
 * Start and stop of a libvirt-discovered VM (issue 14): `PUT /vm/<vm>/status/start|stop` become
 * tasks on the node's queue (201 PENDING with a task id; ES-STREAM waits), as Danube's own were.
 * Start is `virsh start`; stop is a graceful shutdown that waits up to `timeout` seconds (default
 * 180, then FAILURE `VM did not stop within <n> s`), or a hard `virsh destroy` with `force: true`.
 *
 * The server side (submit, completion) is here; the agent side is runPower below, given the node's
 * Virsh. The status the completion records is what libvirt reported at the end; later changes
 * arrive with the next inventory.
 */
import type { AppContext } from '../app-context.js';
import type { VmRow } from '../db/schema.js';
import type { Caller } from '../accounts/caller.js';
import { validationFailed } from '../domain/errors.js';
import { parseBool, parseIntField } from '../domain/validate.js';
import { logDetail } from '../tasks/task-log.js';
import type { TaskOutcome } from '../tasks/task.service.js';
import { requireNodeOnline, vmDisks, vmNode, VM_RUNNING, VM_STOPPED } from '../vms/vm.lookup.js';
import { diskLockKey } from '../snapshots/snapshot.context.js';
import { vmLogObject } from '../vms/vm.output.js';
import { DOMAIN_STATE } from './libvirt.domains.js';
import type { Virsh } from './virsh.js';

export const DEFAULT_STOP_TIMEOUT_S = 180;
const MAX_STOP_TIMEOUT_S = 86_400;

export interface PowerPayload {
  readonly op: 'vm_power';
  readonly domain: string;
  readonly action: 'start' | 'stop';
  readonly timeoutS: number;
  readonly force: boolean;
}

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
    type: 'e',
    userId: caller.user.id,
    username: caller.user.username,
    ownerId: vm.owner_id,
    dcId: vm.dc_id,
    dcBound: true,
    vmUuid: vm.uuid,
    node: { id: node.id, hostname: node.hostname },
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

const RUNNING_STATES: ReadonlySet<number> = new Set([DOMAIN_STATE.running, DOMAIN_STATE.blocked, DOMAIN_STATE.paused, DOMAIN_STATE.pmsuspended]);
const STOPPED_STATES: ReadonlySet<number> = new Set([DOMAIN_STATE.shutoff, DOMAIN_STATE.crashed, DOMAIN_STATE.nostate]);

function fail(message: string): TaskOutcome {
  return { returncode: 1, message, detail: `Got bad return code (1). Error: ${message}` };
}

/** The agent's side: acts on the domain and waits for the state asked for. */
export async function runPower(virsh: Virsh, p: PowerPayload, sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))): Promise<TaskOutcome> {
  const state = await virsh.state(p.domain);
  if (p.action === 'start') {
    if (!RUNNING_STATES.has(state)) await virsh.start(p.domain);
    return { returncode: 0, message: 'Successfully started server', detail: '' };
  }
  if (STOPPED_STATES.has(state)) return { returncode: 0, message: 'Successfully stopped server', detail: '' };
  if (p.force) {
    await virsh.destroy(p.domain);
    return { returncode: 0, message: 'Successfully stopped server', detail: 'force=true' };
  }
  await virsh.shutdown(p.domain);
  const deadline = Date.now() + p.timeoutS * 1000;
  while (Date.now() < deadline) {
    await sleep(500);
    if (STOPPED_STATES.has(await virsh.state(p.domain))) return { returncode: 0, message: 'Successfully stopped server', detail: '' };
  }
  return fail(`VM did not stop within ${p.timeoutS} s`);
}
