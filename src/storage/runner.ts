/**
 * The command runner: the only place in esnap that spawns processes. Drivers pass argument arrays
 * (never shell strings); the runner owns timeouts, abort, logging and counters.
 */
export interface RunOptions {
  /** Milliseconds before the process is killed (SIGKILL) and the run fails; default 10 minutes. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
  /** Bytes written to the process's stdin. */
  readonly input?: string | Buffer;
  readonly env?: Readonly<Record<string, string>>;
}

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly durationMs: number;
}

export interface CommandRunner {
  /** Runs `argv[0]` with the rest as arguments; resolves with the exit code (non-zero is not an error). */
  run(argv: readonly string[], options?: RunOptions): Promise<RunResult>;
}
