/** Shapes of the API's objects as the app reads them. */
export interface Vm {
  hostname: string;
  uuid: string;
  alias: string;
  node: string | null;
  owner: string | null;
  status: string;
  brand: string;
  snapshot_limit_manual: number | null;
  snapshot_limit_auto: number | null;
  snapshot_size_limit: number | null;
  disks: number;
}

export interface Disk {
  disk_id: number;
  zpool: string | null;
  path: string;
  size: number;
  /** libvirt disks only: target device, detached from its domain, why it is on no esnap storage. */
  target?: string;
  detached?: boolean;
  reason?: string | null;
}

export interface Snapshot {
  hostname: string;
  vm_uuid: string;
  define: string | null;
  name: string;
  disk_id: number;
  note: string;
  type: number;
  created: string;
  status: number;
  size: number | null;
  id: number;
  fsfreeze: boolean;
  pinned: boolean;
}

export interface Definition {
  hostname: string;
  vm_uuid: string;
  name: string;
  disk_id: number;
  desc: string;
  active: boolean;
  schedule: string;
  retention: number;
  fsfreeze: boolean;
  tz?: string;
  catchup?: boolean;
  retention_days?: number | null;
  snapshots?: number;
  next_run?: string | null;
  last_run?: string | null;
  last_success?: string | null;
  last_error?: string | null;
}

export interface NodeInfo {
  hostname: string;
  uuid: string;
  status: number;
  status_display: string;
  last_heartbeat: string | null;
}

export interface VmStatus {
  hostname: string;
  status: string;
  tasks: Record<string, Record<string, unknown>>;
}

export interface TaskLogEntry {
  time: string;
  task: string;
  status: string;
  username: string;
  msg: string;
  detail: string;
  object_name: string;
  object_alias: string;
  object_type: string;
  flag: number;
}

/** GET /api/overview/problems/ (esnap addition). */
export interface Problem {
  kind: string;
  severity: 'bad' | 'warn';
  message: string;
  vm?: string;
  disk_id?: number;
  define?: string;
  node?: string;
  storage?: string;
  count?: number;
}

/** GET /api/overview/vm/ (esnap addition). */
export interface VmSummary {
  hostname: string;
  alias: string;
  node: string | null;
  status: string;
  libvirt: boolean;
  disks: { disk_id: number; size: number; target?: string; detached?: boolean; unmapped?: string | null }[];
  snapshots: number;
  snapshots_size: number;
  snapshots_lost: number;
  definitions: { name: string; disk_id: number; schedule: string; tz: string; active: boolean; last_success: string | null; last_error: string | null; state: string }[];
  protection: 'none' | 'ok' | 'stale' | 'failing';
}

/** GET /api/overview/node/ (esnap addition). */
export interface NodesOverview {
  min_free_percent: number;
  nodes: {
    hostname: string;
    status: number;
    status_display: string;
    last_heartbeat: string | null;
    storages: { name: string; driver: string; size: number | null; size_free: number | null; free_percent: number | null; below_floor: boolean; snapshot_bytes: { day: string; bytes: number }[] }[];
  }[];
}

/** A backup definition (GET /vm/define/backup/?full=true&extended=true). */
export interface BackupDefinition {
  hostname: string;
  name: string;
  disk_id: number;
  /** 1 dataset (zfs/btrfs send), 2 file (restic). */
  type: number;
  node: string | null;
  zpool: string;
  desc: string;
  active: boolean;
  schedule: string;
  retention: number;
  fsfreeze: boolean;
  tz: string;
  /** After downtime the most recent missed slot fires once (true), or a late slot is skipped. */
  catchup?: boolean;
  backups?: number;
  next_run?: string | null;
  last_run?: string | null;
  last_success?: string | null;
  last_error?: string | null;
}

/** A backup (GET /vm/<vm>/backup/?full=true, GET /overview/backup/). */
export interface Backup {
  /** The VM's hostname when the backup was made. */
  hostname: string;
  vm_uuid: string | null;
  /** The VM's hostname now; null once the VM is gone. */
  vm: string | null;
  define: string | null;
  name: string;
  disk_id: number;
  type: number;
  node: string | null;
  zpool: string;
  created: string;
  /** 1 ok, 2 pending, 3 restore, 4 lost, 5 damaged. */
  status: number;
  size: number | null;
  time: number | null;
  note: string;
}
