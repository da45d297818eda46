/**
 * A background loop: `tick` every `everyMs`, never overlapping the previous tick; a tick's error is
 * logged and counted, never fatal. `start`/`stop` are symmetric and `stop` waits for a tick in
 * flight. With `immediate`, the first tick runs at start() instead of after the first wait (a
 * loop whose work may be overdue, such as housekeeping after a long downtime).
 */
import type { Logger } from '../app-context.js';

export class Ticker {
  #running: Promise<void> | null = null;
  #stopped = true;
  #wake: (() => void) | null = null;
  errors = 0;
  ticks = 0;

  constructor(
    private readonly name: string,
    private readonly everyMs: number,
    private readonly tick: () => Promise<void>,
    private readonly log: Logger,
    private readonly opts: { readonly immediate?: boolean } = {},
  ) {}

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#running = this.#loop();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#wake?.();
    await this.#running;
    this.#running = null;
  }

  async #loop(): Promise<void> {
    let wait = !this.opts.immediate;
    while (!this.#stopped) {
      if (wait) await this.#pause();
      wait = true;
      if (this.#stopped) return;
      try {
        await this.tick();
        this.ticks++;
      } catch (err) {
        this.errors++;
        this.log.error({ err, loop: this.name, errors: this.errors }, 'background tick failed');
      }
    }
  }

  async #pause(): Promise<void> {
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, this.everyMs);
      this.#wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
    this.#wake = null;
  }
}
