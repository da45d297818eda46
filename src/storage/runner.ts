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
export interface PipeOptions extends Omit<RunOptions, 'input'> {
  /**
   * Called once, when the producer has exited 0 and its whole output has been read, while the
   * consumer may still run (a remote receive that has all of the stream, finishing its work).
   */
  readonly onProducerDone?: () => void;
}

export interface PipeResult {
  /** The producer's result; its `stdout` is always empty (it went to the consumer). */
  readonly producer: RunResult;
  readonly consumer: RunResult;
}

/** Options of a spawn whose stdin and/or stdout the caller streams itself (`spawn`). */
export interface SpawnOptions extends Omit<RunOptions, 'input'> {
  /** `pipe`: the caller writes the process's stdin (and must end it); default `ignore` (/dev/null). */
  readonly stdin?: 'pipe' | 'ignore';
  /** `stream`: the caller reads stdout; `capture` (default): it is collected into the result. */
  readonly stdout?: 'stream' | 'capture';
  /**
   * Hands the process's stdin or stdout to a file descriptor or to another process's pipe end (a
   * `SpawnedCommand`'s `stdin`), instead of the option above: the bytes then go from file or
   * process to process without passing through this one (`producer | consumer` with no copy here).
   * The caller still owns what it passed (close a file after the spawn; end a pipe when done).
   */
  readonly stdinFrom?: number | NodeJS.ReadableStream;
  readonly stdoutTo?: number | NodeJS.WritableStream;
}

/** A running process whose streams the caller drives; `done` settles like `run`'s promise. */
export interface SpawnedCommand {
  readonly stdin: NodeJS.WritableStream | null;
  readonly stdout: NodeJS.ReadableStream | null;
  /** Exit code and stderr (and stdout when captured); rejects on spawn failure, timeout or abort. */
  readonly done: Promise<RunResult>;
  /** Kills the process (and its group); `done` then rejects with `reason`. */
  kill(reason: Error): void;
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
  /**
   * Starts `argv` with its stdin and/or stdout left to the caller (restic reading an image stream
   * on stdin, `restic dump` writing one on stdout). Optional like `pipe`.
   */
  spawn?(argv: readonly string[], options?: SpawnOptions): SpawnedCommand;
}
