/**
 * qemu-img argument arrays and the parsing of `qemu-img info --output=json`: what the qcow2 driver,
 * the in-use check and the benchmark spawn, built in one place so that all three run the same argv.
 *
 * Images are always named so that qemu-img cannot misread them: absolute paths (a relative
 * `nbd:…` or `json:…` would select a protocol) and the format pinned. `qemu-img snapshot` has no
 * `-f`, and letting it probe would let a guest that writes a qcow2 header into a raw disk change how
 * the file is read; so its image is given as a `json:` spec with `driver=qcow2` (JSON also needs no
 * escaping of commas, which QEMU's `key=value,…` syntax would).
 */
import { StorageError } from '../driver.js';

export const QEMU_IMG = 'qemu-img';
export const QEMU_IO = 'qemu-io';
export const QEMU_STORAGE_DAEMON = 'qemu-storage-daemon';
/** util-linux's setpriv: runs qemu-storage-daemon with a parent-death signal (qcow2.commands.ts). */
export const SETPRIV = 'setpriv';

/** One internal snapshot as `qemu-img info --output=json` (and QMP `query-block`) reports it. */
export interface QcowSnapshot {
  /** The tag: esnap's snapshot id. */
  readonly name: string;
  readonly created: Date;
  readonly vmStateSize: number;
}

export interface QcowInfo {
  readonly virtualSize: number;
  readonly snapshots: readonly QcowSnapshot[];
}

/** `json:{"driver":"qcow2","file":{"driver":"file","filename":…}}`, for commands without `-f`. */
export function qcow2Spec(absPath: string): string {
  return `json:${JSON.stringify({ driver: 'qcow2', file: { driver: 'file', filename: absPath } })}`;
}

/** The same node as `--blockdev` JSON for qemu-storage-daemon, under `nodeName`. */
export function qcow2Blockdev(absPath: string, nodeName: string): string {
  return JSON.stringify({ driver: 'qcow2', 'node-name': nodeName, file: { driver: 'file', filename: absPath } });
}

export const argv = {
  /** Read-only, force-shared: works while a VM runs (the data may be stale, the snapshot table is not). */
  info: (abs: string): string[] => [QEMU_IMG, 'info', '--output=json', '-U', '-f', 'qcow2', abs],
  /** In-use probes (see storage/in-use.ts): they must take QEMU's lock, so never -U. Neither writes. */
  lockProbeQcow2: (abs: string): string[] => [QEMU_IMG, 'info', '--output=json', '-f', 'qcow2', abs],
  lockProbeRaw: (abs: string): string[] => [QEMU_IO, '-f', 'raw', '-c', 'quit', abs],
  /** Metadata consistency (no -U: a running VM's lock makes it fail instead of reading a moving image). */
  check: (abs: string): string[] => [QEMU_IMG, 'check', '--output=json', '-f', 'qcow2', abs],
  create: (abs: string, bytes: number): string[] => [QEMU_IMG, 'create', '-q', '-f', 'qcow2', abs, String(bytes)],
  // Without -U: qemu-img takes QEMU's write lock and fails cleanly while a VM has the image open.
  snapshotCreate: (abs: string, id: string): string[] => [QEMU_IMG, 'snapshot', '-c', id, qcow2Spec(abs)],
  snapshotApply: (abs: string, id: string): string[] => [QEMU_IMG, 'snapshot', '-a', id, qcow2Spec(abs)],
  snapshotDelete: (abs: string, id: string): string[] => [QEMU_IMG, 'snapshot', '-d', id, qcow2Spec(abs)],
  /**
   * Writes snapshot `id` of `src` into the EXISTING image `dst` (-n): only dst's active layer
   * changes, its own internal snapshots stay. Areas the snapshot does not hold are written as zeros.
   * The source is opened force-shared: internal snapshot clusters are copy-on-write and never
   * change while the snapshot exists, so a VM running on the source cannot disturb them.
   * `-t writeback`: convert's default target cache is `unsafe` (flushes ignored, nothing synced on
   * exit), which would let a power cut undo a restore already reported done.
   */
  restore: (src: string, id: string, dst: string): string[] => [
    QEMU_IMG, 'convert', '-U', '-n', '-f', 'qcow2', '-l', `snapshot.name=${id}`, '-O', 'qcow2', '-t', 'writeback', src, dst,
  ],
  /** The same from a raw image file (a backup's bytes written aside): into dst's active layer. */
  restoreRaw: (raw: string, dst: string): string[] => [QEMU_IMG, 'convert', '-n', '-f', 'raw', '-O', 'qcow2', '-t', 'writeback', raw, dst],
  /**
   * One qemu-storage-daemon whose monitor reads QMP from stdin: several snapshot commands on one
   * open image in one process (see batchInput).
   */
  storageDaemon: (abs: string, nodeName: string): string[] => [
    QEMU_STORAGE_DAEMON, '--blockdev', qcow2Blockdev(abs, nodeName), '--chardev', 'stdio,id=m', '--monitor', 'chardev=m',
  ],
};

