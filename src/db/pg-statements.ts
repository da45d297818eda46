/**
 * Named (prepared) statements on PostgreSQL under Kysely. Kysely's PostgreSQL driver sends every
 * query unnamed: the server parses and plans it each time. SQL text starting with `PREPARED` is
 * sent as a named statement instead (the name derived from the text), so each pooled connection
 * parses it once and then only binds and executes it (node-postgres remembers which names a
 * connection has prepared). Only fixed texts of the hot paths carry the marker (the snapshot list):
 * texts that vary (IN lists of any length) would pile up on the server, one per connection.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { PostgresCursor, PostgresPool, PostgresPoolClient, PostgresQueryResult } from 'kysely';

/** SQL text starting with this comment is sent as a named statement. */
export const PREPARED = '/* prepared */ ';

const names = new Map<string, string>();

function nameOf(sql: string): string {
  let name = names.get(sql);
  if (name === undefined) {
    name = `esnap_${createHash('sha1').update(sql).digest('hex').slice(0, 20)}`;
    names.set(sql, name);
  }
  return name;
}

class NamingClient implements PostgresPoolClient {
  constructor(readonly client: pg.PoolClient) {}

  query<R>(sql: string, parameters: ReadonlyArray<unknown>): Promise<PostgresQueryResult<R>>;
  query<R>(cursor: PostgresCursor<R>): PostgresCursor<R>;
  query<R>(a: string | PostgresCursor<R>, parameters?: ReadonlyArray<unknown>): Promise<PostgresQueryResult<R>> | PostgresCursor<R> {
    const c = this.client as unknown as {
      query(q: unknown, values?: unknown): unknown;
    };
    if (typeof a !== 'string') return c.query(a) as PostgresCursor<R>;
    if (!a.startsWith(PREPARED)) return c.query(a, parameters) as Promise<PostgresQueryResult<R>>;
    return c.query({ name: nameOf(a), text: a, values: parameters }) as Promise<PostgresQueryResult<R>>;
  }

  release(destroy?: boolean): void {
    this.client.release(destroy);
  }
}

/** The pool Kysely gets: the same connections, each wrapped once. */
export class NamingPool implements PostgresPool {
  readonly #pool: pg.Pool;
  readonly #wrapped = new WeakMap<pg.PoolClient, NamingClient>();

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  async connect(): Promise<PostgresPoolClient> {
    const client = await this.#pool.connect();
    let w = this.#wrapped.get(client);
    if (!w) {
      w = new NamingClient(client);
      this.#wrapped.set(client, w);
    }
    return w;
  }

  end(): Promise<void> {
    return this.#pool.end();
  }
}
