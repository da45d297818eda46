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
import { PREPARED } from '../db/pg-statements.js';
import { CALLER_COLUMNS, callerCtes, type CallerLookupRow } from '../accounts/caller-lookup.js';
import { JsonText } from '../lib/json-text.js';
import type { Sort } from './snapshot.repository.js';
import { ListCache, type CachedList } from './snapshot.list-cache.js';

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

/** Placeholders by name: `$n` on PostgreSQL (each name once), `?` on SQLite (in the order of the text). */
class Binder {
  readonly order: string[] = [];
  constructor(readonly pg: boolean) {}

  readonly p = (name: string): string => {
    if (!this.pg) {
      this.order.push(name);
      return '?';
    }
    let i = this.order.indexOf(name);
    if (i < 0) i = this.order.push(name) - 1;
    return `$${i + 1}`;
  };
}

interface Shape {
  readonly text: string;
  /** Parameter names in binding order. */
  readonly order: readonly string[];
}

const shapes = new Map<string, Shape>();

function shapeKey(pg: boolean, full: boolean, f: Omit<VmListFilter, 'vmUuid'>, sort: readonly Sort[]): string {
  return `${pg ? 'p' : 's'}${full ? 'f' : 'n'}${f.diskRealId === undefined ? '' : 'd'}${f.type === undefined ? '' : 't'}${
    f.define === undefined ? '' : 'e'
  }:${sort.map((s) => `${s.desc ? '-' : ''}${s.field}`).join(',')}`;
}

/**
 * The list statement: `uuid` is the SQL of the VM's uuid (a parameter, or a column of the
 * one-statement path's VM row). Parameters: `fmt` (SQLite, full), `uuid`, `disk`, `type`, `define`.
 */