/**
 * The stdin of argv.storageDaemon: capabilities, one command per line with ids `0..n-1`, and `quit`
 * (the daemon does not exit on EOF).
 */
export function batchInput(commands: ReadonlyArray<{ execute: string; arguments: Record<string, unknown> }>): string {
  const lines = [{ execute: 'qmp_capabilities' }, ...commands.map((c, i) => ({ ...c, id: i })), { execute: 'quit' }];
  return lines.map((l) => JSON.stringify(l)).join('\n') + '\n';
}

/** Answers of a batch by id; lines that are not answers (greeting, events) are skipped. */
export function parseBatchOutput(stdout: string): Map<number, { ok: true } | { ok: false; desc: string }> {
  const answers = new Map<number, { ok: true } | { ok: false; desc: string }>();
  for (const line of stdout.split('\n')) {
    if (!line.trim().startsWith('{')) continue;
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch {
      continue;
    }
    if (typeof msg !== 'object' || msg === null) continue;
    const m = msg as { id?: unknown; error?: { desc?: unknown } };
    if (typeof m.id !== 'number') continue;
    answers.set(m.id, m.error ? { ok: false, desc: String(m.error.desc ?? '') } : { ok: true });
  }
  return answers;
}

/** Parses one `snapshots[]` element of qemu-img info or QMP query-block. */
export function parseSnapshot(raw: unknown): QcowSnapshot | null {
  if (typeof raw !== 'object' || raw === null) return null;
  const s = raw as Record<string, unknown>;
  if (typeof s.name !== 'string' || typeof s['date-sec'] !== 'number') return null;
  const nsec = typeof s['date-nsec'] === 'number' ? s['date-nsec'] : 0;
  return {
    name: s.name,
    // Milliseconds: qcow2 keeps microseconds, a JS Date cannot.
    created: new Date(s['date-sec'] * 1000 + Math.floor(nsec / 1e6)),
    vmStateSize: typeof s['vm-state-size'] === 'number' ? s['vm-state-size'] : 0,
  };
}

export function parseInfo(stdout: string, path: string): QcowInfo {
  let data: unknown;
  try {
    data = JSON.parse(stdout);
  } catch (err) {
    throw new StorageError('backend', `qemu-img info of ${path} did not print JSON`, { cause: err });
  }
  const d = data as { format?: unknown; 'virtual-size'?: unknown; snapshots?: unknown };
  if (d.format !== 'qcow2' || typeof d['virtual-size'] !== 'number') {
    throw new StorageError('backend', `qemu-img info of ${path}: not a qcow2 image (format ${String(d.format)})`);
  }
  const list = Array.isArray(d.snapshots) ? d.snapshots : [];
  const snapshots = list.map(parseSnapshot).filter((s): s is QcowSnapshot => s !== null);
  return { virtualSize: d['virtual-size'], snapshots };
}
