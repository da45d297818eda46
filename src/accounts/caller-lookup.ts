/**
 * The caller of an `ES-API-KEY` request resolved in SQL, as common table expressions another
 * statement can build on (the snapshot list's one-statement path, issue 17): `cu` is the key's
 * user, `cd` the request's DC with the user's rights there. `callerFromLookup` then applies, to the
 * row read back, the checks of `authenticate` and `resolveDc` (src/http/auth.ts) in their order and
 * with their errors; the two must agree.
 */
import type { DcRow, UserRow } from '../db/schema.js';
import { DEFAULT_DC } from '../domain/system.js';
import { apiError } from '../domain/errors.js';
import type { Caller } from './caller.js';

const USER_COLS = Object.keys({
  id: 1, username: 1, email: 1, password_hash: 1, api_key_hash: 1, is_super_admin: 1, api_access: 1, is_active: 1, current_dc_id: 1, created: 1,
} satisfies Record<keyof UserRow, 1>) as (keyof UserRow)[];

const DC_COLS = Object.keys({
  id: 1, name: 1, alias: 1, access: 1, owner_id: 1, settings: 1, created: 1,
} satisfies Record<keyof DcRow, 1>) as (keyof DcRow)[];

/** A parameter's placeholder by name (`$n` on PostgreSQL, `?` in order on SQLite). */
export type Param = (name: string) => string;

/**
 * `cu` and `cd` (without the `WITH`). Parameters: `key_hash` (the API key's SHA-256), and `dc` (the
 * DC named by the request) when `dcNamed`. Without a named DC: the user's current DC, else the
 * default one. `cd.d_is_admin` is Danube's is_admin there; `cd.d_open` with it is "may enter".
 */
export function callerCtes(p: Param, dcNamed: boolean): string {
  const u = `cu AS (SELECT ${USER_COLS.map((c) => `${c} AS u_${c}`).join(', ')} FROM account WHERE api_key_hash = ${p('key_hash')})`;
  const where = dcNamed ? `dc.name = ${p('dc')}` : `(dc.id = cu.u_current_dc_id OR dc.name = '${DEFAULT_DC}')`;
  const d =
    `cd AS (SELECT ${DC_COLS.map((c) => `dc.${c} AS d_${c}`).join(', ')}, ` +
    'CASE WHEN cu.u_is_super_admin = 1 OR dc.owner_id = cu.u_id OR EXISTS (SELECT 1 FROM dc_admin a WHERE a.dc_id = dc.id AND a.user_id = cu.u_id) ' +
    'THEN 1 ELSE 0 END AS d_is_admin, CASE WHEN dc.access = 1 OR dc.id = cu.u_current_dc_id THEN 1 ELSE 0 END AS d_open ' +
    `FROM cu JOIN dc ON ${where} ORDER BY CASE WHEN dc.id = cu.u_current_dc_id THEN 0 ELSE 1 END LIMIT 1)`;
  return `${u}, ${d}`;
}

/** The columns of `cu` and `cd` for the outer SELECT. */
export const CALLER_COLUMNS = [...USER_COLS.map((c) => `cu.u_${c}`), ...DC_COLS.map((c) => `cd.d_${c}`), 'cd.d_is_admin', 'cd.d_open'].join(', ');

export type CallerLookupRow = Record<string, unknown>;

/**
 * The Caller from a row with CALLER_COLUMNS, or the error `authenticate`/`resolveDc` throw for
 * it (403 invalid key, inactive user, no API access; 404 DC not found). `null` when the row does
 * not settle it (no DC found without a named one: the general path decides).
 */
export function callerFromLookup(row: CallerLookupRow, dcNamed: boolean): Caller | null {
  if (row['u_id'] === null || row['u_id'] === undefined) throw apiError('invalidApiKey');
  const user = Object.fromEntries(USER_COLS.map((c) => [c, row[`u_${c}`]])) as unknown as UserRow;
  if (!user.is_active) throw apiError('userInactive');
  if (!user.api_access) throw apiError('noApiAccess');
  const found = row['d_id'] !== null && row['d_id'] !== undefined;
  const isAdmin = Number(row['d_is_admin']) === 1;
  if (dcNamed && (!found || !(isAdmin || Number(row['d_open']) === 1))) throw apiError('dcNotFound');
  if (!found) return null;
  const dc = Object.fromEntries(DC_COLS.map((c) => [c, row[`d_${c}`]])) as unknown as DcRow;
  return { user, dc, isAdmin, isSuperAdmin: user.is_super_admin === 1 };
}
