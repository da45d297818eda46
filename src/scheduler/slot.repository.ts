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
import { lockRows } from '../db/capabilities.js';
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
 */
export async function dueDefinitions(db: Db, nowIso: string, after: DueCursor | null, limit: number): Promise<DefineRow[]> {
  let q = db.selectFrom('snapshot_define').selectAll().where('next_run', '<=', nowIso).where('active', '=', 1);
  if (after) {
    q = q.where((eb) => eb(eb.refTuple('next_run', 'id'), '>', eb.tuple(after.nextRun, after.id)));
  }
  return q.orderBy('next_run').orderBy('id').limit(limit).execute();
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
export async function claimSlotsIn(trx: Transaction<Database>, reqs: readonly ClaimRequest[], nowIso: string): Promise<Set<number>> {
  const sorted = [...reqs].sort((a, b) => a.defineId - b.defineId);
  const moved: ClaimRequest[] = [];
  // One compare-and-set statement per chunk (a statement per row made the claim of thousands
  // of definitions slow); RETURNING names the rows whose `next_run` still held what was read.
  for (let i = 0; i < sorted.length; i += 200) {
    const chunk = sorted.slice(i, i + 200);
    const byId = new Map(chunk.map((r) => [r.defineId, r]));
    // Lock in id order first (where transactions interleave): two servers claiming overlapping
    // chunks then queue up instead of deadlocking on rows an UPDATE would visit in plan order.
    await lockRows(trx, trx.selectFrom('snapshot_define').select('id').where('id', 'in', [...byId.keys()]).orderBy('id'));
    const next = sql.join(chunk.map((r) => sql`WHEN ${r.defineId} THEN ${r.nextRun}`), sql` `);
    const expected = sql.join(chunk.map((r) => sql`WHEN ${r.defineId} THEN ${r.expectedNextRun}`), sql` `);
    const rows = await trx
      .updateTable('snapshot_define')
      .set({ next_run: sql<string | null>`CASE id ${next} END` })
      .where('id', 'in', [...byId.keys()])
      .where('active', '=', 1)
      .where('next_run', '=', sql<string>`CASE id ${expected} END`)
      .returning('id')
      .execute();
    for (const row of rows) {
      const r = byId.get(row.id)!;
      if (r.slot !== null) moved.push(r);
    }
  }
  const won = new Set<number>();
  // Inserted in chunks: one statement per chunk keeps the claim of thousands of slots fast.
  for (let i = 0; i < moved.length; i += 200) {
    const chunk = moved.slice(i, i + 200);
    const rows = await trx
      .insertInto('schedule_slot')
      .values(
        chunk.map((r) => ({
          define_id: r.defineId,
          slot: r.slot!,
          source: r.source,
          state: r.state,
          reason: r.reason,
          created: nowIso,
          changed: nowIso,
        })),
      )
      .onConflict((oc) => oc.columns(['define_id', 'slot']).doNothing())
      .returning('define_id')
      .execute();
    for (const row of rows) won.add(row.define_id);
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
  const wanted = new Set(defines.map((d) => d.id));
  const vmUuids = [...new Set(defines.map((d) => d.vmUuid))];
  for (let i = 0; i < vmUuids.length; i += 500) {
    const tasks = await db
      .selectFrom('task')
      .select(['context'])
      .where('vm_uuid', 'in', vmUuids.slice(i, i + 500))
      .where('state', 'in', ['PENDING', 'STARTED'])
      .where('kind', '=', 'snapshot_create')
      .execute();
    for (const t of tasks) {
      const defineId = (JSON.parse(t.context) as { defineId?: unknown }).defineId;
      if (typeof defineId === 'number' && wanted.has(defineId)) busy.add(defineId);
    }
  }
  const ids = [...wanted];
  for (let i = 0; i < ids.length; i += 500) {
    const waiting = await db
      .selectFrom('schedule_slot')
      .select('define_id')
      .where('define_id', 'in', ids.slice(i, i + 500))
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
