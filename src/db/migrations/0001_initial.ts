import { sql, type Kysely, type CreateTableBuilder } from 'kysely';
import { isPostgres } from '../dialect.js';

/* The first schema. Ids are integer identities on both engines; flags are integers; times are ISO text. */

type AnyDb = Kysely<any>;
type Table = CreateTableBuilder<any, any>;

function withId(db: AnyDb, t: Table): Table {
  return isPostgres(db)
    ? t.addColumn('id', 'serial', (c) => c.primaryKey())
    : t.addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement());
}

export async function up(db: AnyDb): Promise<void> {
  const big = isPostgres(db) ? 'bigint' : 'integer';

  await withId(db, db.schema.createTable('dc'))
    .addColumn('name', 'text', (c) => c.notNull().unique())
    .addColumn('alias', 'text', (c) => c.notNull())
    .addColumn('access', 'integer', (c) => c.notNull())
    .addColumn('owner_id', 'integer')
    .addColumn('settings', 'text', (c) => c.notNull())
    .addColumn('created', 'text', (c) => c.notNull())
    .execute();

  await withId(db, db.schema.createTable('account'))
    .addColumn('username', 'text', (c) => c.notNull().unique())
    .addColumn('email', 'text', (c) => c.notNull())
    .addColumn('password_hash', 'text')
    .addColumn('api_key_hash', 'text', (c) => c.unique())
    .addColumn('is_super_admin', 'integer', (c) => c.notNull())
    .addColumn('api_access', 'integer', (c) => c.notNull())
    .addColumn('is_active', 'integer', (c) => c.notNull())
    .addColumn('current_dc_id', 'integer')
    .addColumn('created', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('dc_admin')
    .addColumn('dc_id', 'integer', (c) => c.notNull())
    .addColumn('user_id', 'integer', (c) => c.notNull())
    .addPrimaryKeyConstraint('dc_admin_pk', ['dc_id', 'user_id'])
    .execute();

  await db.schema
    .createTable('auth_token')
    .addColumn('key_hash', 'text', (c) => c.primaryKey())
    .addColumn('user_id', 'integer', (c) => c.notNull())
    .addColumn('created', 'text', (c) => c.notNull())
    .addColumn('expires', 'text', (c) => c.notNull())
    .execute();

  await withId(db, db.schema.createTable('login_failure'))
    .addColumn('key', 'text', (c) => c.notNull())
    .addColumn('time', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('login_failure_key_time').on('login_failure').columns(['key', 'time']).execute();

  await withId(db, db.schema.createTable('node'))
    .addColumn('hostname', 'text', (c) => c.notNull().unique())
    .addColumn('uuid', 'text', (c) => c.notNull())
    .addColumn('status', 'integer', (c) => c.notNull())
    .addColumn('last_heartbeat', 'text')
    .addColumn('created', 'text', (c) => c.notNull())
    .execute();

  await withId(db, db.schema.createTable('node_storage'))
    .addColumn('node_id', 'integer', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('driver', 'text', (c) => c.notNull())
    .addColumn('config', 'text', (c) => c.notNull())
    .addColumn('size', big)
    .addColumn('size_free', big)
    .addColumn('created', 'text', (c) => c.notNull())
    .addUniqueConstraint('node_storage_node_name', ['node_id', 'name'])
    .execute();

  await db.schema
    .createTable('vm')
    .addColumn('uuid', 'text', (c) => c.primaryKey())
    .addColumn('hostname', 'text', (c) => c.notNull().unique())
    .addColumn('alias', 'text', (c) => c.notNull())
    .addColumn('dc_id', 'integer', (c) => c.notNull())
    .addColumn('owner_id', 'integer', (c) => c.notNull())
    .addColumn('node_id', 'integer', (c) => c.notNull())
    .addColumn('brand', 'text', (c) => c.notNull())
    .addColumn('status', 'integer', (c) => c.notNull())
    .addColumn('status_change', 'text')
    .addColumn('qmp_socket', 'text')
    .addColumn('qga_socket', 'text')
    .addColumn('snapshot_limit_manual', 'integer')
    .addColumn('snapshot_limit_auto', 'integer')
    .addColumn('snapshot_size_limit', 'integer')
    .addColumn('snapshot_size_percent_limit', 'integer')
    .addColumn('created', 'text', (c) => c.notNull())
    .addColumn('changed', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('vm_dc').on('vm').columns(['dc_id', 'hostname']).execute();

  await withId(db, db.schema.createTable('vm_disk'))
    .addColumn('vm_uuid', 'text', (c) => c.notNull())
    .addColumn('real_id', 'integer', (c) => c.notNull())
    .addColumn('storage_id', 'integer', (c) => c.notNull())
    .addColumn('path', 'text', (c) => c.notNull())
    .addColumn('size_mb', 'integer', (c) => c.notNull())
    .addColumn('created', 'text', (c) => c.notNull())
    .addUniqueConstraint('vm_disk_vm_real', ['vm_uuid', 'real_id'])
    .addUniqueConstraint('vm_disk_storage_path', ['storage_id', 'path'])
    .execute();

  await withId(db, db.schema.createTable('snapshot'))
    .addColumn('vm_uuid', 'text', (c) => c.notNull())
    .addColumn('define_id', 'integer')
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('type', 'integer', (c) => c.notNull())
    .addColumn('status', 'integer', (c) => c.notNull())
    .addColumn('storage_id', 'integer', (c) => c.notNull())
    .addColumn('size', big)
    .addColumn('note', 'text', (c) => c.notNull())
    .addColumn('fsfreeze', 'integer', (c) => c.notNull())
    .addColumn('pinned', 'integer', (c) => c.notNull())
    .addColumn('disk_real_id', 'integer', (c) => c.notNull())
    .addColumn('status_change', 'text')
    .addColumn('created', 'text', (c) => c.notNull())
    .addColumn('changed', 'text', (c) => c.notNull())
    .addUniqueConstraint('snapshot_vm_disk_name', ['vm_uuid', 'disk_real_id', 'name'])
    .execute();
  await db.schema.createIndex('snapshot_storage_id').on('snapshot').column('storage_id').execute();
  await db.schema.createIndex('snapshot_define_id').on('snapshot').column('define_id').execute();

  await withId(db, db.schema.createTable('snapshot_define'))
    .addColumn('vm_uuid', 'text', (c) => c.notNull())
    .addColumn('disk_real_id', 'integer', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('desc', 'text', (c) => c.notNull())
    .addColumn('schedule', 'text', (c) => c.notNull())
    .addColumn('retention', 'integer', (c) => c.notNull())
    .addColumn('active', 'integer', (c) => c.notNull())
    .addColumn('fsfreeze', 'integer', (c) => c.notNull())
    .addColumn('tz', 'text', (c) => c.notNull())
    .addColumn('catchup', 'integer', (c) => c.notNull())
    .addColumn('retention_days', 'integer')
    .addColumn('next_run', 'text')
    .addColumn('last_run', 'text')
    .addColumn('last_success', 'text')
    .addColumn('last_error', 'text')
    .addColumn('created', 'text', (c) => c.notNull())
    .addColumn('changed', 'text', (c) => c.notNull())
    .addUniqueConstraint('snapshot_define_vm_disk_name', ['vm_uuid', 'disk_real_id', 'name'])
    .execute();

  await db.schema
    .createTable('task')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('user_id', 'integer', (c) => c.notNull())
    .addColumn('owner_id', 'integer', (c) => c.notNull())
    .addColumn('dc_id', 'integer', (c) => c.notNull())
    .addColumn('vm_uuid', 'text')
    .addColumn('node_id', 'integer')
    .addColumn('payload', 'text', (c) => c.notNull())
    .addColumn('context', 'text', (c) => c.notNull())
    .addColumn('node', 'text')
    .addColumn('apiview', 'text', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('result', 'text')
    .addColumn('log_msg', 'text', (c) => c.notNull())
    .addColumn('log_detail', 'text', (c) => c.notNull())
    .addColumn('created', 'text', (c) => c.notNull())
    .addColumn('started', 'text')
    .addColumn('finished', 'text')
    .execute();
  await db.schema.createIndex('task_state').on('task').columns(['state', 'created']).execute();
  await db.schema.createIndex('task_vm').on('task').columns(['vm_uuid', 'state']).execute();

  await db.schema
    .createTable('task_lock')
    .addColumn('key', 'text', (c) => c.primaryKey())
    .addColumn('task_id', 'text', (c) => c.notNull())
    .addColumn('created', 'text', (c) => c.notNull())
    .execute();

  await withId(db, db.schema.createTable('task_log'))
    .addColumn('time', 'text', (c) => c.notNull())
    .addColumn('task_id', 'text', (c) => c.notNull())
    .addColumn('task_type', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('user_id', 'integer', (c) => c.notNull())
    .addColumn('username', 'text', (c) => c.notNull())
    .addColumn('owner_id', 'integer', (c) => c.notNull())
    .addColumn('dc_id', 'integer', (c) => c.notNull())
    .addColumn('msg', 'text', (c) => c.notNull())
    .addColumn('detail', 'text', (c) => c.notNull())
    .addColumn('object_type', 'text', (c) => c.notNull())
    .addColumn('object_name', 'text', (c) => c.notNull())
    .addColumn('object_alias', 'text', (c) => c.notNull())
    .addColumn('object_pk', 'text', (c) => c.notNull())
    .addColumn('flag', 'integer', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('task_log_dc_time').on('task_log').columns(['dc_id', 'time']).execute();
  await db.schema.createIndex('task_log_task').on('task_log').column('task_id').execute();
  void sql;
}

export async function down(): Promise<void> {
  throw new Error('esnap migrations only go forward');
}
