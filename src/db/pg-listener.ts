/**
 * One dedicated PostgreSQL connection for LISTEN, shared by whoever needs wake-ups (task
 * completions across servers, queue wake-ups). A pooled connection cannot LISTEN: the pool hands it
 * to someone else. When the connection drops (PostgreSQL restart, network), it reconnects with a
 * capped backoff, LISTENs again, and calls every `onReconnect` hook: notifications sent while it was
 * away are lost, so listeners must re-check what they wait for (that is why waiters always re-read
 * state after a wake-up).
 *
 * @example
 *   const l = new PgListener(url, log);
 *   l.listen('esnap_task_done', (taskId) => local.notify(taskId));
 *   l.onReconnect(() => local.wakeAll());
 *   await l.start();
 */
import pg from 'pg';
import type { Logger } from '../app-context.js';
import { Backoff } from '../domain/backoff.js';

type Handler = (payload: string) => void;


export class PgListener {
  readonly #channels = new Map<string, Set<Handler>>();
  readonly #reconnectHooks = new Set<() => void>();
  #client: pg.Client | null = null;
  #stopped = true;
  readonly #backoff = new Backoff({ firstMs: 100, maxMs: 2000 });
  #timer: NodeJS.Timeout | null = null;
  #connecting: Promise<void> | null = null;
  /** The LISTEN statements sent after connecting, one after the other (see listen). */
  #listens: Promise<void> = Promise.resolve();
  /** Counts reconnections (tests and metrics). */
  reconnects = 0;

  constructor(
    private readonly connectionString: string,
    private readonly log: Logger,
  ) {}

  /** Subscribes to a channel (quoted as an identifier); takes effect at once when connected. */
  listen(channel: string, handler: Handler): void {
    let set = this.#channels.get(channel);
    if (!set) {
      set = new Set();
      this.#channels.set(channel, set);
      const c = this.#client;
      // One statement at a time on the connection: several subscriptions made in one tick would
      // otherwise send a query while another runs (deprecated by node-postgres, an error in pg 9).
      if (c) {
        this.#listens = this.#listens
          .then(() => c.query(`LISTEN ${quoteIdent(channel)}`))
          .then(
            () => undefined,
            (err: unknown) => this.log.warn({ err, channel }, 'LISTEN failed'),
          );
      }
    }
    set.add(handler);
  }

  onReconnect(hook: () => void): void {
    this.#reconnectHooks.add(hook);
  }

  /** Connects; rejects when the first connection fails (the caller decides whether to go on). */
  async start(): Promise<void> {
    this.#stopped = false;
    await this.#connect(false);
  }

  get connected(): boolean {
    return this.#client !== null;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#connecting?.catch(() => undefined);
    const c = this.#client;
    this.#client = null;
    if (c) await c.end().catch(() => undefined);
  }

  #connect(isReconnect: boolean): Promise<void> {
    const attempt = (async () => {
      const client = new pg.Client({ connectionString: this.connectionString });
      // Errors arrive here when the server goes away; 'end' follows and schedules the reconnect.
      client.on('error', (err) => this.log.warn({ err }, 'LISTEN connection error'));
      client.on('end', () => {
        if (this.#client !== client) return;
        this.#client = null;
        this.#schedule();
      });
      client.on('notification', (n) => {
        const set = this.#channels.get(n.channel);
        if (!set) return;
        for (const h of set) {
          try {
            h(n.payload ?? '');
          } catch (err) {
            this.log.error({ err, channel: n.channel }, 'notification handler failed');
          }
        }
      });
      try {
        await client.connect();
        for (const channel of this.#channels.keys()) await client.query(`LISTEN ${quoteIdent(channel)}`);
      } catch (err) {
        await client.end().catch(() => undefined);
        throw err;
      }
      if (this.#stopped) {
        await client.end().catch(() => undefined);
        return;
      }
      this.#client = client;
      this.#backoff.reset();
      if (isReconnect) {
        this.reconnects++;
        this.log.info({ reconnects: this.reconnects }, 'LISTEN connection restored');
        for (const hook of this.#reconnectHooks) {
          try {
            hook();
          } catch (err) {
            this.log.error({ err }, 'reconnect hook failed');
          }
        }
      }
    })();
    this.#connecting = attempt;
    return attempt.finally(() => {
      if (this.#connecting === attempt) this.#connecting = null;
    });
  }

  #schedule(): void {
    if (this.#stopped || this.#timer) return;
    const delay = this.#backoff.next();
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#connect(true).catch((err: unknown) => {
        this.log.warn({ err: (err as Error).message }, 'LISTEN reconnect failed; retrying');
        this.#schedule();
      });
    }, delay);
  }
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** A channel name from a base and an optional schema, within PostgreSQL's 63-byte identifier limit. */
export function channelName(base: string, schema?: string | null): string {
  return (schema ? `${base}_${schema}` : base).slice(0, 63);
}
