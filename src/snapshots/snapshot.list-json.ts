/**
 * The hot path of `GET /vm/<vm>/snapshot/`: the answer's `result` array built as JSON text by the
 * database in one statement, so no JavaScript object is made per row: SQLite formats one JSON
 * string per row (read in pluck mode, joined here), PostgreSQL aggregates the whole array
 * (row_to_json/string_agg) in the server process. It gives what `listSnapshots` +
 * `snapshotObject` give (same keys, order, values), for one VM's snapshots:
 * - `disk_id` is the disk's position among the VM's disks ordered by real id (0 when gone), from
 *   a window over vm_disk in the same statement instead of a separate query;
 * - `created` is sliced from the stored `toISOString()` text: `.000Z` → `Z`, `.123Z` → `.123000Z`
 *   (formatDanubeTime); a value of another shape is passed on as stored.
 * The SQL text depends only on the shape of the request (which filters, which order), so each
 * shape is built once and its prepared statement is reused (src/db/sqlite-statements.ts).
 */
import { CompiledQuery, type Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import { isPostgres } from '../db/dialect.js';
import { PLUCK } from '../db/sqlite-statements.js';
import { JsonText } from '../lib/json-text.js';
import type { Sort } from './snapshot.repository.js';

export interface VmListFilter {
  readonly vmUuid: string;
  readonly diskRealId?: number;
  readonly type?: number;
  readonly define?: string;
}

const SORT_SQL = { name: 's.name', disk_id: 's.disk_real_id', size: 's.size', created: 's.id', hostname: 'v.hostname' } as const;

/** PostgreSQL: `created` as Danube writes it, sliced from the stored toISOString() text. */
const CREATED_PG =
  "CASE WHEN length(s.created) = 24 AND substr(s.created, 20, 1) = '.' AND substr(s.created, 24, 1) = 'Z' THEN " +
  "CASE WHEN substr(s.created, 21, 3) = '000' THEN substr(s.created, 1, 19) || 'Z' ELSE substr(s.created, 1, 23) || '000Z' END " +
  'ELSE s.created END';

/** SQLite: the same as a JSON string, with as few function calls per row as it takes. */
const CREATED_SQLITE =
  "iif(length(s.created) = 24, format('\"%.19s%sZ\"', s.created, iif(substr(s.created, 20, 4) = '.000', '', substr(s.created, 20, 4) || '000')), json_quote(s.created))";

/**
 * SQLite: one JSON object per row from one format() call (SQLite's json_object and || chains cost
 * 1.5–2× as much per row); the VM's hostname and uuid are the same in every row and come as part of
 * the format string (a parameter), escaped by JSON.stringify.
 */
const SQLITE_OBJECT =
  "format(?, ifnull(json_quote(d.name), 'null'), json_quote(s.name), ifnull(k.n, 0), json_quote(s.note), s.type, " +
  `${CREATED_SQLITE}, s.status, ifnull(s.size, 'null'), s.id, iif(s.fsfreeze = 1, 'true', 'false'), iif(s.pinned = 1, 'true', 'false'))`;

function sqliteFormat(hostname: string, vmUuid: string): string {
  // format()'s only directive character is %; the JSON text of the two strings may hold one.
  const lit = (v: string): string => JSON.stringify(v).replaceAll('%', '%%');
  return (
    `{"hostname":${lit(hostname)},"vm_uuid":${lit(vmUuid)},"define":%s,"name":%s,"disk_id":%d,"note":%s,"type":%d,` +
    '"created":%s,"status":%d,"size":%s,"id":%d,"fsfreeze":%s,"pinned":%s}'
  );
}

const shapes = new Map<string, string>();

function buildSql(pg: boolean, full: boolean, f: VmListFilter, sort: readonly Sort[]): string {
  let n = 0;
  const p = (): string => (pg ? `$${++n}` : '?');
  const where = [`s.vm_uuid = ${p()}`];
  if (f.diskRealId !== undefined) where.push(`s.disk_real_id = ${p()}`);
  if (f.type !== undefined) where.push(`s.type = ${p()}`);
  if (f.define !== undefined) where.push(`d.name = ${p()}`);
  const orderBy = sort.length === 0 ? '' : ` ORDER BY ${sort.map((s) => `${SORT_SQL[s.field]} ${s.desc ? 'DESC' : 'ASC'}`).join(', ')}`;
  const from = (lateral = ''): string =>
    'FROM snapshot s JOIN vm v ON v.uuid = s.vm_uuid LEFT JOIN snapshot_define d ON d.id = s.define_id ' +
    'LEFT JOIN (SELECT real_id, row_number() OVER (ORDER BY real_id) AS n FROM vm_disk WHERE vm_uuid = ' +
    `${pg ? '$1' : '?'}) k ON k.real_id = s.disk_real_id${lateral} WHERE ${where.join(' AND ')}`;
  if (!pg) return `${PLUCK}SELECT ${full ? SQLITE_OBJECT : 's.name'} ${from()}${orderBy}`;
  if (!full) return `SELECT coalesce(json_agg(s.name${orderBy})::text, '[]') AS j ${from()}`;
  const cols =
    'v.hostname AS hostname, s.vm_uuid AS vm_uuid, d.name AS define, s.name AS name, coalesce(k.n, 0)::int AS disk_id, ' +
    `s.note AS note, s.type AS type, ${CREATED_PG} AS created, s.status AS status, s.size AS size, s.id AS id, ` +
    '(s.fsfreeze = 1) AS fsfreeze, (s.pinned = 1) AS pinned';
  // One text value: the rows' JSON built and joined by the server (row_to_json is compact, unlike
  // json_build_object's "key" : value).
  return `SELECT coalesce('[' || string_agg(row_to_json(o)::text, ','${orderBy}) || ']', '[]') AS j ${from(` CROSS JOIN LATERAL (SELECT ${cols}) o`)}`;
}

/**
 * One VM's snapshots as the JSON text of the answer's `result`: objects when `full`, names otherwise.
 */
export async function listVmSnapshotsJson(
  db: Kysely<Database>,
  vm: { readonly hostname: string },
  f: VmListFilter,
  sort: readonly Sort[],
  full: boolean,
): Promise<JsonText> {
  const pg = isPostgres(db);
  const key = `${pg ? 'p' : 's'}${full ? 'f' : 'n'}${f.diskRealId === undefined ? '' : 'd'}${f.type === undefined ? '' : 't'}${
    f.define === undefined ? '' : 'e'
  }:${sort.map((s) => `${s.desc ? '-' : ''}${s.field}`).join(',')}`;
  let text = shapes.get(key);
  if (text === undefined) {
    text = buildSql(pg, full, f, sort);
    shapes.set(key, text);
  }
  // SQLite's anonymous parameters bind in the order of the text: the format string, then the
  // vm_disk window's uuid, then the filters.
  const params: unknown[] = pg ? [f.vmUuid] : full ? [sqliteFormat(vm.hostname, f.vmUuid), f.vmUuid, f.vmUuid] : [f.vmUuid, f.vmUuid];
  if (f.diskRealId !== undefined) params.push(f.diskRealId);
  if (f.type !== undefined) params.push(f.type);
  if (f.define !== undefined) params.push(f.define);
  const res = await db.executeQuery<unknown>(CompiledQuery.raw(text, params));
  if (pg) return new JsonText((res.rows[0] as { j: string } | undefined)?.j ?? '[]');
  // Pluck mode: one string per row.
  const rows = res.rows as string[];
  return new JsonText(full ? `[${rows.join(',')}]` : JSON.stringify(rows));
}
