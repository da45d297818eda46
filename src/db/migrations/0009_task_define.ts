import { sql, type Kysely } from 'kysely';
import { isPostgres } from '../dialect.js';

/*
 * The definition a task runs for, in a column of its own with an index (it was only inside the
 * JSON `context`): the scheduler's overlap check (src/scheduler/slot.repository.ts,
 * definitionsInProgress) asks "which of these definitions has a create task pending or running"
 * through the index, instead of reading every pending create task of the definitions' VMs and
 * parsing its context (bench/README.md, issue 17: 200 × 36 ms in a slot of 100,000). Tasks still
 * pending or running get the column from their context; finished ones keep null (nothing asks).
 */

type AnyDb = Kysely<any>;

export async function up(db: AnyDb): Promise<void> {
  await db.schema.alterTable('task').addColumn('define_id', 'integer').execute();
  await db.schema.createIndex('task_define').on('task').columns(['define_id', 'state']).execute();
  const fromContext = isPostgres(db) ? sql`(context::json ->> 'defineId')::integer` : sql`json_extract(context, '$.defineId')`;
  await db
    .updateTable('task')
    .set({ define_id: fromContext })
    .where('kind', '=', 'snapshot_create')
    .where('state', 'in', ['PENDING', 'STARTED'])
    .execute();
}

export async function down(): Promise<void> {
  throw new Error('esnap migrations only go forward');
}
