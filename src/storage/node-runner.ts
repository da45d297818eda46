/**
 * The one place in esnap that spawns processes (see `runner.ts`). Always an argument array with
 * `shell: false`, so no argument is ever interpreted by a shell; drivers get exit codes and text
 * back and turn them into typed errors themselves.
 *
 * Example:
 *   const runner = new NodeCommandRunner({ onRun: ({ argv, code, durationMs }) => log.debug({ argv, code, durationMs }) });
 *   const { code, stdout } = await runner.run(['qemu-img', 'info', '--output=json', '-U', path], { timeoutMs: 30_000 });
 *   const { producer, consumer } = await runner.pipe(['zfs', 'send', 'tank/a@es-1'], ['zfs', 'recv', 'tank/b']);
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { pipeline } from 'node:stream';
import type { CommandRunner, PipeOptions, PipeResult, RunOptions, RunResult, SpawnedCommand, SpawnOptions } from './runner.js';
import { withScopeSignal } from './op-scope.js';
import type { ChildRecords } from './child-records.js';
import type { Logger } from '../app-context.js';

/** What the `onRun` hook sees for every run, finished or failed. */
export interface RunInfo {
  readonly argv: readonly string[];
  /** Exit code (128 + signal number when killed by a signal); null when the process never exited on its own. */
  readonly code: number | null;
  readonly durationMs: number;
  /** Set when the run failed (spawn error, timeout, abort) instead of exiting. */
  readonly error?: Error;
}

export interface NodeCommandRunnerOptions {
  /** Called once per run, for logging and metrics. A throwing hook never fails the run. */
  readonly onRun?: (info: RunInfo) => void;
  /** Cap on captured stdout and on captured stderr, each; bytes beyond it are read and dropped. */
  readonly maxOutputBytes?: number;
  /** Timeout when a run does not pass `timeoutMs`. */
  readonly defaultTimeoutMs?: number;
  /**
   * Where commands are recorded so that a restarted agent can end those its killed predecessor
   * left running (child-records.ts). With it, every command runs in a process group of its own.
   */
  readonly records?: ChildRecords;
}

const DEFAULT_TIMEOUT_MS = 10 * 60_000;
const DEFAULT_MAX_OUTPUT = 16 * 1024 * 1024;

/** Collects a stream's bytes up to a cap; decoding happens once at the end so UTF-8 never splits. */
class Capture {
  private readonly chunks: Buffer[] = [];
  private bytes = 0;
  constructor(private readonly cap: number) {}
  push(chunk: Buffer): void {
    const room = this.cap - this.bytes;
    if (room <= 0) return;
    const kept = chunk.length > room ? chunk.subarray(0, room) : chunk;
    this.chunks.push(kept);
    this.bytes += kept.length;
  }
  text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

function show(argv: readonly string[]): string {
  return argv.map((a) => JSON.stringify(a)).join(' ');
}

function signalCode(signal: NodeJS.Signals | null): number {
  const n = signal ? osConstants.signals[signal] : undefined;
  return 128 + (n ?? 0);
}

export class NodeCommandRunner implements CommandRunner {
  private readonly onRun: ((info: RunInfo) => void) | undefined;
  private readonly maxOutputBytes: number;
  private readonly defaultTimeoutMs: number;
  private readonly records: ChildRecords | undefined;

  constructor(opts: NodeCommandRunnerOptions = {}) {
    this.onRun = opts.onRun;
    this.maxOutputBytes = opts.maxOutputBytes ?? DEFAULT_MAX_OUTPUT;
    this.defaultTimeoutMs = opts.defaultTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.records = opts.records;
  }

  /**
   * The one spawn of esnap. With records, the child leads a process group of its own (a kill of
   * the agent's group must not decide when it stops: the next agent's start-up does, see
   * child-records.ts) and is recorded until it exits; a kill then takes its whole group.
   */
  private spawnChild(command: string, args: readonly string[], env: NodeJS.ProcessEnv, stdio: [StdioSlot, StdioSlot, 'pipe']): ChildProcess {
    const records = this.records;
    const child: ChildProcess = spawn(command, args, { shell: false, env, stdio: stdio as StdioOptions, windowsHide: true, detached: records !== undefined });
    if (records && child.pid !== undefined) {
      const pid = child.pid;
      records.add(pid);
      child.once('exit', () => records.remove(pid));
    }
    return child;
  }

