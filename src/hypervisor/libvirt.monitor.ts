/**
 * libvirt's own QEMU monitor as the qcow2 driver's live path: libvirt owns the QMP socket of each
 * domain's QEMU, so esnap sends the same commands through `virsh qemu-monitor-command` (one
 * process per command, over the command runner). Answers are QMP's own JSON: `{"return": …}` or
 * `{"error": {"class", "desc"}}`, turned into the same QmpCommandError a socket would give, so the
 * driver's one error translator reads both.
 *
 * Example:
 *   const mon = await openLibvirtMonitor(runner, 'qemu:///system', uuid); // null: not running
 *   await mon?.execute('query-block');
 */
import { QmpCommandError, QmpConnectionError } from '../guest/qmp.js';
import type { QemuMonitor } from '../storage/qcow2/qcow2.live.js';
import type { CommandRunner } from '../storage/runner.js';
import { DOMAIN_STATE, parseDomstatsState, UUID_RE } from './libvirt.domains.js';

const DEFAULT_TIMEOUT_MS = 10 * 60_000;

class VirshMonitor implements QemuMonitor {
  constructor(
    private readonly runner: CommandRunner,
    private readonly uri: string,
    private readonly uuid: string,
  ) {}

  async execute<T = unknown>(command: string, args?: Record<string, unknown>, opts: { timeoutMs?: number } = {}): Promise<T> {
    const json = JSON.stringify(args === undefined ? { execute: command } : { execute: command, arguments: args });
    const r = await this.runner.run(['virsh', '-c', this.uri, 'qemu-monitor-command', this.uuid, json], {
      timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      env: { LC_ALL: 'C' },
    });
    if (r.code !== 0) {
      const text = r.stderr.trim();
      throw new QmpConnectionError(/not running/.test(text) ? 'unavailable' : 'closed', `libvirt monitor of ${this.uuid}: ${text}`);
    }
    let answer: { return?: unknown; error?: { class?: string; desc?: string } };
    try {
      answer = JSON.parse(r.stdout) as typeof answer;
    } catch {
      throw new QmpConnectionError('protocol', `libvirt monitor of ${this.uuid}: answer is not JSON`);
    }
    if (answer.error) throw new QmpCommandError(command, answer.error.class ?? 'GenericError', answer.error.desc ?? '');
    return answer.return as T;
  }

  async close(): Promise<void> {
    /* one process per command: nothing stays open */
  }
}

/** The monitor of a running domain; null when the domain does not run (the offline path applies). */
export async function openLibvirtMonitor(runner: CommandRunner, uri: string, uuid: string): Promise<QemuMonitor | null> {
  if (!UUID_RE.test(uuid)) throw new Error(`not a domain uuid: ${JSON.stringify(uuid)}`);
  const r = await runner.run(['virsh', '-c', uri, 'domstats', '--state', '--raw', uuid], { timeoutMs: 30_000, env: { LC_ALL: 'C' } });
  if (r.code !== 0) return null; // undefined meanwhile: nothing runs it
  const state = parseDomstatsState(r.stdout);
  // A paused or suspended QEMU still holds the image and answers its monitor.
  const live = state === DOMAIN_STATE.running || state === DOMAIN_STATE.blocked || state === DOMAIN_STATE.paused || state === DOMAIN_STATE.pmsuspended;
  return live ? new VirshMonitor(runner, uri, uuid) : null;
}
