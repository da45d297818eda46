/**
 * The real command runner with faults made at the process edge, for failures a real backend cannot
 * be made to produce at that instant (an agent killed right after a command ran, a lookup that
 * zfs-fuse sometimes fails): `before` may answer in place of the command, or throw as if the agent
 * stopped before it ran; `after` may throw as if the agent stopped right after it ran. Pipes and
 * spawns pass through unchanged.
 *
 * @example
 *   let cut = false;
 *   const runner = new FaultRunner({ after: (argv) => { if (cut && isCommand(argv, 'zfs', 'rollback')) throw new Error('killed'); } });
 */
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import type { CommandRunner, RunOptions, RunResult } from '../../src/storage/runner.js';

export interface Faults {
  /** Runs before each command: a result replaces the command, a throw fails it unrun. */
  before?(argv: readonly string[]): RunResult | undefined | Promise<RunResult | undefined>;
  /** Runs after each command that ran: a throw fails it although it ran. */
  after?(argv: readonly string[], result: RunResult): void | Promise<void>;
}

export class FaultRunner implements CommandRunner {
  readonly #base = new NodeCommandRunner();
  readonly pipe = this.#base.pipe.bind(this.#base);
  readonly spawn = this.#base.spawn.bind(this.#base);

  constructor(private readonly faults: Faults) {}

  async run(argv: readonly string[], options?: RunOptions): Promise<RunResult> {
    const answer = await this.faults.before?.(argv);
    if (answer) return answer;
    const r = await this.#base.run(argv, options);
    await this.faults.after?.(argv, r);
    return r;
  }
}

/** Whether `argv` starts with these words (`isCommand(argv, 'restic', 'forget')`). */
export function isCommand(argv: readonly string[], ...words: readonly string[]): boolean {
  return words.every((w, i) => argv[i] === w);
}