  /** SIGKILL to the child, and to its group when it has one of its own. */
  private killChild(child: ChildProcess): void {
    if (this.records && child.pid !== undefined) {
      try {
        process.kill(-child.pid, 'SIGKILL');
        return;
      } catch {
        /* group gone: fall back to the process */
      }
    }
    child.kill('SIGKILL');
  }

  run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    const [command, ...args] = argv;
    if (command === undefined || command === '') {
      return Promise.reject(new TypeError('NodeCommandRunner.run needs a non-empty argv'));
    }
    const started = performance.now();
    const elapsed = (): number => Math.round(performance.now() - started);
    // A running agent task's cancel kills its commands too (op-scope.ts).
    const signal = withScopeSignal(options.signal);
    if (signal?.aborted) {
      const error = abortError(argv, signal);
      this.report({ argv, code: null, durationMs: 0, error });
      return Promise.reject(error);
    }

    return new Promise<RunResult>((resolve, reject) => {
      const hasInput = options.input !== undefined;
      const child = this.spawnChild(
        command,
        args,
        // Extra variables are layered over ours, so a caller adding LC_ALL keeps PATH.
        options.env ? { ...process.env, ...options.env } : process.env,
        // No input means stdin is /dev/null: a command that reads stdin sees EOF instead of hanging.
        [hasInput ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      );
      const stdout = new Capture(this.maxOutputBytes);
      const stderr = new Capture(this.maxOutputBytes);
      child.stdout?.on('data', (c: Buffer) => stdout.push(c));
      child.stderr?.on('data', (c: Buffer) => stderr.push(c));

      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      /** Set when we killed the child; the run then fails with this error once it has exited. */
      let killedWith: Error | undefined;

      const finish = this.finisher(argv, { stdout, stderr, elapsed }, { resolve, reject }, () => {
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      });

      const kill = (error: Error): void => {
        if (settled || killedWith) return;
        killedWith = error;
        this.killChild(child);
      };

      const timeoutMs = options.timeoutMs ?? this.defaultTimeoutMs;
      timer = setTimeout(
        () => kill(new Error(`Command timed out after ${timeoutMs} ms and was killed: ${show(argv)}`)),
        timeoutMs,
      );
      const onAbort = (): void => kill(abortError(argv, signal));
      signal?.addEventListener('abort', onAbort, { once: true });

      child.on('error', (err) => {
        // Spawn failures (ENOENT, EACCES) land here; the errno stays reachable through `cause`.
        finish(null, new Error(`Cannot run ${show(argv)}: ${err.message}`, { cause: err }));
      });
      // After a kill, settle on 'exit': a grandchild holding our pipes open must not delay the failure.
      child.on('exit', () => {
        if (killedWith) finish(null, killedWith);
      });
      // Normally settle on 'close', when stdout and stderr are fully read.
      child.on('close', (code, sig) => {
        if (killedWith) finish(null, killedWith);
        else finish(code ?? signalCode(sig));
      });

      if (hasInput && child.stdin) {
        // A command may exit without reading its input; EPIPE then is not the run's failure.
        child.stdin.on('error', () => undefined);
        child.stdin.end(options.input);
      }
    });
  }

