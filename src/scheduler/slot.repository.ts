/**
 * Queries of the scheduler: due definitions, the atomic claim of slots, overlap detection and the
 * `schedule_slot` history.
 *
 * The claim is what makes each slot fire at most once, with any number of servers on one
 * database: in one transaction, a definition's `next_run` is moved only if it still holds the value
 * the tick read (a compare-and-set that a concurrent server or a schedule change makes fail), and
 * the slot is inserted into `schedule_slot`, whose primary key (define_id, slot) refuses a second
 * insert of the same slot even if `next_run` were ever set back.
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import { dialectOf, skipLockedRows } from '../db/capabilities.js';
import { insertRows } from '../db/bulk.js';
import type { Database, DefineRow, ScheduleSlotTable } from '../db/schema.js';

type Db = Kysely<Database> | Transaction<Database>;

export type SlotState = 'fired' | 'waiting' | 'skipped' | 'failed';
export type SlotSource = 'cron' | 'catchup';

/** Where a page of due definitions ended: the next page starts after it. */
export interface DueCursor {
  readonly nextRun: string;
  readonly id: number;
}

/**
 * Active definitions whose next run is due, oldest slot first, in keyset pages after `after`.
 * Ordered by (next_run, id) so the (next_run, id) index serves it: with nothing due a tick reads no
 * rows, and the cursor is a row comparison, so each page is a range of that index (an `OR` of the
 * two columns made PostgreSQL scan and sort every due definition per page).
 *
 * Where transactions interleave (PostgreSQL) the page is taken with `FOR UPDATE SKIP LOCKED`, to be
 * read inside the claim's transaction (the scheduler does so through readPlanWrite): a definition
 * another server's claim holds is passed over, so servers ticking one slot split it instead of
 * queueing behind each other's locks (two servers walking the same pages with `FOR UPDATE` spent
 * 150 s of a 100,000-definition slot waiting; issue 17). A passed-over definition is either
 * claimed by that server or, if its transaction rolls back, still due at the next tick.
 */
export async function dueDefinitions(db: Db, nowIso: string, after: DueCursor | null, limit: number): Promise<DefineRow[]> {
  let q = db.selectFrom('snapshot_define').selectAll().where('next_run', '<=', nowIso).where('active', '=', 1);
  if (after) {
    q = q.where((eb) => eb(eb.refTuple('next_run', 'id'), '>', eb.tuple(after.nextRun, after.id)));
  }
  return skipLockedRows(db, q.orderBy('next_run').orderBy('id').limit(limit)).execute();
}

/** The earliest next run of any active definition (the loop sleeps until then at most). */
export async function earliestNextRun(db: Db): Promise<string | null> {
  const row = await db
    .selectFrom('snapshot_define')
    .select((eb) => eb.fn.min('next_run').as('next'))
    .where('active', '=', 1)
    .where('next_run', 'is not', null)
    .executeTakeFirst();
  return (row?.next as string | null | undefined) ?? null;
}

export interface ClaimRequest {
  readonly defineId: number;
  /** The `next_run` the tick read; the claim fails if it changed since. */
  readonly expectedNextRun: string;
  readonly nextRun: string | null;
  /** The slot to record; null only moves `next_run` (a definition whose plan failed). */
  readonly slot: string | null;
  readonly source: SlotSource;
  readonly state: SlotState;
  readonly reason: string | null;
  /**
   * The slot starts a run (its definition's previous run is not in progress): `last_run` becomes
   * the tick's time when this claim records the slot. Default false.
   */
  readonly run?: boolean;
}

/**
 * Claims slots in one transaction (see the file comment). Returns the definition ids whose slot
 * this call recorded: only those may act on it.
 */
export async function claimSlots(db: Kysely<Database>, reqs: readonly ClaimRequest[], nowIso: string): Promise<Set<number>> {
  return db.transaction().execute((trx) => claimSlotsIn(trx, reqs, nowIso));
}

