/**
 * The btrfs driver's command runs: LC_ALL=C (btrfs.errors.ts reads strerror texts), the driver's
 * timeout, failures turned into typed errors, and subvolume deletes in batches.
 */
import type { CommandRunner, RunResult } from '../runner.js';
import { btrfsError, type BtrfsContext } from './btrfs.errors.js';
import { fail, filterAsync, lstatOrNull } from './btrfs.fs.js';

/** argv stays far below ARG_MAX; more paths than this are deleted in several calls. */
const DELETE_BATCH = 1000;

export class BtrfsCommands {
  constructor(
    private readonly runner: CommandRunner,
    private readonly timeoutMs: number,
  ) {}

  async deleteSubvolumes(paths: readonly string[], opts: { commit: boolean }): Promise<void> {
    for (let i = 0; i < paths.length; i += DELETE_BATCH) {
      const batch = paths.slice(i, i + DELETE_BATCH);
      const argv = ['btrfs', 'subvolume', 'delete', ...(opts.commit ? ['--commit-after'] : []), ...batch];
      const result = await this.run(argv);
      if (result.code === 0) continue;
      // btrfs goes on after a failed path; what matters is whether any of ours is still there
      // (one may have gone meanwhile, which is what the caller wanted).
      const left = await filterAsync(batch, async (path) => (await lstatOrNull(path)) !== null);
      if (left.length > 0) throw btrfsError(argv, result);
    }
  }

  async btrfs(argv: readonly string[], ctx: BtrfsContext = {}): Promise<RunResult> {
    const result = await this.run(argv);
    if (result.code !== 0) throw btrfsError(argv, result, ctx);
    return result;
  }

  async run(argv: readonly string[]): Promise<RunResult> {
    // LC_ALL=C keeps strerror texts stable for btrfs.errors.ts.
    return this.runner.run(argv, { env: { LC_ALL: 'C' }, timeoutMs: this.timeoutMs }).catch((err: unknown) => fail(err, 'btrfs could not run'));
  }
}
