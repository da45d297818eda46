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
/** Devices (libvirt's node names) that took a live snapshot, per domain and image file. */
const knownNodes = new Map<string, string>();
const NODE_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const NEXT = '==esnap-next';

function nodeKey(uuid: string, file: string): string {
  return `${uuid}\u0000${file}`;
}

interface Block {
  device?: string;
  inserted?: { 'node-name'?: string; file?: string };
}

function fileOfDevice(blocks: unknown, device: string): string | null {
  if (!Array.isArray(blocks)) return null;
  const b = (blocks as Block[]).find((x) => (x.device || x.inserted?.['node-name']) === device);
  return b?.inserted?.file ?? null;
}

class VirshMonitor implements QemuMonitor {
  constructor(
    private readonly runner: CommandRunner,
    private readonly uri: string,
    private readonly uuid: string,
  ) {}

  /** The answer to the `query-block` openLibvirtMonitor sent, handed out once. */
  prefetched: unknown = undefined;

  /** The last `query-block` answer: which file a device is, for the node cache. */
  #blocks: unknown = undefined;

  async execute<T = unknown>(command: string, args?: Record<string, unknown>, opts: { timeoutMs?: number } = {}): Promise<T> {
    if (command === 'query-block' && args === undefined && this.prefetched !== undefined) {
      const answer = this.prefetched as T;
      this.#blocks = answer;
      this.prefetched = undefined;
      return answer;
    }
    const answer = await this.#execute<T>(command, args, opts);
    if (command === 'query-block') this.#blocks = answer;
    // A device that took a snapshot is remembered for the next one (snapshotOnKnownNode).
    if (command === 'blockdev-snapshot-internal-sync' && typeof args?.['device'] === 'string') {
      const file = fileOfDevice(this.#blocks, args['device']);
      if (file !== null) knownNodes.set(nodeKey(this.uuid, file), args['device']);
    }
    return answer;
  }

  async #execute<T>(command: string, args: Record<string, unknown> | undefined, opts: { timeoutMs?: number }): Promise<T> {
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

/**
 * A live internal snapshot of `image` in one virsh process, where an earlier snapshot of this
 * domain told which device the image is: the snapshot on that device, then `query-block`, which
 * says whether the device still is that image (the domain may have restarted with other node
 * names meanwhile). `'done'`: taken; `'offline'`: the domain does not run; `'unknown'`: no device
 * known, or it was not that image any more (a snapshot it took there is deleted again) — the
 * caller takes the usual path (query-block, then the snapshot). An error answer of QEMU on the
 * right device throws, as the monitor would.
 */
export async function snapshotOnKnownNode(
  runner: CommandRunner,
  uri: string,
  uuid: string,
  image: string,
  id: string,
  timeoutMs: number,
): Promise<'done' | 'offline' | 'unknown'> {
  const key = nodeKey(uuid, image);
  const device = knownNodes.get(key);
  if (device === undefined || !UUID_RE.test(uuid) || !NODE_NAME.test(device) || !/^[A-Za-z0-9_.-]+$/.test(id)) return 'unknown';
  const snap = JSON.stringify({ execute: 'blockdev-snapshot-internal-sync', arguments: { device, name: id } });
  // One argument, virsh's own `;` parser; single quotes keep the JSON (no quote of its own, checked above) whole.
  const script = `qemu-monitor-command ${uuid} '${snap}'; echo ${NEXT}; qemu-monitor-command ${uuid} '{"execute":"query-block"}'`;
  const r = await runner.run(['virsh', '-c', uri, script], { timeoutMs, env: { LC_ALL: 'C' } });
  const [first = '', second = ''] = r.stdout.split(NEXT);
  let blocks: unknown;
  try {
    blocks = (JSON.parse(second) as { return?: unknown }).return;
  } catch {
    knownNodes.delete(key);
    if (/not running|[Dd]omain not found|failed to get domain/.test(r.stderr)) return 'offline';
    throw new QmpConnectionError('closed', `libvirt monitor of ${uuid}: ${r.stderr.trim() || `exit code ${r.code}`}`);
  }
  // No answer (null): virsh said why on stderr; judged below.
  const answer = parseAnswer(first);
  if (fileOfDevice(blocks, device) === image) {
    if (answer?.error) throw new QmpCommandError('blockdev-snapshot-internal-sync', answer.error.class ?? 'GenericError', answer.error.desc ?? '');
    if (answer && 'return' in answer) return 'done';
    throw new QmpConnectionError('closed', `libvirt monitor of ${uuid}: ${r.stderr.trim() || 'no answer to the snapshot'}`);
  }
  // Not that image any more: a snapshot taken on whatever the device is now goes again.
  knownNodes.delete(key);
  if (answer && 'return' in answer && !answer.error) {
    const undo = JSON.stringify({ execute: 'blockdev-snapshot-delete-internal-sync', arguments: { device, name: id } });
    await runner.run(['virsh', '-c', uri, 'qemu-monitor-command', uuid, undo], { timeoutMs, env: { LC_ALL: 'C' } });
  }
  return 'unknown';
}

function parseAnswer(text: string): { return?: unknown; error?: { class?: string; desc?: string } } | null {
  try {
    return JSON.parse(text) as { return?: unknown; error?: { class?: string; desc?: string } };
  } catch {
    return null;
  }
}
