/**
 * The database as Kysely sees it. One schema for SQLite and PostgreSQL: flags are integers 0/1,
 * times are ISO-8601 UTC strings (sortable as text), JSON is text. That keeps every query and
 * every row identical on both engines.
 */
import type { BackupDefineTable, BackupTable } from '../backups/backup.schema.js';
import type { Generated, Insertable, Selectable, Updateable } from 'kysely';

export interface DcTable {
  id: Generated<number>;
  name: string;
  alias: string;
  access: number; // 1 public, 3 private
  owner_id: number | null;
  settings: string; // JSON object of VMS_VM_SNAPSHOT_* settings
  created: string;
}

export interface UserTable {
  id: Generated<number>;
  username: string;
  email: string;
  password_hash: string | null;
  api_key_hash: string | null;
  is_super_admin: number;
  api_access: number;
  is_active: number;
  current_dc_id: number | null;
  created: string;
}

export interface DcAdminTable {
  dc_id: number;
  user_id: number;
}

export interface AuthTokenTable {
  key_hash: string;
  user_id: number;
  created: string;
  expires: string;
}

export interface LoginFailureTable {
  id: Generated<number>;
  key: string;
  time: string;
}

export interface NodeTable {
  id: Generated<number>;
  hostname: string;
  uuid: string;
  status: number; // 1 offline, 2 online, 3 unreachable
  last_heartbeat: string | null;
  created: string;
  /** 1: its storages may hold backups (migration 0007). */
  is_backup: Generated<number>;
  /** ESNAP_NODE_ADDRESS as `user@host:port` (migration 0007_ssh_trust). */
  ssh_address: Generated<string | null>;
  /** The sshd's ed25519 host key, `ssh-ed25519 <base64>`. */
  ssh_host_key: Generated<string | null>;
  /** The agent's own ed25519 public key. */
  ssh_public_key: Generated<string | null>;
}

export interface NodeStorageTable {
  id: Generated<number>;
  node_id: number;
  name: string;
  driver: string;
  config: string; // JSON: root / dataset
  size: number | null;
  size_free: number | null;
  created: string;
}

export interface VmTable {
  uuid: string;
  hostname: string;
  alias: string;
  dc_id: number;
  owner_id: number;
  node_id: number;
  brand: string;
  status: number;
  status_change: string | null;
  qmp_socket: string | null;
  qga_socket: string | null;
  snapshot_limit_manual: number | null;
  snapshot_limit_auto: number | null;
  snapshot_size_limit: number | null;
  snapshot_size_percent_limit: number | null;
  created: string;
  changed: string;
  /** 1: mirrors a libvirt domain of its node (migration 0005, src/hypervisor/). */
  libvirt: Generated<number>;
}

export interface VmDiskTable {
  id: Generated<number>;
  vm_uuid: string;
  real_id: number;
  storage_id: number;
  path: string;
  size_mb: number;
  created: string;
  /** Why the image cannot be trusted (missing, cut off), null when whole: new snapshots are refused. */
  damaged: Generated<string | null>;
  /** libvirt disks (migration 0005): target device and source path, which together identify the disk. */
  libvirt_target: Generated<string | null>;
  libvirt_source: Generated<string | null>;
  /** 1: the disk left its domain; it keeps its snapshots until an admin deletes it. */
  detached: Generated<number>;
  /** Why the disk lies on no esnap storage (storage_id 0), else null. */
  unmapped: Generated<string | null>;
}

export interface SnapshotTable {
  id: Generated<number>;
  vm_uuid: string;
  define_id: number | null;
  name: string;
  type: number; // 1 automatic, 2 manual
  status: number; // 1 ok, 2 pending, 3 rollback, 4 lost
  storage_id: number;
  size: number | null;
  note: string;
  fsfreeze: number;
  pinned: number;
  disk_real_id: number;
  status_change: string | null;
  created: string;
  changed: string;
}

