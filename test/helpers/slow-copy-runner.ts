/**
 * A command runner for tests that must catch a storage copy while it runs (cancel of a running
 * task): real commands, and while `slowCopyS` is set every `cp` is preceded by a real `sleep` of
 * that long with the same options, so an abort kills a real process.
 */
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import type { CommandRunner, RunOptions, RunResult } from '../../src/storage/runner.js';

export class SlowCopyRunner implements CommandRunner {
  readonly #inner = new NodeCommandRunner();
  slowCopyS = 0;
  sleeping = 0;

  async run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    if (argv[0] === 'cp' && this.slowCopyS > 0) {
      this.sleeping++;
      try {
        await this.#inner.run(['sleep', String(this.slowCopyS)], options).then((r) => {
          if (r.code !== 0) throw new Error(`sleep exited ${r.code}`);
        });
      } finally {
        this.sleeping--;
      }
    }
    return this.#inner.run(argv, options);
  }
}

