/**
 * The qcow2 driver's runs of the QEMU tools: LC_ALL=C, the command timeout, failures translated
 * once (qcow2.errors.ts), `qemu-img info` parsed, and batches of snapshot commands in one
 * qemu-storage-daemon.
 */
import { StorageError, type DiskRef } from '../driver.js';
import { fail } from '../fs-root.js';
import type { CommandRunner, RunResult } from '../runner.js';
import { qemuToolError } from './qcow2.errors.js';
import { argv, batchInput, parseBatchOutput, parseInfo, type QcowInfo } from './qcow2.image.js';

export class QemuCommands {
  /**
   * Put before qemu-storage-daemon's argv: `setpriv --pdeathsig KILL --` where util-linux has it
   * (set by the driver's init). The daemon waits on its monitor for ever once its stdin is gone,
   * so one whose agent was killed mid-batch would hold the image's write lock until the next
   * start reaped it (the chaos run, seed 1: every later write of that disk refused for minutes);
   * with this the kernel ends it when the agent dies.
   */
  daemonPrefix: readonly string[] = [];

  constructor(
    private readonly runner: CommandRunner,
    private readonly commandTimeoutMs: number,
  ) {}

  /** All deletions in one qemu-storage-daemon: one open of the image instead of one per snapshot. */
  async destroyBatch(image: string, ids: readonly string[], disk: DiskRef): Promise<void> {
    const answers = await this.daemonBatch(
      image,
      ids.map((name) => ({ execute: 'blockdev-snapshot-delete-internal-sync', name })),
      `cannot destroy snapshots of ${disk.path}`,
    );
    answers.forEach((a, i) => {
      if (a === null) return;
      const e = qemuToolError({ code: 1, stderr: a }, `cannot destroy snapshot ${ids[i]} of ${disk.path}`);
      if (e.code !== 'snapshot_missing') throw e;
    });
  }

  /**
   * Snapshot commands on a stopped VM's image in ONE qemu-storage-daemon (QMP on stdin), which
   * takes QEMU's write lock like qemu-img. Returns each command's error text, null for success.
   * A create through it also checks the tag is new, atomically (qemu-img snapshot -c does not).
   */
  async daemonBatch(
    image: string,
    commands: ReadonlyArray<{ execute: string; name: string }>,
    what: string,
  ): Promise<Array<string | null>> {
    const input = batchInput(commands.map((c) => ({ execute: c.execute, arguments: { device: 'esnap', name: c.name } })));
    const r = await this.run([...this.daemonPrefix, ...argv.storageDaemon(image, 'esnap')], what, this.commandTimeoutMs, input);
    if (r.code !== 0) throw qemuToolError(r, what);
    const answers = parseBatchOutput(r.stdout);
    const out = commands.map((c, i) => {
      const a = answers.get(i);
      if (!a) throw new StorageError('backend', `${what}: qemu-storage-daemon gave no answer for ${c.name}`);
      return a.ok ? null : a.desc;
    });
    return out;
  }

  async info(image: string, disk: DiskRef): Promise<QcowInfo> {
    const r = await this.tool(argv.info(image), `cannot read disk ${disk.path}`);
    return parseInfo(r.stdout, disk.path);
  }

  /** Runs a qemu tool; a non-zero exit becomes the translated StorageError. */
  async tool(args: readonly string[], what: string, timeoutMs = this.commandTimeoutMs): Promise<RunResult> {
    const r = await this.run(args, what, timeoutMs);
    if (r.code !== 0) throw qemuToolError(r, what);
    return r;
  }

  async run(args: readonly string[], what: string, timeoutMs: number, input?: string): Promise<RunResult> {
    // LC_ALL=C: the strerror parts of QEMU's messages ("No space left on device") are glibc's.
    return this.runner
      .run(args, { timeoutMs, env: { LC_ALL: 'C' }, ...(input === undefined ? {} : { input }) })
      .catch((err: unknown) => fail(err, what));
  }
}
