/**
 * What es shows on stderr while the server keeps a task's answer open.
 *
 * Not a terminal: Danube's bytes exactly — `Waiting for pending task <id> `, one `.` per
 * keep-alive, and `\b\n` when the answer starts (the backspace takes back the space after the id
 * when no dot came). On a terminal: a spinner with the elapsed time on one line, redrawn in place,
 * ending with how long it took.
 */
export interface Progress {
  start(taskId: string): void;
  keepAlive(): void;
  /** The final answer started. */
  done(): void;
  /** The wait ended without an answer (Ctrl-C, broken connection). */
  stop(reason: string): void;
}

type Write = (s: string) => void;

export function dotsProgress(write: Write): Progress {
  let open = false;
  return {
    start(taskId) {
      open = true;
      write(`Waiting for pending task ${taskId} `);
    },
    keepAlive() {
      write('.');
    },
    done() {
      open = false;
      write('\b\n');
    },
    stop() {
      if (open) write('\n');
      open = false;
    },
  };
}

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/** `3.2s`, `1m05s`, `1h02m`. */
export function formatElapsed(ms: number): string {
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const whole = Math.floor(s);
  if (whole < 3600) return `${Math.floor(whole / 60)}m${String(whole % 60).padStart(2, '0')}s`;
  return `${Math.floor(whole / 3600)}h${String(Math.floor((whole % 3600) / 60)).padStart(2, '0')}m`;
}

export interface SpinnerOptions {
  readonly now: () => number;
  readonly colour: boolean;
  /** Redraw period; 0 leaves redraws to keep-alives (tests). */
  readonly intervalMs?: number;
}

export function spinnerProgress(write: Write, opts: SpinnerOptions): Progress {
  let taskId = '';
  let started = 0;
  let frame = 0;
  let timer: NodeJS.Timeout | undefined;
  const dim = (s: string): string => (opts.colour ? `\x1b[2m${s}\x1b[22m` : s);
  const line = (s: string): void => write(`\r\x1b[2K${s}`);
  const render = (): void => {
    frame = (frame + 1) % FRAMES.length;
    line(`Waiting for pending task ${taskId} ${FRAMES[frame]} ${dim(formatElapsed(opts.now() - started))}`);
  };
  const finish = (how: string): void => {
    if (timer) clearInterval(timer);
    timer = undefined;
    line(`Waiting for pending task ${taskId}: ${how} after ${formatElapsed(opts.now() - started)}\n`);
  };
  let running = false;
  return {
    start(id) {
      taskId = id;
      started = opts.now();
      running = true;
      render();
      const every = opts.intervalMs ?? 100;
      if (every > 0) {
        timer = setInterval(render, every);
        timer.unref();
      }
    },
    keepAlive() {
      if (running && !timer) render();
    },
    done() {
      if (running) finish('done');
      running = false;
    },
    stop(reason) {
      if (running) finish(reason);
      running = false;
    },
  };
}