  pipe(producer: readonly string[], consumer: readonly string[], options: PipeOptions = {}): Promise<PipeResult> {
    const [pCommand, ...pArgs] = producer;
    const [cCommand, ...cArgs] = consumer;
    if (!pCommand || !cCommand) return Promise.reject(new TypeError('NodeCommandRunner.pipe needs two non-empty argvs'));
    const started = performance.now();
    const elapsed = (): number => Math.round(performance.now() - started);
    // A running agent task's cancel kills its commands too (op-scope.ts).
    const signal = withScopeSignal(options.signal);
    if (signal?.aborted) {
      const error = abortError([...producer, '|', ...consumer], signal);
      for (const argv of [producer, consumer]) this.report({ argv, code: null, durationMs: 0, error });
      return Promise.reject(error);
    }

    const env = options.env ? { ...process.env, ...options.env } : process.env;
    const prod = this.spawnChild(pCommand, pArgs, env, ['ignore', 'pipe', 'pipe']);
    const cons = this.spawnChild(cCommand, cArgs, env, ['pipe', 'pipe', 'pipe']);
    // pipeline() destroys the producer's stdout when the consumer's stdin fails (consumer gone), so
    // the producer gets EPIPE on its next write instead of blocking on a full pipe forever.
    if (prod.stdout && cons.stdin) pipeline(prod.stdout, cons.stdin, () => undefined);

    /** Set when we killed both; each run then fails with this error once its process has exited. */
    let killedWith: Error | undefined;
    const kill = (error: Error): void => {
      if (killedWith) return;
      killedWith = error;
      for (const child of [prod, cons]) if (child.exitCode === null && child.signalCode === null) this.killChild(child);
    };
    const timeoutMs = options.timeoutMs ?? this.defaultTimeoutMs;
    const timer = setTimeout(
      () => kill(new Error(`Command timed out after ${timeoutMs} ms and was killed: ${show(producer)} | ${show(consumer)}`)),
      timeoutMs,
    );
    const onAbort = (): void => kill(abortError([...producer, '|', ...consumer], signal));
    signal?.addEventListener('abort', onAbort, { once: true });

    const watch = (child: ChildProcess, argv: readonly string[], captureStdout: boolean): Promise<Outcome> =>
      new Promise((resolve) => {
        const stdout = new Capture(captureStdout ? this.maxOutputBytes : 0);
        const stderr = new Capture(this.maxOutputBytes);
        if (captureStdout) child.stdout?.on('data', (c: Buffer) => stdout.push(c));
        child.stderr?.on('data', (c: Buffer) => stderr.push(c));
        let settled = false;
        const settle = (code: number | null, error?: Error): void => {
          if (settled) return;
          settled = true;
          resolve({ argv, code, error, result: { code: code ?? 0, stdout: stdout.text(), stderr: stderr.text(), durationMs: elapsed() } });
        };
        child.on('error', (err) => {
          const error = new Error(`Cannot run ${show(argv)}: ${err.message}`, { cause: err });
          kill(error); // the other half of the pipe is useless without this one
          settle(null, error);
        });
        child.on('exit', () => {
          if (killedWith) settle(null, killedWith);
        });
        child.on('close', (code, sig) => {
          if (killedWith) settle(null, killedWith);
          else settle(code ?? signalCode(sig));
        });
      });

    const produced = watch(prod, producer, false).then((o) => {
      if (!o.error && o.code === 0) options.onProducerDone?.();
      return o;
    });
    return Promise.all([produced, watch(cons, consumer, true)]).then(([p, c]) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      for (const o of [p, c]) {
        this.report(o.error ? { argv: o.argv, code: o.code, durationMs: o.result.durationMs, error: o.error } : { argv: o.argv, code: o.code, durationMs: o.result.durationMs });
      }
      const error = p.error ?? c.error;
      if (error) throw error;
      return { producer: p.result, consumer: c.result };
    });
  }

