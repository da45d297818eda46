/**
 * Backups of every VM (`/backups`) or of one (`/backups/<hostname>`): the backup definitions (with
 * "Back up now") and the backups (status, damaged and lost included, size, node, storage, time,
 * note, editable in place) with verify, restore into a stopped VM's disk, and delete. Restore and delete are
 * destructive (red, never primary, confirmed in a dialog); an action that cannot succeed is
 * disabled with the reason as its tooltip. Reads the public API (definitions, a VM's backups) and
 * esnap's /overview/backup/ for all VMs' backups in one request.
 */
import { useEffect, useMemo, useState } from 'preact/hooks';
import { getResult, seg } from '../api.js';
import { makeAct, type Act, type Notice } from '../actions.js';
import type { Identity } from '../auth.js';
import { Badge, Dialog, DialogButtons, ErrorText, GridSection, Loading, RowAction } from '../components.js';
import { formatAge, formatBytes, formatDuration, formatUtc } from '../format.js';
import { useLoad, useNow, useSubmit } from '../hooks.js';
import { NoteCell } from '../note-cell.js';
import type { IconName } from '../icons.js';
import { backupsPath, navigate, onLinkClick, vmPath } from '../router.js';
import { ScheduleText } from '../schedule-text.js';
import type { Backup, BackupDefinition } from '../types.js';
import { NO_TARGET, RestoreTargetFields, type RestoreTarget } from './restore-target.js';
import { Toast } from './vm.js';

export const BACKUP_STATUS: Readonly<Record<number, string>> = { 1: 'ok', 2: 'pending', 3: 'restore', 4: 'lost', 5: 'damaged' };
const STATUS_KIND: Readonly<Record<number, IconName>> = { 1: 'ok', 2: 'busy', 3: 'busy', 4: 'bad', 5: 'bad' };
const TYPE_NAME: Readonly<Record<number, string>> = { 1: 'dataset', 2: 'file' };

interface BackupsData {
  defs: BackupDefinition[];
  backups: Backup[];
}

async function loadBackups(hostname: string | null): Promise<BackupsData> {
  if (hostname === null) {
    const [defs, backups] = await Promise.all([
      getResult<BackupDefinition[]>('vm/define/backup', { full: true, extended: true }),
      getResult<Backup[]>('overview/backup'),
    ]);
    return { defs, backups };
  }
  const base = `vm/${seg(hostname)}`;
  const [defs, backups] = await Promise.all([
    // A deleted VM has no definitions any more; its backups are still found by its hostname.
    getResult<BackupDefinition[]>(`${base}/define/backup`, { full: true, extended: true }).catch(() => [] as BackupDefinition[]),
    getResult<Backup[]>(`${base}/backup`, { full: true }),
  ]);
  return { defs, backups };
}

const running = (b: Backup): string | null => (b.status === 2 ? 'A task is running on this backup' : b.status === 3 ? 'The backup is being restored' : null);

/** Why a verify cannot run now, or null. */
export function verifyBlock(b: Backup): string | null {
  if (b.status === 4) return 'The backup is lost: its data is gone from the backup storage';
  return running(b);
}
/** Why a restore cannot succeed now, or null. */
export function restoreBlock(b: Backup): string | null {
  if (b.status === 5) return 'The backup is damaged: its data does not match the checksum recorded when it was made';
  return verifyBlock(b);
}
/** Why a delete cannot run now, or null (a lost backup is only removed from the list). */
export function deleteBlock(b: Backup): string | null {
  return running(b);
}

function VmLink({ hostname }: { hostname: string }) {
  return (
    <a href={vmPath(hostname)} onClick={(e) => onLinkClick(e, vmPath(hostname))}>
      {hostname}
    </a>
  );
}

