/**
 * esnap's own statements on pg-boss's tables (pgboss.queue.ts): the leases of the servers' queues,
 * a withdrawn or handed-back job, what a node's queue holds, and the lock under which the servers
 * of a schema create queues. pg-boss 10 has no call for these; each is one statement on its `job`
 * (and `archive`) table, by queue name and job id, so the partition of the queue is the one read.
 *
 * Example:
 *   const jobs = new BossJobTable(pool, 'pgboss');
 *   await jobs.requeue('esnap.node.n1', ids);
 */
import type pg from 'pg';

export class BossJobTable {
  constructor(
    private readonly pool: pg.Pool,
    private readonly schema: string,
  ) {}

  /** Extends the lease of active jobs to now + `leaseS`. */
  async renew(name: string, ids: readonly string[], leaseS: number): Promise<void> {
    if (ids.length === 0) return;
    await this.pool.query(
      `UPDATE ${this.schema}.job SET expire_in = (now() - started_on) + make_interval(secs => $3)
       WHERE name = $1 AND id = ANY($2::uuid[]) AND state = 'active'`,
      [name, [...ids], leaseS],
    );
  }

  /** Hands back the active jobs whose lease lapsed (their holder is gone); how many. */
  async reclaimLapsed(name: string): Promise<number> {
    const { rowCount } = await this.pool.query(
      `UPDATE ${this.schema}.job SET state = 'retry', start_after = now()
       WHERE name = $1 AND state = 'active' AND started_on + expire_in < now()`,
      [name],
    );
    return rowCount ?? 0;
  }

  /**
   * Cancels a job not yet taken. True when it will not run: withdrawn now, or never sent, or
   * cancelled before. The update waits on a row a fetch has locked and then sees it active: taken wins.
   */
  async withdraw(name: string, id: string): Promise<boolean> {
    const s = this.schema;
    const { rows } = await this.pool.query<{ withdrawn: string; present: string }>(
      `WITH c AS (
         UPDATE ${s}.job SET state = 'cancelled', completed_on = now()
         WHERE name = $1 AND id = $2 AND state < 'active' RETURNING 1
       )
       SELECT (SELECT count(*) FROM c) AS withdrawn,
              (SELECT count(*) FROM ${s}.job WHERE name = $1 AND id = $2 AND state <> 'cancelled') AS present`,
      [name, id],
    );
    const r = rows[0]!;
    return Number(r.withdrawn) === 1 || Number(r.present) === 0;
  }

  /** The ids among `ids` that have a job on the queue, live or archived. */
  async known(name: string, ids: readonly string[]): Promise<Set<string>> {
    const s = this.schema;
    const { rows } = await this.pool.query<{ id: string }>(
      `SELECT id FROM ${s}.job WHERE name = $1 AND id = ANY($2::uuid[])
       UNION SELECT id FROM ${s}.archive WHERE name = $1 AND id = ANY($2::uuid[])`,
      [name, [...ids]],
    );
    return new Set(rows.map((r) => r.id));
  }

  /** The state of each job among `ids` that the queue holds (`created`, `active`, …). */
  async states(name: string, ids: readonly string[]): Promise<Map<string, string>> {
    const { rows } = await this.pool.query<{ id: string; state: string }>(`SELECT id, state FROM ${this.schema}.job WHERE name = $1 AND id = ANY($2::uuid[])`, [
      name,
      [...ids],
    ]);
    return new Map(rows.map((r) => [r.id, r.state]));
  }

  /** Jobs waiting to be taken. */
  async depth(name: string): Promise<number> {
    const { rows } = await this.pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${this.schema}.job WHERE name = $1 AND state < 'active'`, [name]);
    return Number(rows[0]!.n);
  }

  /** Jobs a worker holds as active, oldest first. */
  async active<T>(name: string): Promise<Array<{ id: string; data: T }>> {
    const { rows } = await this.pool.query<{ id: string; data: T }>(
      `SELECT id, data FROM ${this.schema}.job WHERE name = $1 AND state = 'active' ORDER BY started_on`,
      [name],
    );
    return rows;
  }

  /** Hands active jobs back so that they are delivered again. */
  async requeue(name: string, ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.pool.query(`UPDATE ${this.schema}.job SET state = 'retry', start_after = now() WHERE name = $1 AND id = ANY($2::uuid[]) AND state = 'active'`, [
      name,
      [...ids],
    ]);
  }

  /**
   * Runs `create` (pg-boss's queue creation) under a session advisory lock of the schema, so that
   * the servers of a schema create queues one at a time. pg-boss inserts the queue's row and then
   * adds its partition's foreign key to the queue table, and two creations of one queue at once
   * deadlocked (each waits for what the other holds: the table lock of the second's insert, the
   * first's row), failing the victim's send (pgboss.create.test.ts). Behind the lock, the second
   * creation finds the row and does nothing. A connection lost meanwhile takes its lock with it
   * (the session ends): the connection is closed, never handed back.
   */
  async createLocked(create: () => Promise<void>): Promise<void> {
    const key = `${this.schema} esnap queue create`;
    const client = await this.pool.connect();
    try {
      await client.query('SELECT pg_advisory_lock(hashtext($1))', [key]);
    } catch (err) {
      client.release(true);
      throw err;
    }
    try {
      await create();
    } finally {
      const unlocked = await client.query('SELECT pg_advisory_unlock(hashtext($1))', [key]).then(
        () => true,
        () => false,
      );
      client.release(!unlocked);
    }
  }
}
