/**
 * Reconciliation of snapshot rows with what storage holds (spec 10.2, 10.3), as a pure plan:
 * the caller applies it. `taskPending` is whether another snapshot task of the VM is pending or
 * running (esnap excludes the sync's own task, so per-VM sync does mark lost rows).
 */
export interface SyncRow {
  readonly id: number;
  readonly backendId: string; // es-<id> / as-<id>
  readonly status: number;
  readonly size: number | null;
}

export interface SyncListed {
  readonly id: string;
  readonly created: string;
  readonly size: number | null;
  readonly name: string | null;
}

export interface SyncPlan {
  readonly updates: Array<{ id: number; status?: number; size?: number | null }>;
  readonly lost: number;
  /** Snapshots on storage with esnap's id pattern that have no row (recreated at VM level). */
  readonly found: Array<{ id: number; type: number; name: string; created: string; size: number | null }>;
}

const OK = 1;
const LOST = 4;

export function planSync(rows: readonly SyncRow[], listed: readonly SyncListed[], taskPending: boolean): SyncPlan {
  const onStorage = new Map(listed.map((l) => [l.id, l]));
  const updates: SyncPlan['updates'] = [];
  let lost = 0;
  for (const row of rows) {
    const l = onStorage.get(row.backendId);
    if (l) {
      onStorage.delete(row.backendId);
      const sizeChanged = l.size !== row.size;
      if (row.status === LOST) updates.push({ id: row.id, status: OK, size: l.size });
      else if (row.status === OK) {
        if (sizeChanged) updates.push({ id: row.id, size: l.size });
      } else if (!taskPending) updates.push({ id: row.id, status: OK, size: l.size });
      else if (sizeChanged) updates.push({ id: row.id, size: l.size });
    } else if (!taskPending && row.status !== LOST) {
      updates.push({ id: row.id, status: LOST });
      lost++;
    }
  }
  const found: SyncPlan['found'] = [];
  for (const l of onStorage.values()) {
    const m = /^([ae])s-(\d{1,15})$/.exec(l.id);
    if (!m) continue;
    found.push({
      id: Number(m[2]),
      type: m[1] === 'a' ? 1 : 2,
      name: l.name && l.name !== '-' ? l.name : l.id,
      created: l.created,
      size: l.size,
    });
  }
  return { updates, lost, found };
}

export function syncMessage(lost: number, found: number): string {
  let m = 'Snapshots successfully synced';
  if (lost > 0) m += `; WARNING: ${lost} snapshot(s) lost`;
  if (found > 0) m += `; WARNING: ${found} snapshot(s) found`;
  return m;
}

/** `is-<n>`: a snapshot a backup reads or keeps as its incremental base; never a snapshot row. */
export function isBackupSnapshotId(id: string): boolean {
  return /^is-[0-9]{1,18}$/.test(id);
}