function Definitions({ defs, act, all }: { defs: BackupDefinition[]; act: Act; all: boolean }) {
  const now = useNow();
  const cols = [...(all ? ['VM'] : []), 'Name', 'Disk', 'Type', 'Node', 'Storage', 'Schedule', 'Retention', 'State', 'Last run', 'Backups', 'Actions'];
  return (
    <GridSection
      id="bkpdefs"
      title="Backup definitions"
      testId="backup-definitions"
      cols={cols}
      rows={defs}
      empty="No backup definitions."
      row={(d) => (
        <tr key={`${d.hostname}/${d.disk_id}/${d.name}`} data-name={d.name} data-vm={d.hostname}>
          {all ? (
            <td>
              <VmLink hostname={d.hostname} />
            </td>
          ) : null}
          <th scope="row">{d.name}</th>
          <td>{d.disk_id}</td>
          <td>{TYPE_NAME[d.type] ?? d.type}</td>
          <td>{d.node ?? '—'}</td>
          <td>{d.zpool}</td>
          <td>
            <ScheduleText schedule={d.schedule} tz={d.tz} />
            {d.next_run ? <div class="muted">next: {formatUtc(d.next_run)}</div> : null}
          </td>
          <td>{d.retention === 0 ? 'keep all' : `keep ${d.retention}`}</td>
          <td>
            {d.active ? <Badge kind="ok">active</Badge> : <Badge kind="warn">paused</Badge>}
            {d.catchup === false ? (
              <div class="muted" title="A slot missed while esnap was down is skipped, not run late">
                no catch-up
              </div>
            ) : null}
          </td>
          <td>
            {d.last_success ? <time dateTime={d.last_success}>ok {formatAge(d.last_success, now)}</time> : 'no success yet'}
            {d.last_error ? (
              <div class="error-text" data-testid="bkpdef-failed">
                <Badge kind="bad">failed</Badge> {d.last_error}
              </div>
            ) : null}
          </td>
          <td>{d.backups ?? ''}</td>
          <td class="actions">
            <RowAction
              label="Back up now"
              aria={`Back up now: definition ${d.name} of ${d.hostname}`}
              reason={null}
              onClick={() => void act(`Backup ${d.name} of ${d.hostname}`, 'POST', `vm/${seg(d.hostname)}/backup/${seg(d.name)}`, { disk_id: d.disk_id }).catch(() => undefined)}
            />
          </td>
        </tr>
      )}
    />
  );
}

type Open = { kind: 'restore'; b: Backup } | { kind: 'delete'; b: Backup } | null;

function BackupList({ backups, act, all }: { backups: Backup[]; act: Act; all: boolean }) {
  const [open, setOpen] = useState<Open>(null);
  const cols = [...(all ? ['VM'] : []), 'Name', 'Disk', 'Definition', 'Status', 'Size', 'Node', 'Storage', 'Created', 'Took', 'Note', 'Actions'];
  const path = (b: Backup): string => `vm/${seg(b.hostname)}/backup/${seg(b.name)}`;
  return (
    <GridSection
      id="backups"
      title="Backups"
      testId="backups"
      cols={cols}
      rows={backups}
      empty="No backups."
      after={
        <>
          {open?.kind === 'restore' ? <RestoreDialog b={open.b} act={act} path={path(open.b)} onClose={() => setOpen(null)} /> : null}
          {open?.kind === 'delete' ? <DeleteDialog b={open.b} act={act} path={path(open.b)} onClose={() => setOpen(null)} /> : null}
        </>
      }
      row={(b) => {
        const status = BACKUP_STATUS[b.status] ?? String(b.status);
        return (
          <tr key={`${b.hostname}/${b.disk_id}/${b.name}`} data-name={b.name} data-status={status}>
            {all ? <td>{b.vm ? <VmLink hostname={b.vm} /> : <span>{b.hostname} <span class="muted">(VM deleted)</span></span>}</td> : null}
            <th scope="row">{b.name}</th>
            <td>{b.disk_id}</td>
            <td>{b.define ?? '—'}</td>
            <td>
              <Badge kind={STATUS_KIND[b.status] ?? 'info'}>{status}</Badge>
            </td>
            <td>{b.size === null ? '—' : formatBytes(b.size)}</td>
            <td>{b.node ?? '—'}</td>
            <td>{b.zpool}</td>
            <td>{b.created ? formatUtc(b.created) : '—'}</td>
            <td>{b.time === null ? '—' : formatDuration(b.time * 1000)}</td>
            <td>
              <NoteCell
                key={b.note}
                note={b.note}
                what={`backup ${b.name} of ${b.hostname}, disk ${b.disk_id}`}
                id={`bkp-note-${b.hostname}-${b.disk_id}-${b.name}`}
                save={(note) => act(`Note of ${b.name}`, 'PUT', path(b), { disk_id: b.disk_id, note }, { syncText: 'saved' })}
              />
            </td>
            <td class="actions">
              <RowAction
                label="Verify"
                aria={`Verify backup ${b.name}`}
                reason={verifyBlock(b)}
                onClick={() => void act(`Verify ${b.name}`, 'PUT', path(b), { disk_id: b.disk_id, verify: true }).catch(() => undefined)}
              />
              <RowAction label="Restore" danger aria={`Restore backup ${b.name}`} reason={restoreBlock(b)} onClick={() => setOpen({ kind: 'restore', b })} />
              <RowAction label="Delete" danger aria={`Delete backup ${b.name}`} reason={deleteBlock(b)} onClick={() => setOpen({ kind: 'delete', b })} />
            </td>
          </tr>
        );
      }}
    />
  );
}

