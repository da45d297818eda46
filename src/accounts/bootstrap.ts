/**
 * First-start data: the default DC `main` (public), the bootstrap admin `admin` (id 1, super
 * admin) and the system user `_system` (id 7, as in Danube's task ids for scheduled work).
 * Idempotent: runs on every start and only fills what is missing.
 */
import type { Kysely } from 'kysely';
import type { Clock } from '../app-context.js';
import { DEFAULT_DC, SYSTEM_USER_ID, SYSTEM_USERNAME } from '../domain/system.js';
import type { Database } from '../db/schema.js';
import { syncSerial } from '../db/capabilities.js';
import { hashKey, newSecret } from './secrets.js';

export interface BootstrapResult {
  /** The admin API key when this start created or replaced it, to print once; null otherwise. */
  readonly printedKey: string | null;
}

export async function bootstrap(db: Kysely<Database>, clock: Clock, adminApiKey: string | null): Promise<BootstrapResult> {
  const now = clock.now().toISOString();
  return db.transaction().execute(async (trx) => {
    let dc = await trx.selectFrom('dc').select('id').where('name', '=', DEFAULT_DC).executeTakeFirst();
    if (!dc) {
      dc = await trx
        .insertInto('dc')
        .values({ name: DEFAULT_DC, alias: 'Main', access: 1, owner_id: 1, settings: '{}', created: now })
        .returning('id')
        .executeTakeFirstOrThrow();
    }
    let printedKey: string | null = null;
    const admin = await trx.selectFrom('account').select(['id', 'api_key_hash']).where('username', '=', 'admin').executeTakeFirst();
    if (!admin) {
      const key = adminApiKey ?? newSecret();
      await trx
        .insertInto('account')
        .values({
          id: 1,
          username: 'admin',
          email: 'admin@localhost',
          password_hash: null,
          api_key_hash: hashKey(key),
          is_super_admin: 1,
          api_access: 1,
          is_active: 1,
          current_dc_id: dc.id,
          created: now,
        })
        .execute();
      printedKey = adminApiKey ? null : key;
    } else if (adminApiKey && admin.api_key_hash !== hashKey(adminApiKey)) {
      // ESNAP_ADMIN_API_KEY is applied on every start, so an operator can reset a lost key.
      await trx.updateTable('account').set({ api_key_hash: hashKey(adminApiKey) }).where('id', '=', admin.id).execute();
    }
    const system = await trx.selectFrom('account').select('id').where('id', '=', SYSTEM_USER_ID).executeTakeFirst();
    if (!system) {
      await trx
        .insertInto('account')
        .values({
          id: SYSTEM_USER_ID,
          username: SYSTEM_USERNAME,
          email: 'system@localhost',
          password_hash: null,
          api_key_hash: null,
          is_super_admin: 1,
          api_access: 0,
          is_active: 1,
          current_dc_id: dc.id,
          created: now,
        })
        .execute();
    }
    // Explicit ids above do not move the serial sequence; new users must come after them.
    await syncSerial(trx, 'account', 'id');
    return { printedKey };
  });
}