function listSql(b: Binder, full: boolean, f: Omit<VmListFilter, 'vmUuid'>, sort: readonly Sort[], uuid: () => string): string {
  const pg = b.pg;
  const head = pg ? '' : `SELECT ${full ? SQLITE_OBJECT.replace('format(?', `format(${b.p('fmt')}`) : 's.name'} `;
  const orderBy = sort.length === 0 ? '' : ` ORDER BY ${sort.map((s) => `${SORT_SQL[s.field]} ${s.desc ? 'DESC' : 'ASC'}`).join(', ')}`;
  const from = (lateral = ''): string => {
    // Placeholders in the order of the text (SQLite binds them so): the window's uuid, then the filters.
    const k = `(SELECT real_id, row_number() OVER (ORDER BY real_id) AS n FROM vm_disk WHERE vm_uuid = ${uuid()}) k`;
    const where = [`s.vm_uuid = ${uuid()}`];
    if (f.diskRealId !== undefined) where.push(`s.disk_real_id = ${b.p('disk')}`);
    if (f.type !== undefined) where.push(`s.type = ${b.p('type')}`);
    if (f.define !== undefined) where.push(`d.name = ${b.p('define')}`);
    return (
      'FROM snapshot s JOIN vm v ON v.uuid = s.vm_uuid LEFT JOIN snapshot_define d ON d.id = s.define_id ' +
      `LEFT JOIN ${k} ON k.real_id = s.disk_real_id${lateral} WHERE ${where.join(' AND ')}`
    );
  };
  if (!pg) return `${head}${from()}${orderBy}`;
  if (!full) return `SELECT coalesce(json_agg(s.name${orderBy})::text, '[]') AS j ${from()}`;
  const cols =
    'v.hostname AS hostname, s.vm_uuid AS vm_uuid, d.name AS define, s.name AS name, coalesce(k.n, 0)::int AS disk_id, ' +
    `s.note AS note, s.type AS type, ${CREATED_PG} AS created, s.status AS status, s.size AS size, s.id AS id, ` +
    '(s.fsfreeze = 1) AS fsfreeze, (s.pinned = 1) AS pinned';
  // One text value: the rows' JSON built and joined by the server (row_to_json is compact, unlike
  // json_build_object's "key" : value).
  return `SELECT coalesce('[' || string_agg(row_to_json(o)::text, ','${orderBy}) || ']', '[]') AS j ${from(` CROSS JOIN LATERAL (SELECT ${cols}) o`)}`;
}

function listShape(pg: boolean, full: boolean, f: VmListFilter, sort: readonly Sort[]): Shape {
  const key = shapeKey(pg, full, f, sort);
  let shape = shapes.get(key);
  if (shape === undefined) {
    const b = new Binder(pg);
    const text = listSql(b, full, f, sort, () => b.p('uuid'));
    // Named on PostgreSQL only for orders of one field: a bounded set of texts per connection.
    shape = { text: pg ? `${sort.length <= 1 ? PREPARED : ''}${text}` : `${PLUCK}${text}`, order: b.order };
    shapes.set(key, shape);
  }
  return shape;
}

function bind(order: readonly string[], values: Readonly<Record<string, unknown>>): unknown[] {
  return order.map((n) => values[n]);
}

function filterValues(f: Omit<VmListFilter, 'vmUuid'>): Record<string, unknown> {
  return { disk: f.diskRealId, type: f.type, define: f.define };
}

async function runList(db: Kysely<Database>, pg: boolean, vm: { readonly hostname: string; readonly uuid: string }, f: VmListFilter, sort: readonly Sort[], full: boolean): Promise<JsonText> {
  const shape = listShape(pg, full, f, sort);
  const values = { ...filterValues(f), uuid: vm.uuid, fmt: pg || !full ? undefined : sqliteFormat(vm.hostname, vm.uuid) };
  const res = await db.executeQuery<unknown>(CompiledQuery.raw(shape.text, bind(shape.order, values)));
  if (pg) return new JsonText((res.rows[0] as { j: string } | undefined)?.j ?? '[]');
  // Pluck mode: one string per row.
  const rows = res.rows as string[];
  return new JsonText(full ? `[${rows.join(',')}]` : JSON.stringify(rows));
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
  return runList(db, isPostgres(db), { hostname: vm.hostname, uuid: f.vmUuid }, f, sort, full);
}

// ---- the whole request in one statement (PostgreSQL) or two (SQLite) ----

export interface FastListRequest {
  /** SHA-256 of the ES-API-KEY header. */
  readonly keyHash: string;
  /** The DC the request names (prefix or `dc`), if any. */
  readonly dcName: string | undefined;
  /** The VM's hostname or uuid from the path. */
  readonly vm: string;
  readonly filter: Omit<VmListFilter, 'vmUuid' | 'diskRealId'>;
  readonly sort: readonly Sort[];
  readonly full: boolean;
}

export interface FastListResult {
  /** The caller's columns (CALLER_COLUMNS), for callerFromLookup. */
  readonly row: CallerLookupRow;
  /** The VM found in the caller's DC with the caller's rights (findVm's rules), if any. */
  readonly vm: { readonly uuid: string; readonly hostname: string; readonly ownerId: number } | null;
  /** Reads the list (on PostgreSQL it came with the row). */
  list(): Promise<JsonText>;
}

const fastShapes = new Map<string, Shape>();

/** This process's cache of PostgreSQL list answers (snapshot.list-cache.ts). */
export const listCache = new ListCache();

/**
 * The fingerprint of every row the list of `cv`'s VM reads: the VM's row, its snapshot rows with
 * their definitions, its disk rows, each as `ctid`/`xmin` (a row version's identity), plus the
 * VM's uuid. Equal fingerprints in one statement's snapshot mean the same row versions, hence the
 * same answer (snapshot.list-cache.ts).
 */
const FINGERPRINT_CTE =
  "cf AS (SELECT md5(cv.v_uuid || '|' || " +
  "coalesce((SELECT vm.ctid::text || vm.xmin::text FROM vm WHERE vm.uuid = cv.v_uuid), '') || '|' || " +
  "coalesce((SELECT string_agg(s.ctid::text || s.xmin::text || coalesce(d.ctid::text || d.xmin::text, '-'), ',' ORDER BY s.id) " +
  "FROM snapshot s LEFT JOIN snapshot_define d ON d.id = s.define_id WHERE s.vm_uuid = cv.v_uuid), '') || '|' || " +
  "coalesce((SELECT string_agg(k.ctid::text || k.xmin::text, ',' ORDER BY k.id) FROM vm_disk k WHERE k.vm_uuid = cv.v_uuid), '')) AS fp FROM cv)";

/**
 * The answer's JSON: the cached one when the statement found the same fingerprint (and built no
 * list), else the new one, kept. No fingerprint: no VM found (`cf` has a row only when `cv` has).
 */
function cachedOrBuilt(cacheKey: string, cached: CachedList | undefined, fp: string | null, built: string | null): string {
  if (built === null && cached !== undefined && fp !== null && fp === cached.fingerprint) {
    listCache.hits++;
    return cached.json;
  }
  listCache.misses++;
  const json = built ?? '[]';
  if (fp !== null) listCache.set(cacheKey, { fingerprint: fp, json });
  else listCache.delete(cacheKey);
  return json;
}

/**
 * One statement: the key's user, the DC and the user's rights there (accounts/caller-lookup.ts),
 * the VM as findVm finds it (in that DC, owned by the user unless admin, by hostname or uuid, the
 * hostname first), and on PostgreSQL the list itself; on SQLite the list is a second statement
 * (its rows are read in pluck mode). Both texts are fixed per request shape and prepared once.
 */
export async function lookupAndListSnapshots(db: Kysely<Database>, r: FastListRequest): Promise<FastListResult> {
  const pg = isPostgres(db);
  const dcNamed = r.dcName !== undefined;
  const key = `${dcNamed ? 'D' : ''}${pg ? shapeKey(pg, r.full, r.filter, r.sort) : 's'}`;
  let shape = fastShapes.get(key);
  if (shape === undefined) {
    const b = new Binder(pg);
    const ctes = callerCtes(b.p, dcNamed);
    const vm =
      'cv AS (SELECT vm.uuid AS v_uuid, vm.hostname AS v_hostname, vm.owner_id AS v_owner_id FROM cu JOIN cd ON true JOIN vm ON vm.dc_id = cd.d_id ' +
      `WHERE (cd.d_is_admin = 1 OR vm.owner_id = cu.u_id) AND (vm.hostname = ${b.p('vm')} OR vm.uuid = ${b.p('vm')}) ` +
      `ORDER BY CASE WHEN vm.hostname = ${b.p('vm')} THEN 0 ELSE 1 END LIMIT 1)`;
    // PostgreSQL: the rows' fingerprint, and the list only when it differs from the cached one's.
    const list = pg ? `, cf.fp AS fp, CASE WHEN cf.fp = ${b.p('fp')} THEN NULL ELSE (${listSql(b, r.full, r.filter, r.sort, () => 'cv.v_uuid')}) END AS j` : '';
    const text =
      `WITH ${ctes}, ${vm}${pg ? `, ${FINGERPRINT_CTE}` : ''} SELECT ${CALLER_COLUMNS}, cv.v_uuid, cv.v_hostname, cv.v_owner_id${list} ` +
      `FROM (SELECT 1 AS one) one LEFT JOIN cu ON true LEFT JOIN cd ON true LEFT JOIN cv ON true${pg ? ' LEFT JOIN cf ON true' : ''}`;
    shape = { text: pg ? `${PREPARED}${text}` : text, order: b.order };
    fastShapes.set(key, shape);
  }
  // The cache's key: everything the answer depends on besides the rows (whose fingerprint the
  // statement checks): the caller (rights), the DC and VM named, the shape and its filters.
  const cacheKey = pg ? JSON.stringify([key, r.keyHash, r.dcName ?? null, r.vm, r.filter.type ?? null, r.filter.define ?? null]) : '';
  const cached = pg ? listCache.get(cacheKey) : undefined;
  const values = { key_hash: r.keyHash, dc: r.dcName, vm: r.vm, fp: cached?.fingerprint ?? null, ...filterValues(r.filter) };
  const res = await db.executeQuery<CallerLookupRow>(CompiledQuery.raw(shape.text, bind(shape.order, values)));
  const row = res.rows[0]!;
  const found = row['v_uuid'] !== null && row['v_uuid'] !== undefined;
  const vm = found ? { uuid: row['v_uuid'] as string, hostname: row['v_hostname'] as string, ownerId: Number(row['v_owner_id']) } : null;
  return {
    row,
    vm,
    list: async () => {
      if (pg) return new JsonText(cachedOrBuilt(cacheKey, cached, row['fp'] as string | null, row['j'] as string | null));
      if (!vm) return new JsonText('[]');
      return runList(db, false, vm, { ...r.filter, vmUuid: vm.uuid }, r.sort, r.full);
    },
  };
}
