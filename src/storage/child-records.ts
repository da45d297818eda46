/**
 * Storage commands must not outlive the agent that started them: a `cp` or `qemu-img convert` left
 * running after the agent was killed keeps writing into a disk the restarted agent believes idle
 * (or into the temporary that start-up recovery is about to remove).
 *
 * So the command runner starts every command in a process group of its own (killing the agent's
 * group no longer kills them; killing the agent's PID never did) and records it here, one file per
 * command, `<dir>/<pid>` = `{pid, start}` where `start` is the process's start time in clock ticks
 * since boot (/proc/<pid>/stat field 22). At start-up, before any driver recovers or any task is
 * taken, `reap()` kills the group of every recorded process that still runs with the same start
 * time (a recycled pid has another one, so an unrelated process is never killed) and waits for it
 * to be gone. A normal exit of the agent kills its live commands too (`killAll`).
 *
 * The window between fork and the record being written is one small synchronous write; a kill
 * landing exactly there leaves one unrecorded command (Node cannot set PR_SET_PDEATHSIG).
 *
 * Example:
 *   const records = new ChildRecords(join(dataDir, 'run', 'children'));
 *   await records.reap(log);              // before drivers init()
 *   const runner = new NodeCommandRunner({ records });
 */
import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { readdir, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ReapReport {
  /** pids of leftover commands that were still running and were killed. */
  readonly killed: number[];
}

interface Recorded {
  readonly pid: number;
  readonly start: string;
}

/** Start time of `pid` (field 22 of /proc/<pid>/stat), or null when it is gone or a zombie. */
export function processStart(pid: number): string | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (fields[0] === 'Z' || fields[0] === 'X') return null; // dead, only not reaped by its parent
  return fields[19] ?? null; // field 22 overall: 3 is fields[0]
}

export class ChildRecords {
  readonly #live = new Set<number>();
  #made = false;

  constructor(readonly dir: string) {}

  /** Called right after spawn; never throws (a command runs even if it cannot be recorded). */
  add(pid: number | undefined): void {
    if (pid === undefined) return;
    this.#live.add(pid);
    try {
      if (!this.#made) mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      this.#made = true;
      const start = processStart(pid);
      if (start !== null) writeFileSync(join(this.dir, String(pid)), JSON.stringify({ pid, start } satisfies Recorded));
    } catch (err) {
      process.emitWarning(`esnap: cannot record command ${pid}: ${String(err)}`);
    }
  }

  /** Called once the command has exited. */
  remove(pid: number | undefined): void {
    if (pid === undefined) return;
    this.#live.delete(pid);
    try {
      unlinkSync(join(this.dir, String(pid)));
    } catch {
      /* never written, or already reaped */
    }
  }

  /** Synchronous, for process 'exit': kills the groups of the commands still running. */
  killAll(): void {
    for (const pid of this.#live) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }

  /**
   * Kills what a previous agent on this data dir left running and clears the records. Waits up to
   * `waitMs` for each to be gone (a process in uninterruptible I/O dies when the I/O returns).
   */
  async reap(opts: { waitMs?: number } = {}): Promise<ReapReport> {
    const killed: number[] = [];
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return { killed };
    }
    for (const name of names) {
      const path = join(this.dir, name);
      let rec: Recorded | null = null;
      try {
        rec = JSON.parse(await readFile(path, 'utf8')) as Recorded;
      } catch {
        /* a torn record: its process can only be found by start time, which it lacks */
      }
      if (rec && Number.isSafeInteger(rec.pid) && rec.pid > 1 && !this.#live.has(rec.pid) && processStart(rec.pid) === rec.start) {
        for (const target of [-rec.pid, rec.pid]) {
          try {
            process.kill(target, 'SIGKILL');
          } catch {
            /* the group may be gone, or the process left it */
          }
        }
        killed.push(rec.pid);
        const end = Date.now() + (opts.waitMs ?? 10_000);
        while (processStart(rec.pid) === rec.start && Date.now() < end) await sleep(20);
      }
      if (!rec || !this.#live.has(rec.pid)) await unlink(path).catch(() => undefined);
    }
    return { killed };
  }
}