  spawn(argv: readonly string[], options: SpawnOptions = {}): SpawnedCommand {
    const [command, ...args] = argv;
    if (command === undefined || command === '') throw new TypeError('NodeCommandRunner.spawn needs a non-empty argv');
    const started = performance.now();
    const elapsed = (): number => Math.round(performance.now() - started);
    const signal = withScopeSignal(options.signal);
    const streamOut = options.stdout === 'stream' && options.stdoutTo === undefined;
    const handedOut = options.stdoutTo !== undefined;
    const child = this.spawnChild(
      command,
      args,
      options.env ? { ...process.env, ...options.env } : process.env,
      [
        options.stdinFrom !== undefined ? (options.stdinFrom as StdioSlot) : options.stdin === 'pipe' ? 'pipe' : 'ignore',
        handedOut ? (options.stdoutTo as StdioSlot) : 'pipe',
        'pipe',
      ],
    );
    // A process that exits without reading all its input must not crash us with EPIPE.
    child.stdin?.on('error', () => undefined);
    const stdout = new Capture(streamOut ? 0 : this.maxOutputBytes);
    const stderr = new Capture(this.maxOutputBytes);
    if (!streamOut && !handedOut) child.stdout?.on('data', (c: Buffer) => stdout.push(c));
    child.stderr?.on('data', (c: Buffer) => stderr.push(c));
    let killedWith: Error | undefined;
    let exited = false;
    const kill = (error: Error): void => {
      if (killedWith || exited) return;
      killedWith = error;
      this.killChild(child);
    };
    const timeoutMs = options.timeoutMs ?? this.defaultTimeoutMs;
    const timer = setTimeout(() => kill(new Error(`Command timed out after ${timeoutMs} ms and was killed: ${show(argv)}`)), timeoutMs);
    const onAbort = (): void => kill(abortError(argv, signal));
    if (signal?.aborted) queueMicrotask(onAbort);
    else signal?.addEventListener('abort', onAbort, { once: true });
    const done = new Promise<RunResult>((resolve, reject) => {
      const finish = this.finisher(argv, { stdout, stderr, elapsed }, { resolve, reject }, () => {
        exited = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      });
      child.on('error', (err) => finish(null, new Error(`Cannot run ${show(argv)}: ${err.message}`, { cause: err })));
      child.on('exit', () => {
        if (killedWith) finish(null, killedWith);
      });
      child.on('close', (code, sig) => {
        if (killedWith) finish(null, killedWith);
        else finish(code ?? signalCode(sig));
      });
    });
    return { stdin: child.stdin ?? null, stdout: streamOut ? child.stdout : null, done, kill };
  }

  /**
   * The `finish` of a run or spawn: the first call ends it and later ones do nothing. It calls
   * `ended` (the caller marks the run over and stops its timer and abort listener), reports the
   * run once, then rejects with the error or resolves with the captured output.
   */
  private finisher(
    argv: readonly string[],
    output: { readonly stdout: Capture; readonly stderr: Capture; readonly elapsed: () => number },
    settle: { readonly resolve: (result: RunResult) => void; readonly reject: (error: Error) => void },
    ended: () => void,
  ): (code: number | null, error?: Error) => void {
    let settled = false;
    return (code, error) => {
      if (settled) return;
      settled = true;
      ended();
      const durationMs = output.elapsed();
      this.report(error ? { argv, code, durationMs, error } : { argv, code, durationMs });
      if (error) settle.reject(error);
      else settle.resolve({ code: code ?? 0, stdout: output.stdout.text(), stderr: output.stderr.text(), durationMs });
    };
  }

  private report(info: RunInfo): void {
    if (!this.onRun) return;
    try {
      this.onRun(info);
    } catch (err) {
      // Logging must never fail a snapshot; the hook's failure is still surfaced as a warning.
      process.emitWarning(`NodeCommandRunner onRun hook threw: ${String(err)}`);
    }
  }
}

/** What a child's stdio slot may be: a new pipe, /dev/null, a file descriptor, or another pipe's end. */
type StdioSlot = 'pipe' | 'ignore' | number | NodeJS.ReadableStream | NodeJS.WritableStream;

interface Outcome {
  readonly argv: readonly string[];
  readonly code: number | null;
  readonly error: Error | undefined;
  readonly result: RunResult;
}

function abortError(argv: readonly string[], signal: AbortSignal | undefined): Error {
  const error = new Error(`Command aborted: ${show(argv)}`, { cause: signal?.reason });
  error.name = 'AbortError';
  return error;
}

/** A runner without hooks, for composition roots and tests that need no logging. */
export const defaultRunner: CommandRunner = new NodeCommandRunner();

/** The command runner's hook: every command at debug level, with its argv, exit code and duration. */
export function logCommands(log: Logger): (info: RunInfo) => void {
  return ({ argv, code, durationMs, error }) => {
    if (error) log.debug({ argv, code, durationMs, err: error }, 'command failed');
    else log.debug({ argv, code, durationMs }, 'command');
  };
}
