// The database capability module (src/db/capabilities.ts) on both engines: the features' dialect
// decisions (unique violations, row locks, skip-locked batches, page release) must give valid SQL
// and the documented behaviour on SQLite and on PostgreSQL.
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Kysely } from 'kysely';
import { forEachDb, withServer } from '../helpers/server.js';
import { dialectOf, isUniqueViolation, lockRows, needsRowLocks, releaseFreePages, skipLockedRows } from '../../src/db/capabilities.js';
import type { Database } from '../../src/db/schema.js';

interface Probe {
  cap_probe: { id: number; name: string };
}

forEachDb('database capabilities', (kind) => {
  let s: Awaited<ReturnType<typeof withServer>>;
  let db: Kysely<Database>;
  let probe: Kysely<Probe>;

  beforeAll(async () => {
    s = await withServer(kind);
    db = s.runtime.ctx.db;
    probe = db as unknown as Kysely<Probe>;
    await probe.schema
      .createTable('cap_probe')
      .addColumn('id', 'integer', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull().unique())
      .execute();
    await probe.insertInto('cap_probe').values([{ id: 1, name: 'a' }, { id: 2, name: 'b' }, { id: 3, name: 'c' }]).execute();
  });
  afterAll(async () => {
    await s?.cleanup();
  });

  async function errorOf(p: Promise<unknown>): Promise<unknown> {
    try {
      await p;
    } catch (err) {
      return err;
    }
    throw new Error('expected the statement to fail');
  }

  it('names the engine, and row locks only where transactions interleave', () => {
    expect(dialectOf(db)).toBe(kind);
    expect(needsRowLocks(db)).toBe(kind === 'postgres');
  });

  it('recognises a unique or primary-key violation, and nothing else', async () => {
    const dupName = await errorOf(probe.insertInto('cap_probe').values({ id: 9, name: 'a' }).execute());
    const dupId = await errorOf(probe.insertInto('cap_probe').values({ id: 1, name: 'z' }).execute());
    const notNull = await errorOf(probe.insertInto('cap_probe').values({ id: 10, name: null as never }).execute());
    expect(isUniqueViolation(dupName)).toBe(true);
    expect(isUniqueViolation(dupId)).toBe(true);
    expect(isUniqueViolation(notNull)).toBe(false);
    expect(isUniqueViolation(new Error('other'))).toBe(false);
    expect(isUniqueViolation(null)).toBe(false);
  });

  it('lockRows and skipLockedRows give valid statements; on PostgreSQL a locked row is skipped by another transaction', async () => {
    await db.transaction().execute(async (trx) => {
      const t = trx as unknown as Kysely<Probe>;
      await lockRows(trx, t.selectFrom('cap_probe').select('id').where('id', '=', 1));
      if (kind === 'postgres') {
        // A second transaction (another pool connection) takes only rows nobody holds.
        const others = await db.transaction().execute((trx2) =>
          skipLockedRows(trx2, (trx2 as unknown as Kysely<Probe>).selectFrom('cap_probe').select('id').orderBy('id')).execute(),
        );
        expect(others.map((r) => r.id)).toEqual([2, 3]);
      }
      const mine = await skipLockedRows(trx, t.selectFrom('cap_probe').select('id').orderBy('id')).execute();
      expect(mine.map((r) => r.id)).toEqual([1, 2, 3]);
    });
  });

  it('releaseFreePages runs on either engine', async () => {
    await expect(releaseFreePages(db)).resolves.toBeUndefined();
  });
});
