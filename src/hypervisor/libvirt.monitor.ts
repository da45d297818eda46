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
import { UUID_RE } from './libvirt.domains.js';

const DEFAULT_TIMEOUT_MS = 10 * 60_000;

class VirshMonitor implements QemuMonitor {
  constructor(
    private readonly runner: CommandRunner,
    private readonly uri: string,
    private readonly uuid: string,
  ) {}

  /** The answer to the `query-block` openLibvirtMonitor sent, handed out once. */
  prefetched: unknown = undefined;

  async execute<T = unknown>(command: string, args?: Record<string, unknown>, opts: { timeoutMs?: number } = {}): Promise<T> {
    if (command === 'query-block' && args === undefined && this.prefetched !== undefined) {
      const answer = this.prefetched as T;
      this.prefetched = undefined;
      return answer;
    }
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

/**
 * The monitor of a running domain; null when the domain does not run (the offline path applies).
 * Its first command is the driver's `query-block`, which also tells whether QEMU runs: its answer
 * is kept for that first call, so a live snapshot costs two virsh processes, not three.
 */
export async function openLibvirtMonitor(runner: CommandRunner, uri: string, uuid: string): Promise<QemuMonitor | null> {
  if (!UUID_RE.test(uuid)) throw new Error(`not a domain uuid: ${JSON.stringify(uuid)}`);
  const mon = new VirshMonitor(runner, uri, uuid);
  try {
    mon.prefetched = await mon.execute('query-block');
  } catch (err) {
    // Shut off, or undefined meanwhile: nothing runs it, and QEMU's lock check still guards the image.
    if (err instanceof QmpConnectionError && err.failure === 'unavailable') return null;
    if (err instanceof QmpConnectionError && /failed to get domain|[Dd]omain not found/.test(err.message)) return null;
    throw err;
  }
  return mon;
}
