/**
 * Start and stop of a libvirt-discovered VM (issue 14): `PUT /vm/<vm>/status/start|stop` become
 * tasks on the node's queue (201 PENDING with a task id; ES-STREAM waits), as Danube's own were.
 * Start is `virsh start`; stop is a graceful shutdown that waits up to `timeout` seconds (default
 * 180, then FAILURE `VM did not stop within <n> s`), or a hard `virsh destroy` with `force: true`.
 *
 * The agent side is here (runPower, given the node's Virsh); the server side (submit, completion)
 * is src/vms/vm.power.ts. The status the completion records is what libvirt reported at the end; later changes
 * arrive with the next inventory.
 */
import type { TaskOutcome } from '../tasks/task.types.js';
import { DOMAIN_STATE } from './libvirt.domains.js';
import type { Virsh } from './virsh.js';

export const DEFAULT_STOP_TIMEOUT_S = 180;

export interface PowerPayload {
  readonly op: 'vm_power';
  readonly domain: string;
  readonly action: 'start' | 'stop';
  readonly timeoutS: number;
  readonly force: boolean;
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
