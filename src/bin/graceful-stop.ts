/**
 * SIGTERM/SIGINT for `esnap serve` and `esnap agent`: stop taking work, let running tasks finish
 * for up to ESNAP_STOP_GRACE_S, then exit.
 *
 * - Exit 0 when everything stopped in time ("stopped cleanly").
 * - Exit 1 when the grace ran out ("grace period over, exiting with K tasks still running"). The
 *   tasks stay STARTED; the next start's repair fails them with the failure cleanup and re-syncs
 *   their disks (TaskService.recover; AgentRuntime's repair in cluster mode). 1 rather than 0
 *   because work was cut off: the service manager shows it as failed, and a unit with
 *   `Restart=on-failure` that was not being stopped on purpose comes back at once, which runs that
 *   repair promptly. (A `systemctl stop` is never restarted, whatever the code.)
 * - Before that exit, guests this process may hold frozen are thawed (a few seconds at most):
 *   the freeze limit's timer dies with the process, and nothing else would thaw them.
 * - A second signal while stopping changes nothing; the grace still applies.
 */
import type { Logger } from '../app-context.js';
import { thawFrozenGuests } from '../guest/freeze.js';

export const GRACE_OVER_EXIT_CODE = 1;
const THAW_ON_EXIT_MS = 5_000;

export interface Stoppable {
  /** The tasks still running (task ids). */
  runningTasks(): string[];
  /** Stops taking work, waits for running tasks, closes everything. */
  close(): Promise<void>;
}

export function onStopSignals(target: Stoppable, opts: { graceS: number; log: Logger }): void {
  const { log, graceS } = opts;
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn({ signal }, 'already stopping');
      return;
    }
    stopping = true;
    const running = target.runningTasks();
    log.info({ signal, graceS, running }, `stopping: waiting up to ${graceS} s for ${running.length} running tasks`);
    // Not unref'd: the process ends by one of the exits below, never by an emptied event loop.
    const timer = setTimeout(() => {
      const left = target.runningTasks();
      log.warn({ running: left }, `grace period over, exiting with ${left.length} tasks still running`);
      void thawFrozenGuests(THAW_ON_EXIT_MS)
        .then((n) => n > 0 && log.warn({ guests: n }, 'thawed guests still frozen before exiting'))
        .finally(() => process.exit(GRACE_OVER_EXIT_CODE));
    }, graceS * 1000);
    target.close().then(
      () => {
        clearTimeout(timer);
        log.info({}, 'stopped cleanly');
        process.exit(0);
      },
      (err: unknown) => {
        clearTimeout(timer);
        log.error({ err }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
