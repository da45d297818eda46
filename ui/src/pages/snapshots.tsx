/**
 * The snapshots table of a VM: sortable, filterable by disk/type/definition, 50 rows a page, with
 * selection, inline note editing, pinning and the per-row actions. Locked rows (pending, rollback)
 * cannot be selected or acted on, as in Danube's GUI.
 */
import { useMemo, useState } from 'preact/hooks';
import { seg } from '../api.js';
import { syncNotice, type Act } from '../actions.js';
import { Icon } from '../icons.js';
import { Badge, ColumnHeads, EmptyRow, RowAction } from '../components.js';
import { NoteCell } from '../note-cell.js';
import { formatBytes, formatMb, formatUtc, SNAPSHOT_STATUS, SNAPSHOT_TYPE } from '../format.js';
import type { Snapshot } from '../types.js';
import type { VmData } from './vm.js';
import { CreateDialog, DeleteDialog, RestoreDialog, RollbackDialog } from './snapshot-dialogs.js';

export const PAGE_SIZE = 50;
type SortKey = 'name' | 'disk_id' | 'created' | 'size' | 'type';
type Dialog =
  | { kind: 'create' }
  | { kind: 'rollback'; snap: Snapshot }
  | { kind: 'restore'; snap: Snapshot }
  | { kind: 'delete'; snaps: Snapshot[] }
  | null;

export const snapKey = (s: Snapshot): string => `${s.disk_id}/${s.name}`;
const locked = (s: Snapshot): boolean => s.status === 2 || s.status === 3;

function compare(a: Snapshot, b: Snapshot, key: SortKey): number {
  switch (key) {
    case 'name':
      return a.name.localeCompare(b.name);
    case 'disk_id':
      return a.disk_id - b.disk_id;
    case 'size':
      return (a.size ?? -1) - (b.size ?? -1);
    case 'type':
      return a.type - b.type || (a.define ?? '').localeCompare(b.define ?? '');
    case 'created':
      return a.id - b.id;
  }
}

function StatusCell({ s }: { s: Snapshot }) {
  const name = SNAPSHOT_STATUS[s.status] ?? String(s.status);
  const kind = s.status === 1 ? 'ok' : s.status === 4 ? 'bad' : 'busy';
  return (
    <>
      <Badge kind={kind}>{name}</Badge>
      {s.fsfreeze ? (
        <span class="flag" title="Taken with the guest's filesystems frozen">
          {' '}
          <Icon name="snow" /> frozen
        </span>
      ) : null}
    </>
  );
}

/** Why an action on a snapshot cannot succeed now (the button is disabled with this as its tooltip), or null. */
export function restoreBlock(s: Snapshot): string | null {
  if (s.status === 4) return 'The snapshot is lost: its data is gone from storage';
  if (locked(s)) return 'A task is running on this snapshot';
  return null;
}
export function rollbackBlock(s: Snapshot, vmStatus: string): string | null {
  return restoreBlock(s) ?? (vmStatus !== 'stopped' ? `The VM is ${vmStatus}: stop it before a rollback` : null);
}
export function deleteBlock(s: Snapshot): string | null {
  if (s.pinned) return 'The snapshot is pinned: unpin it to delete it';
  return locked(s) ? 'A task is running on this snapshot' : null;
}