/**
 * claimSlots inside the caller's transaction: the scheduler submits the claimed slots' tasks in
 * the same one, so a slot row and its task commit together or not at all.
 */
export async function claimSlotsIn(
  trx: Transaction<Database>,
  reqs: readonly ClaimRequest[],
  nowIso: string,
  /**
   * The caller read these definitions with `FOR UPDATE SKIP LOCKED` in this same transaction (the
   * scheduler's due page), so they are locked already and the claim's own lock statement, a no-op
   * then, is left out (1,000 ms of 20,000 definitions' tick, issue 17).
   */
  opts: { readonly locked?: boolean } = {},
): Promise<Set<number>> {
  const sorted = [...reqs].sort((a, b) => a.defineId - b.defineId);
  const moved: ClaimRequest[] = [];
  const pg = dialectOf(trx) === 'postgres';
  // One compare-and-set statement per chunk (a statement per row made the claim of thousands
  // of definitions slow); RETURNING names the rows whose `next_run` still held what was read.
  // PostgreSQL takes a chunk as one JSON value joined to the table; SQLite a CASE per column.
  const size = pg ? 2000 : 200;
  for (let i = 0; i < sorted.length; i += size) {
    const chunk = sorted.slice(i, i + size);
    const byId = new Map(chunk.map((r) => [r.defineId, r]));
    let ids = [...byId.keys()];
    let rows: Array<{ id: number }>;
    if (pg) {
      // Lock first, in id order, only rows no other transaction holds (the tick's own due page
      // holds them already): rows another server's claim holds are left to that claim instead of
      // waited for, and no two claims deadlock on rows an UPDATE would visit in plan order.
      if (opts.locked !== true) {
        const free = await skipLockedRows(trx, trx.selectFrom('snapshot_define').select('id').where('id', '=', sql<number>`ANY(${ids}::integer[])`).orderBy('id')).execute();
        ids = free.map((r) => r.id);
      }
      // `last_run` goes in the same statement (a second UPDATE of the same rows was a round trip
      // and a second row version each, issue 17): set for a run whose slot is not recorded yet,
      // the slot row the insert below then records. The rows are locked here, so no other
      // transaction can record that slot between this check and the insert.
      const json = JSON.stringify(
        ids.map((id) => byId.get(id)!).map((r) => ({ id: r.defineId, next: r.nextRun, expected: r.expectedNextRun, slot: r.run === true ? r.slot : null })),
      );
      rows = (
        await sql<{ id: number }>`UPDATE snapshot_define AS d SET next_run = v.next,
            last_run = CASE WHEN v.slot IS NOT NULL AND NOT EXISTS (SELECT 1 FROM schedule_slot s WHERE s.define_id = d.id AND s.slot = v.slot)
              THEN ${nowIso} ELSE d.last_run END
          FROM json_to_recordset(${json}::json) AS v(id integer, next text, expected text, slot text)
          WHERE d.id = v.id AND d.active = 1 AND d.next_run = v.expected RETURNING d.id`.execute(trx)
      ).rows;
    } else {
      const next = sql.join(chunk.map((r) => sql`WHEN ${r.defineId} THEN ${r.nextRun}`), sql` `);
      const expected = sql.join(chunk.map((r) => sql`WHEN ${r.defineId} THEN ${r.expectedNextRun}`), sql` `);
      rows = await trx
        .updateTable('snapshot_define')
        .set({ next_run: sql<string | null>`CASE id ${next} END` })
        .where('id', 'in', ids)
        .where('active', '=', 1)
        .where('next_run', '=', sql<string>`CASE id ${expected} END`)
        .returning('id')
        .execute();
    }
    for (const row of rows) {
      const r = byId.get(row.id)!;
      if (r.slot !== null) moved.push(r);
    }
  }
  const won = new Set<number>();
  // The slot rows in bulk (src/db/bulk.ts); the primary key refuses a slot recorded before.
  const back = await insertRows(
    trx,
    'schedule_slot',
    moved.map((r) => ({ define_id: r.defineId, slot: r.slot!, source: r.source, state: r.state, reason: r.reason, created: nowIso, changed: nowIso })),
    { onConflictDoNothing: ['define_id', 'slot'], returning: ['define_id'] },
  );
  for (const row of back) won.add(Number(row['define_id']));
  if (!pg) {
    // SQLite: the recorded slots' runs in one more statement per chunk (in process, no round trip).
    const ran = moved.filter((r) => r.run === true && won.has(r.defineId)).map((r) => r.defineId);
    for (let i = 0; i < ran.length; i += size) {
      await trx.updateTable('snapshot_define').set({ last_run: nowIso }).where('id', 'in', ran.slice(i, i + size)).execute();
    }
  }
  return won;
}