export interface SnapshotDefineTable {
  id: Generated<number>;
  vm_uuid: string;
  disk_real_id: number;
  name: string;
  desc: string;
  schedule: string;
  retention: number;
  active: number;
  fsfreeze: number;
  tz: string;
  catchup: number;
  retention_days: number | null;
  next_run: string | null;
  last_run: string | null;
  last_success: string | null;
  last_error: string | null;
  created: string;
  changed: string;
}

export interface TaskTable {
  id: string;
  type: string; // task id type letter: e, a, ...
  kind: string; // what the agent runs: snapshot_create, snapshot_destroy, ...
  define_id: number | null; // the snapshot definition a create runs for (migration 0009), else null
  open_xid: string | null; // PostgreSQL: the inserting transaction (column default, migration 0011), read by the cluster sweep; null on SQLite
  user_id: number;
  owner_id: number;
  dc_id: number;
  vm_uuid: string | null;
  node_id: number | null;
  payload: string; // JSON for the agent
  context: string; // JSON the completion needs (row ids, flags); never sent to agents
  node: string | null; // hostname of the node whose queue runs the task
  apiview: string; // JSON, Danube's pending-task view
  state: string; // PENDING, STARTED, SUCCESS, FAILURE, REVOKED
  result: string | null; // JSON {returncode, message, detail}
  log_msg: string;
  log_detail: string;
  created: string;
  started: string | null;
  finished: string | null;
}

export interface TaskLockTable {
  key: string;
  task_id: string;
  created: string;
}

/** A snapshot a failed create may have left on storage, destroyed by the disk's next sync (migration 0012). */
export interface SnapshotDiscardTable {
  vm_uuid: string;
  disk_path: string;
  snapshot: string;
  task_id: string;
  created: string;
}

export interface TaskLogTable {
  id: Generated<number>;
  time: string;
  task_id: string;
  task_type: string;
  status: string;
  user_id: number;
  username: string;
  owner_id: number;
  dc_id: number;
  msg: string;
  detail: string;
  object_type: string;
  object_name: string;
  object_alias: string;
  object_pk: string;
  flag: number;
}

/** One (definition, scheduled instant) the scheduler acted on (migration 0002); see slot.repository.ts. */
export interface ScheduleSlotTable {
  define_id: number;
  slot: string; // ISO instant of the scheduled time
  source: string; // cron, catchup
  state: string; // fired, waiting, skipped, failed
  reason: string | null;
  created: string;
  changed: string;
}

export interface Database {
  dc: DcTable;
  account: UserTable;
  dc_admin: DcAdminTable;
  auth_token: AuthTokenTable;
  login_failure: LoginFailureTable;
  node: NodeTable;
  node_storage: NodeStorageTable;
  vm: VmTable;
  vm_disk: VmDiskTable;
  snapshot: SnapshotTable;
  snapshot_define: SnapshotDefineTable;
  snapshot_discard: SnapshotDiscardTable;
  task: TaskTable;
  task_lock: TaskLockTable;
  task_log: TaskLogTable;
  schedule_slot: ScheduleSlotTable;
  /** The backup scheduler's slots (migration 0009), as schedule_slot is the snapshot scheduler's. */
  backup_slot: ScheduleSlotTable;
  backup_define: BackupDefineTable;
  backup: BackupTable;
}

export type { BackupDefineTable, BackupTable };

export type DcRow = Selectable<DcTable>;
export type UserRow = Selectable<UserTable>;
export type NodeRow = Selectable<NodeTable>;
export type NodeStorageRow = Selectable<NodeStorageTable>;
export type VmRow = Selectable<VmTable>;
export type VmDiskRow = Selectable<VmDiskTable>;
export type SnapshotRow = Selectable<SnapshotTable>;
export type NewSnapshot = Insertable<SnapshotTable>;
export type SnapshotUpdate = Updateable<SnapshotTable>;
export type DefineRow = Selectable<SnapshotDefineTable>;
export type TaskRow = Selectable<TaskTable>;
export type TaskLogRow = Selectable<TaskLogTable>;