export function Snapshots({ data, act }: { data: VmData; act: Act }) {
  const { vm, disks, snapshots } = data;
  const [disk, setDisk] = useState('');
  const [type, setType] = useState('');
  const [define, setDefine] = useState('');
  const [sort, setSort] = useState<{ key: SortKey; desc: boolean }>({ key: 'created', desc: true });
  const [page, setPage] = useState(0);
  const [selected, setSelected] = useState<ReadonlySet<string>>(new Set());
  const [dialog, setDialog] = useState<Dialog>(null);
  const base = `vm/${seg(vm.hostname)}/snapshot`;

  const filtered = useMemo(() => {
    const rows = snapshots.filter(
      (s) =>
        (disk === '' || String(s.disk_id) === disk) &&
        (type === '' || String(s.type) === type) &&
        (define === '' || (define === '-' ? s.define === null : s.define === define)),
    );
    rows.sort((a, b) => compare(a, b, sort.key) * (sort.desc ? -1 : 1) || b.id - a.id);
    return rows;
  }, [snapshots, disk, type, define, sort]);
  const pages = Math.max(1, Math.ceil(filtered.length / PAGE_SIZE));
  const current = Math.min(page, pages - 1);
  const shown = filtered.slice(current * PAGE_SIZE, (current + 1) * PAGE_SIZE);
  const byKey = new Map(snapshots.map((s) => [snapKey(s), s]));
  const chosen = [...selected].map((k) => byKey.get(k)).filter((s): s is Snapshot => s !== undefined && !locked(s));
  const defNames = [...new Set(snapshots.map((s) => s.define).filter((d): d is string => d !== null))].sort();
  const manual = snapshots.filter((s) => s.type === 2).length;
  const auto = snapshots.length - manual;
  const total = snapshots.reduce((n, s) => n + (s.size ?? 0), 0);
  const limit = (n: number | null): string => (n === null ? '∞' : String(n));

  const toggle = (s: Snapshot, on: boolean): void => {
    const next = new Set(selected);
    if (on) next.add(snapKey(s));
    else next.delete(snapKey(s));
    setSelected(next);
  };
  const sortHeader = (key: SortKey, label: string) => (
    <th scope="col" aria-sort={sort.key === key ? (sort.desc ? 'descending' : 'ascending') : 'none'}>
      <button type="button" class="sort" onClick={() => setSort({ key, desc: sort.key === key ? !sort.desc : key === 'created' })}>
        {label}
        {' '}
        <Icon name={sort.key === key ? (sort.desc ? 'down' : 'up') : 'sort'} />
      </button>
    </th>
  );
  const filterSelect = (id: string, label: string, value: string, set: (v: string) => void, options: [string, string][]) => (
    <span class="filter">
      <label for={id}>{label}</label>
      <select
        id={id}
        value={value}
        onChange={(e) => {
          set(e.currentTarget.value);
          setPage(0);
        }}
      >
        <option value="">all</option>
        {options.map(([v, l]) => (
          <option key={v} value={v}>
            {l}
          </option>
        ))}
      </select>
    </span>
  );

  return (
    <section id="snapshots" aria-labelledby="snapshots-title">
      <h2 id="snapshots-title">Snapshots</h2>
      <div class="toolbar">
        <button type="button" onClick={() => setDialog({ kind: 'create' })}>
          Create snapshot
        </button>
        <button type="button" class="danger" disabled={chosen.length === 0} onClick={() => setDialog({ kind: 'delete', snaps: chosen })}>
          Delete selected ({chosen.length})
        </button>
        <button
          type="button"
          onClick={() => {
            // One action, one notice: every disk synced, then what was lost or found, per disk.
            act.notify({ kind: 'busy', text: 'Sync with storage: running…' });
            void Promise.all(
              disks.map((d) =>
                act(`Sync of disk ${d.disk_id}`, 'PUT', base, { disk_id: d.disk_id }, { quiet: true }).then(
                  (outcome) => ({ disk: d.disk_id, outcome }),
                  (err: unknown) => ({ disk: d.disk_id, outcome: err instanceof Error ? err : new Error(String(err)) }),
                ),
              ),
            ).then((results) => act.notify(syncNotice(results)));
          }}
        >
          Sync with storage
        </button>
      </div>
      <div class="filters" role="group" aria-label="Filter snapshots">
        {filterSelect('f-disk', 'Disk', disk, setDisk, disks.map((d) => [String(d.disk_id), `disk ${d.disk_id}`]))}
        {filterSelect('f-type', 'Type', type, setType, [
          ['2', 'manual'],
          ['1', 'automatic'],
        ])}
        {filterSelect('f-define', 'Definition', define, setDefine, [['-', '(none)'], ...defNames.map((d): [string, string] => [d, d])])}
      </div>
      <div class="scroll" tabIndex={0} role="region" aria-labelledby="snapshots-title">
<table class="grid snapshots" aria-labelledby="snapshots-title" data-testid="snapshots">
        <thead>
          <tr>
            <th scope="col">
              <span class="sr-only">Selected</span>
            </th>
            {sortHeader('name', 'Name')}
            {sortHeader('disk_id', 'Disk')}
            {sortHeader('type', 'Type')}
            {sortHeader('created', 'Created')}
            <th scope="col">Status</th>
            {sortHeader('size', 'Size')}
            <ColumnHeads names={['Note', 'Pinned', 'Actions']} />
          </tr>
        </thead>
        <tbody>
          {shown.length === 0 ? <EmptyRow cols={10}>No snapshots{snapshots.length > 0 ? ' match the filters' : ''}.</EmptyRow> : null}
          {shown.map((s) => {
            const size = disks.find((d) => d.disk_id === s.disk_id)?.size;
            return (
              <tr key={s.id} data-name={s.name} data-disk={s.disk_id} data-status={SNAPSHOT_STATUS[s.status] ?? s.status} aria-busy={locked(s) ? 'true' : undefined} class={locked(s) ? 'row-locked' : ''}>
                <td>
                  <input
                    type="checkbox"
                    aria-label={`Select ${s.name} on disk ${s.disk_id}`}
                    disabled={locked(s)}
                    checked={selected.has(snapKey(s))}
                    onChange={(e) => toggle(s, e.currentTarget.checked)}
                  />
                </td>
                <th scope="row">{s.name}</th>
                <td>
                  {s.disk_id}
                  {size !== undefined ? <span class="muted"> ({formatMb(size)})</span> : null}
                </td>
                <td>
                  {SNAPSHOT_TYPE[s.type] ?? s.type}
                  {s.define ? <span class="muted"> · {s.define}</span> : null}
                </td>
                <td>
                  <time dateTime={s.created}>{formatUtc(s.created)}</time>
                </td>
                <td>
                  <StatusCell s={s} />
                </td>
                <td class="num">{formatBytes(s.size)}</td>
                <td>
                  <NoteCell
                    key={`${s.id}-${s.note}`}
                    note={s.note}
                    what={`${s.name} on disk ${s.disk_id}`}
                    id={`note-${s.id}`}
                    save={(note) => act(`Note of ${s.name}`, 'PUT', `${base}/${seg(s.name)}`, { disk_id: s.disk_id, note }, { syncText: 'saved' })}
                  />
                </td>
                <td>
                  {s.pinned ? (
                    <span>
                      <Icon name="pin" /> pinned
                    </span>
                  ) : (
                    <span class="muted">no</span>
                  )}{' '}
                  <button
                    type="button"
                    class="link"
                    aria-label={`${s.pinned ? 'Unpin' : 'Pin'} ${s.name} on disk ${s.disk_id}`}
                    onClick={() =>
                      void act(`${s.pinned ? 'Unpin' : 'Pin'} ${s.name}`, 'PUT', `${base}/${seg(s.name)}`, { disk_id: s.disk_id, pinned: !s.pinned }, { syncText: 'saved' }).catch(
                        () => undefined,
                      )
                    }
                  >
                    {s.pinned ? 'Unpin' : 'Pin'}
                  </button>
                </td>
                <td class="actions">
                  <RowAction danger label="Roll back" aria={`Roll back to ${s.name} on disk ${s.disk_id}`} reason={rollbackBlock(s, vm.status)} onClick={() => setDialog({ kind: 'rollback', snap: s })} />
                  <RowAction danger label="Restore…" aria={`Restore ${s.name} of disk ${s.disk_id} into another disk`} reason={restoreBlock(s)} onClick={() => setDialog({ kind: 'restore', snap: s })} />
                  <RowAction danger label="Delete" aria={`Delete ${s.name} on disk ${s.disk_id}`} reason={deleteBlock(s)} onClick={() => setDialog({ kind: 'delete', snaps: [s] })} />
                </td>
              </tr>
            );
          })}
        </tbody>
        <tfoot>
          <tr>
            <td colSpan={10}>
              <span data-testid="selected-count">
                Selected {chosen.length} of {filtered.length}
              </span>
              {' · '}
              <span data-testid="manual-count">
                Manual: {manual} / {limit(vm.snapshot_limit_manual)}
              </span>
              {' · '}
              <span data-testid="auto-count">
                Automatic: {auto} / {limit(vm.snapshot_limit_auto)}
              </span>
              {' · '}
              <span data-testid="total-size">Total size: {formatBytes(total)}</span>
            </td>
          </tr>
        </tfoot>
      </table>
</div>
      <nav class="pager" aria-label="Snapshot pages">
        <button type="button" disabled={current === 0} onClick={() => setPage(current - 1)}>
          Previous page
        </button>
        <span>
          Page {current + 1} of {pages}
        </span>
        <button type="button" disabled={current >= pages - 1} onClick={() => setPage(current + 1)}>
          Next page
        </button>
      </nav>
      {dialog?.kind === 'create' ? <CreateDialog data={data} act={act} onClose={() => setDialog(null)} /> : null}
      {dialog?.kind === 'rollback' ? <RollbackDialog data={data} snap={dialog.snap} act={act} onClose={() => setDialog(null)} /> : null}
      {dialog?.kind === 'restore' ? <RestoreDialog data={data} snap={dialog.snap} act={act} onClose={() => setDialog(null)} /> : null}
      {dialog?.kind === 'delete' ? (
        <DeleteDialog
          data={data}
          snaps={dialog.snaps}
          act={act}
          onClose={() => setDialog(null)}
          onDone={() => setSelected(new Set())}
        />
      ) : null}
    </section>
  );
}