function RestoreDialog({ b, act, path, onClose }: { b: Backup; act: Act; path: string; onClose: () => void }) {
  const [target, setTarget] = useState<RestoreTarget>(NO_TARGET);
  const [error, busy, submit] = useSubmit(onClose);
  return (
    <Dialog title={`Restore backup ${b.name}`} onClose={onClose}>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          const body = { disk_id: b.disk_id, target_hostname_or_uuid: target.hostname, target_disk_id: target.diskId };
          void submit((accepted) => act(`Restore ${b.name} into ${target.hostname}`, 'PUT', path, body, { onAccepted: accepted }));
        }}
      >
        <p class="warning" role="note">
          <strong>Warning:</strong> all data on the target disk is replaced by disk {b.disk_id} of {b.hostname} as of {b.created ? formatUtc(b.created) : b.name}. The target VM must be stopped
          and its disk the same size; the VM may be on any node.
        </p>
        <RestoreTargetFields
          vmLabel="Target VM"
          stoppedOnly
          value={target}
          onChange={setTarget}
          prefer={(disks) => disks.find((x) => x.disk_id === b.disk_id)}
          // A file backup's size is the disk's (bytes); the server refuses another size.
          differs={(d) => b.type === 2 && b.size !== null && d.size * 1024 * 1024 !== b.size}
        />
        <ErrorText error={error} />
        <DialogButtons label="Restore" danger disabled={busy || !target.hostname || !target.diskId} onCancel={onClose} />
      </form>
    </Dialog>
  );
}

function DeleteDialog({ b, act, path, onClose }: { b: Backup; act: Act; path: string; onClose: () => void }) {
  const [error, busy, submit] = useSubmit(onClose);
  return (
    <Dialog title={`Delete backup ${b.name}`} onClose={onClose}>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void submit((accepted) => act(`Delete ${b.name}`, 'DELETE', path, { disk_id: b.disk_id }, { onAccepted: accepted, syncText: 'removed from the list' }));
        }}
      >
        <p class="warning" role="note">
          {b.status === 4
            ? 'The backup is lost: only its entry is removed.'
            : `Its data is removed from storage ${b.zpool}${b.node ? ` on ${b.node}` : ''}: it cannot be restored afterwards.`}
        </p>
        <ErrorText error={error} />
        <DialogButtons label="Delete" danger disabled={busy} onCancel={onClose} />
      </form>
    </Dialog>
  );
}

export function BackupsPage({ hostname, who }: { hostname: string | null; who: Identity }) {
  const { data, error, loading } = useLoad(() => loadBackups(hostname), hostname ?? '');
  const [notice, setNotice] = useState<Notice | null>(null);
  const act = useMemo(() => makeAct(hostname, setNotice), [hostname]);
  const title = hostname === null ? 'Backups of all VMs' : `Backups of ${hostname}`;
  useEffect(() => {
    document.title = `${title} · esnap`;
  }, [title]);
  // The VMs to choose from: those with definitions or backups.
  const names = useMemo(() => [...new Set([...(data?.defs ?? []).map((d) => d.hostname), ...(data?.backups ?? []).map((b) => b.hostname)])].sort(), [data]);
  if (hostname !== null && !names.includes(hostname)) names.unshift(hostname);
  return (
    <main id="main">
      <nav aria-label="Breadcrumb" class="crumbs">
        <a href="/" onClick={(e) => onLinkClick(e, '/')}>
          Overview
        </a>{' '}
        ›{' '}
        {hostname === null ? (
          <span aria-current="page">Backups</span>
        ) : (
          <>
            <a href={backupsPath(null)} onClick={(e) => onLinkClick(e, backupsPath(null))}>
              Backups
            </a>{' '}
            › <span aria-current="page">{hostname}</span>
          </>
        )}
      </nav>
      <h1>{title}</h1>
      <div class="toolbar">
        <label>
          VM{' '}
          <select name="vm" value={hostname ?? ''} onChange={(e) => navigate(backupsPath(e.currentTarget.value || null))}>
            <option value="">all VMs</option>
            {names.map((n) => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
          </select>
        </label>
        {hostname !== null ? (
          <a href={vmPath(hostname)} onClick={(e) => onLinkClick(e, vmPath(hostname))}>
            Open the VM {hostname}
          </a>
        ) : null}
      </div>
      {!who.admin ? <p class="muted">Backups, restores and deletes need an admin of the datacenter; the server decides.</p> : null}
      <Toast notice={notice} onDismiss={() => setNotice(null)} />
      <ErrorText error={error} />
      {!data && loading ? <Loading what="the backups" /> : null}
      {data ? (
        <>
          <BackupList backups={data.backups} act={act} all={hostname === null} />
          <Definitions defs={data.defs} act={act} all={hostname === null} />
        </>
      ) : null}
    </main>
  );
}
