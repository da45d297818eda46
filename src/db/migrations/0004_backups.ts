import type { Kysely, CreateTableBuilder } from 'kysely';
import { isPostgres } from '../dialect.js';

/*
 * Backups (issue 15): backup definitions (Danube's BackupDefine: a VM disk copied on a schedule to
 * a storage of a backup node) and backups (Danube's Backup). A backup row keeps everything a
 * restore needs by value, not only by reference: the VM, node and storage it came from may be gone
 * (the VM's original hostname, the disk's array id and size, the backup node's and storage's names
 * and driver, where the data lives in the backup storage and its SHA-256), so a backup stays
 * listed and restorable after the loss of its source.
 *
 * `node.is_backup` marks the nodes whose storages may hold backups (ESNAP_BACKUP_NODE).
 */

type AnyDb = Kysely<any>;
type Table = CreateTableBuilder<any, any>;

function withId(db: AnyDb, t: Table): Table {
  return isPostgres(db)
    ? t.addColumn('id', 'serial', (c) => c.primaryKey())
    : t.addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement());
}

export async function up(db: AnyDb): Promise<void> {
  const big = isPostgres(db) ? 'bigint' : 'integer';

  await db.schema.alterTable('node').addColumn('is_backup', 'integer', (c) => c.notNull().defaultTo(0)).execute();

  await withId(db, db.schema.createTable('backup_define'))
    .addColumn('vm_uuid', 'text', (c) => c.notNull())
    .addColumn('disk_real_id', 'integer', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('type', 'integer', (c) => c.notNull()) // 1 dataset, 2 file
    .addColumn('node_id', 'integer', (c) => c.notNull()) // the backup node
    .addColumn('storage_id', 'integer', (c) => c.notNull()) // Danube's zpool: a storage of that node
    .addColumn('desc', 'text', (c) => c.notNull())
    .addColumn('bwlimit', 'integer') // bytes per second; null: no limit
    .addColumn('schedule', 'text', (c) => c.notNull())
    .addColumn('retention', 'integer', (c) => c.notNull())
    .addColumn('active', 'integer', (c) => c.notNull())
    .addColumn('compression', 'integer', (c) => c.notNull()) // 0 none, 1 gzip, 2 bzip2, 3 xz
    .addColumn('fsfreeze', 'integer', (c) => c.notNull())
    .addColumn('tz', 'text', (c) => c.notNull())
    .addColumn('next_run', 'text')
    .addColumn('last_run', 'text')
    .addColumn('last_success', 'text')
    .addColumn('last_error', 'text')
    .addColumn('created', 'text', (c) => c.notNull())
    .addColumn('changed', 'text', (c) => c.notNull())
    .addUniqueConstraint('backup_define_vm_disk_name', ['vm_uuid', 'disk_real_id', 'name'])
    .execute();
  await db.schema.createIndex('backup_define_node').on('backup_define').column('node_id').execute();
  await db.schema.createIndex('backup_define_next_run').on('backup_define').column('next_run').execute();

  await withId(db, db.schema.createTable('backup'))
    .addColumn('dc_id', 'integer', (c) => c.notNull())
    .addColumn('vm_uuid', 'text') // null once the VM is deleted; the backup stays
    .addColumn('vm_hostname', 'text', (c) => c.notNull()) // the original hostname (Danube's vm_hostname)
    .addColumn('vm_disk_id', 'integer', (c) => c.notNull()) // the array disk id at backup time
    .addColumn('disk_real_id', 'integer', (c) => c.notNull())
    .addColumn('disk_size_mb', 'integer', (c) => c.notNull())
    .addColumn('define_id', 'integer') // null once the definition is deleted
    .addColumn('name', 'text', (c) => c.notNull()) // <bkpdef>-YYYYmmdd_HHMMSS
    .addColumn('status', 'integer', (c) => c.notNull()) // 1 ok, 2 pending, 3 restore, 4 lost, 5 damaged
    .addColumn('type', 'integer', (c) => c.notNull())
    .addColumn('node_id', 'integer', (c) => c.notNull())
    .addColumn('node_hostname', 'text', (c) => c.notNull())
    .addColumn('storage_id', 'integer', (c) => c.notNull())
    .addColumn('storage_name', 'text', (c) => c.notNull())
    .addColumn('storage_driver', 'text', (c) => c.notNull())
    .addColumn('source_node_hostname', 'text', (c) => c.notNull())
    .addColumn('source_storage_name', 'text', (c) => c.notNull())
    .addColumn('source_storage_driver', 'text', (c) => c.notNull())
    .addColumn('file_path', 'text', (c) => c.notNull()) // type 1: dataset@snapshot; type 2: repository path
    .addColumn('restic_id', 'text') // type 2: restic's snapshot id
    .addColumn('base_snapshot', 'text') // type 1: the is-<id> base kept on the source disk
    .addColumn('checksum', 'text', (c) => c.notNull()) // SHA-256 of the stored image stream
    .addColumn('size', big)
    .addColumn('time', 'integer') // seconds
    .addColumn('note', 'text', (c) => c.notNull())
    .addColumn('last', 'integer', (c) => c.notNull())
    .addColumn('fsfreeze', 'integer', (c) => c.notNull())
    .addColumn('task_id', 'text')
    .addColumn('status_change', 'text')
    .addColumn('created', 'text', (c) => c.notNull())
    .addColumn('changed', 'text', (c) => c.notNull())
    .execute();
  // Danube's backups are unique per VM hostname, disk and name (they outlive the VM row).
  await db.schema
    .createIndex('backup_vm_disk_name')
    .on('backup')
    .columns(['vm_hostname', 'vm_disk_id', 'name'])
    .unique()
    .execute();
  await db.schema.createIndex('backup_vm').on('backup').column('vm_uuid').execute();
  await db.schema.createIndex('backup_define_id').on('backup').column('define_id').execute();
  await db.schema.createIndex('backup_node').on('backup').columns(['node_id', 'storage_id']).execute();
}

export async function down(): Promise<void> {
  throw new Error('esnap migrations only go forward');
}