export async function setSlotState(db: Db, defineId: number, slot: string, state: SlotState, reason: string | null, nowIso: string): Promise<void> {
  await db
    .updateTable('schedule_slot')
    .set({ state, reason, changed: nowIso })
    .where('define_id', '=', defineId)
    .where('slot', '=', slot)
    .execute();
}

export async function getSlot(db: Db, defineId: number, slot: string): Promise<ScheduleSlotTable | undefined> {
  return db.selectFrom('schedule_slot').selectAll().where('define_id', '=', defineId).where('slot', '=', slot).executeTakeFirst();
}

export async function slotsOf(db: Db, defineId: number): Promise<ScheduleSlotTable[]> {
  return db.selectFrom('schedule_slot').selectAll().where('define_id', '=', defineId).orderBy('slot').execute();
}

/**
 * Of `defineIds`, those whose previous automatic snapshot is still in progress: a create task of
 * the definition that is pending or running, or (on any server) a scheduled run still waiting for
 * its disk lock, recorded as a `waiting` slot newer than `waitingSince`.
 */
export async function definitionsInProgress(db: Db, defines: ReadonlyArray<{ id: number; vmUuid: string }>, waitingSince: string): Promise<Set<number>> {
  const busy = new Set<number>();
  if (defines.length === 0) return busy;
  const ids = [...new Set(defines.map((d) => d.id))];
  const pg = dialectOf(db) === 'postgres';
  // Through the (define_id, state) index of migration 0009: only these definitions' own tasks are
  // read (a slot's first batch finds none; the tasks the same tick made for other definitions
  // are never visited). PostgreSQL takes the ids as one array value.
  const size = pg ? 5000 : 500;
  for (let i = 0; i < ids.length; i += size) {
    const chunk = ids.slice(i, i + size);
    const tasks = await db
      .selectFrom('task')
      .select('define_id')
      .where((eb) => (pg ? eb('define_id', '=', sql<number>`ANY(${chunk}::integer[])`) : eb('define_id', 'in', chunk)))
      .where('state', 'in', ['PENDING', 'STARTED'])
      .where('kind', '=', 'snapshot_create')
      .execute();
    for (const t of tasks) if (t.define_id !== null) busy.add(t.define_id);
    const waiting = await db
      .selectFrom('schedule_slot')
      .select('define_id')
      .where((eb) => (pg ? eb('define_id', '=', sql<number>`ANY(${chunk}::integer[])`) : eb('define_id', 'in', chunk)))
      .where('state', '=', 'waiting')
      .where('changed', '>=', waitingSince)
      .execute();
    for (const w of waiting) busy.add(w.define_id);
  }
  return busy;
}

/** Drops slot history older than `beforeIso`; the at-most-once guarantee only needs recent slots. */
export async function pruneSlots(db: Db, beforeIso: string): Promise<number> {
  const res = await db.deleteFrom('schedule_slot').where('created', '<', beforeIso).executeTakeFirst();
  return Number(res.numDeletedRows);
}
