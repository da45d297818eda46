import { sql, type Kysely } from 'kysely';
import { isPostgres } from '../dialect.js';

/*
 * On PostgreSQL, the id of the transaction that inserted a task (`pg_current_xact_id()`, a column
 * default, so every insert path gets it), with an index over the open tasks only: the cluster
 * sweep (src/tasks/deadline.sweep.ts) asks for the tasks opened since its last pass, by the
 * snapshot horizon it read then, instead of reading every pending task on every pass (81 passes
 * × 247 ms in a slot of 100,000 definitions; bench/README.md, issue 17). A transaction id is the
 * database's own counter: no machine's clock is compared. Tasks from before keep null (the first
 * pass of each server reads every open task). SQLite has the column too, always null (no sweep
 * runs there).
 */

type AnyDb = Kysely<any>;

export async function up(db: AnyDb): Promise<void> {
  if (isPostgres(db)) {
    await sql`ALTER TABLE task ADD COLUMN open_xid xid8`.execute(db);
    await sql`ALTER TABLE task ALTER COLUMN open_xid SET DEFAULT pg_current_xact_id()`.execute(db);
    await sql`CREATE INDEX task_open_xid ON task (open_xid) WHERE state IN ('PENDING', 'STARTED')`.execute(db);
  } else {
    await db.schema.alterTable('task').addColumn('open_xid', 'text').execute();
  }
}

export async function down(): Promise<void> {
  throw new Error('esnap migrations only go forward');
}
