/**
 * The tasks an agent has claimed and not yet reported finished: what a stop waits for, and what
 * it names when its grace runs out ("exiting with K tasks still running").
 *
 * Example:
 *   const running = new RunningTasks();
 *   const agent = new Agent(node, drivers, queue, running.track(reporter), log);
 *   running.ids(); // ['<task id>', …]
 */
import type { AgentReporter } from './agent.js';

export class RunningTasks {
  readonly #ids = new Set<string>();

  ids(): string[] {
    return [...this.#ids];
  }

  /**
   * The reporter, counting a task from a successful claim until its end is reported. Its other
   * methods (storage usage…) are inherited unchanged.
   */
  track<R extends AgentReporter>(reporter: R): R {
    const counted: Pick<AgentReporter, 'started' | 'finished'> = {
      started: async (taskId) => {
        const claimed = await reporter.started(taskId);
        if (claimed) this.#ids.add(taskId);
        return claimed;
      },
      finished: async (taskId, outcome) => {
        try {
          await reporter.finished(taskId, outcome);
        } finally {
          this.#ids.delete(taskId);
        }
      },
    };
    return Object.assign(Object.create(reporter) as R, counted);
  }
}
