/**
 * The command runner of an agent (embedded or `esnap agent`), built at start-up: commands left
 * running by a killed predecessor on the same data dir are ended first (child-records.ts), before
 * any driver recovers an interrupted operation or any task is taken, and this process's own
 * commands are killed when it exits.
 *
 * Example:
 *   const runner = await agentRunner(join(config.dataDir, 'run', 'children'), log);
 *   const drivers = storages.map((s) => createDriver(s, runner));   // then init(), then work
 */
import type { Logger } from '../app-context.js';
import { ChildRecords } from './child-records.js';
import { NodeCommandRunner } from './node-runner.js';
import { logCommands } from './node-runner.js';

/** Where `esnap serve`/`esnap agent` record their storage commands, under the data dir. */
export const CHILDREN_SUBDIR = 'run/children';

export async function agentRunner(recordsDir: string | undefined, log: Logger): Promise<NodeCommandRunner> {
  if (recordsDir === undefined) return new NodeCommandRunner({ onRun: logCommands(log) });
  const records = new ChildRecords(recordsDir);
  const { killed } = await records.reap();
  if (killed.length > 0) log.warn({ pids: killed }, 'ended storage commands left running by the previous agent');
  // A normal exit (also after the stop grace ran out) ends this agent's commands: they run in
  // groups of their own and would otherwise go on until the next start.
  process.once('exit', () => records.killAll());
  return new NodeCommandRunner({ records, onRun: logCommands(log) });
}
