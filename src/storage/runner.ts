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

/** Options of a pipe: like a run's, without stdin (the consumer reads the producer's stdout). */
export type PipeOptions = Omit<RunOptions, 'input'>;

export interface PipeResult {
  /** The producer's result; its `stdout` is always empty (it went to the consumer). */
  readonly producer: RunResult;
  readonly consumer: RunResult;
}

export interface CommandRunner {
  /** Runs `argv[0]` with the rest as arguments; resolves with the exit code (non-zero is not an error). */
  run(argv: readonly string[], options?: RunOptions): Promise<RunResult>;
  /**
   * `producer | consumer` without a shell (e.g. `zfs send … | zfs recv …`): resolves once both have
   * exited, with both exit codes; the timeout and the abort signal kill both. When the consumer
   * exits early the producer's stdout is closed, so it ends with EPIPE/SIGPIPE as in a shell pipe.
   * Optional: runners that cannot stream between processes leave it out.
   */
  pipe?(producer: readonly string[], consumer: readonly string[], options?: PipeOptions): Promise<PipeResult>;
}
