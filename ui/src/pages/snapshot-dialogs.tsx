/**
 * The snapshot dialogs: create, rollback, restore into another VM's disk, delete (one or the
 * selection). Each one checks what it can before sending, shows the API's answer when the server
 * refuses, and closes once the server has accepted the task; the task's end is the page's notice.
 */
import { useEffect, useState } from 'preact/hooks';
import { getResult, seg } from '../api.js';
import type { Act } from '../actions.js';
import { Dialog, DialogButtons, DiskOptions, ErrorText } from '../components.js';
import { useSubmit } from '../hooks.js';
import { formatMb, formatUtc } from '../format.js';
import type { Snapshot } from '../types.js';
import { NO_TARGET, RestoreTargetFields, type RestoreTarget } from './restore-target.js';
import type { VmData } from './vm.js';

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const NOTE_FORBIDDEN = /[<>%$&;'"]/;

/** Danube's GUI checks before sending (spec 13), with the API's field messages for the rest. */
export function checkCreate(
  data: VmData,
  input: { name: string; diskId: number; all: boolean; note: string },
): Record<string, string> {
  const errors: Record<string, string> = {};
  const { name, note } = input;
  if (name === '') errors['name'] = 'This field is required.';
  else if (name.length > 24) errors['name'] = `Ensure this value has at most 24 characters (it has ${name.length}).`;
  else if (!NAME_RE.test(name)) errors['name'] = 'Invalid value.';
  else {
    const targets = input.all ? data.disks.map((d) => d.disk_id) : [input.diskId];
    if (data.snapshots.some((s) => s.name === name && targets.includes(s.disk_id))) errors['name'] = 'Snapshot name is already used';
    const limit = data.vm.snapshot_limit_manual;
    const manual = data.snapshots.filter((s) => s.type === 2).length;
    if (limit !== null && manual + targets.length > limit) errors['name'] = 'Snapshot limit reached';
  }
  if (note.length > 128) errors['note'] = `Ensure this value has at most 128 characters (it has ${note.length}).`;
  else if (NOTE_FORBIDDEN.test(note)) errors['note'] = 'Invalid value.';
  return errors;
}

function FieldError({ id, text }: { id: string; text: string | undefined }) {
  return text ? (
    <span id={id} class="field-error" role="alert">
      {text}
    </span>
  ) : null;
}

interface Props {
  data: VmData;
  act: Act;
  onClose: () => void;
}

export function CreateDialog({ data, act, onClose }: Props) {
  const [name, setName] = useState('');
  const [diskId, setDiskId] = useState((data.disks.find((d) => !d.reason) ?? data.disks[0])?.disk_id ?? 1);
  const [all, setAll] = useState(false);
  const [freeze, setFreeze] = useState(false);
  const [note, setNote] = useState('');
  const [checked, setChecked] = useState<Record<string, string>>({});
  const [error, busy, submit] = useSubmit(onClose);
  return (
    <Dialog title="Create snapshot" onClose={onClose}>
      <form
        noValidate
        onSubmit={(e) => {
          e.preventDefault();
          const errs = checkCreate(data, { name, diskId, all, note });
          setChecked(errs);
          if (Object.keys(errs).length > 0) return;
          const body = { disk_id: all ? 'all' : diskId, fsfreeze: freeze, note };
          void submit((accepted) =>
            act(`Create snapshot ${name}`, 'POST', `vm/${seg(data.vm.hostname)}/snapshot/${seg(name)}`, body, { onAccepted: accepted }),
          );
        }}
      >
        <ErrorText error={error} />
        <label>
          Name
          <input
            name="name"
            placeholder="backup1"
            value={name}
            maxLength={64}
            aria-invalid={checked['name'] ? 'true' : undefined}
            aria-describedby="create-name-error"
            onInput={(e) => setName(e.currentTarget.value)}
          />
        </label>
        <FieldError id="create-name-error" text={checked['name']} />
        <label>
          Disk
          <select name="disk_id" value={diskId} disabled={all} onChange={(e) => setDiskId(Number(e.currentTarget.value))}>
            <DiskOptions disks={data.disks} snapshot />
          </select>
        </label>
        <label class="check">
          <input type="checkbox" name="all" checked={all} onChange={(e) => setAll(e.currentTarget.checked)} /> All disks (one snapshot per disk, same name)
        </label>
        <label class="check">
          <input type="checkbox" name="fsfreeze" checked={freeze} onChange={(e) => setFreeze(e.currentTarget.checked)} /> Freeze filesystem (needs a running guest agent)
        </label>
        <label>
          Note
          <input name="note" value={note} aria-invalid={checked['note'] ? 'true' : undefined} aria-describedby="create-note-error" onInput={(e) => setNote(e.currentTarget.value)} />
        </label>
        <FieldError id="create-note-error" text={checked['note']} />
        <DialogButtons label="Create" disabled={busy} onCancel={onClose} />
      </form>
    </Dialog>
  );
}

/** The storage driver of a disk (file, qcow2, btrfs, zfs), from the node's storage; null while unknown. */
function useDriver(node: string | null, storage: string | null | undefined): string | null {
  const [driver, setDriver] = useState<string | null>(null);
  useEffect(() => {
    if (!node || !storage) return;
    getResult<{ driver: string }>(`node/${seg(node)}/storage/${seg(storage)}`).then(
      (s) => setDriver(s.driver),
      () => setDriver(null),
    );
  }, [node, storage]);
  return driver;
}

/**
 * Rollback: the newer snapshots of the disk are listed with what this storage does to them (ZFS
 * destroys them, file/qcow2/btrfs keep them); where they would be destroyed, the VM's name must be
 * typed before the button works.
 */
export function RollbackDialog({ data, snap, act, onClose }: Props & { snap: Snapshot }) {
  const newer = data.snapshots.filter((s) => s.disk_id === snap.disk_id && s.id > snap.id).sort((a, b) => a.id - b.id);
  const newest = newer.length === 0;
  const [force, setForce] = useState(false);
  const [typed, setTyped] = useState('');
  const [error, busy, submit] = useSubmit(onClose);
  const running = data.vm.status !== 'stopped';
  const disk = data.disks.find((d) => d.disk_id === snap.disk_id);
  const driver = useDriver(data.vm.node, disk?.zpool);
  const destroys = !newest && driver === 'zfs';
  const confirmed = !destroys || typed === data.vm.hostname;
  const reason = running ? `The VM is ${data.vm.status}: stop it before a rollback` : !confirmed ? `Type ${data.vm.hostname} to confirm` : undefined;
  return (
    <Dialog title={`Roll back disk ${snap.disk_id} to ${snap.name}`} onClose={onClose}>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          if (!confirmed || running) return;
          void submit((accepted) =>
            act(`Rollback to ${snap.name}`, 'PUT', `vm/${seg(data.vm.hostname)}/snapshot/${seg(snap.name)}`, { disk_id: snap.disk_id, force: newest ? false : force }, { onAccepted: accepted }),
          );
        }}
      >
        <p class="warning" role="note">
          <strong>Warning:</strong> disk {snap.disk_id} of {data.vm.hostname} returns to its state of {snap.name}; everything written since is lost. The server must be
          stopped and not locked.
        </p>
        {running ? (
          <p class="error" role="alert">
            The VM is {data.vm.status}: a rollback is refused until it is stopped.
          </p>
        ) : null}
        {newest ? (
          <p data-testid="newer">No newer snapshots of this disk.</p>
        ) : (
          <div data-testid="newer" data-fate={driver === 'zfs' ? 'destroyed' : driver ? 'kept' : 'unknown'}>
            <p>
              {newer.length} newer snapshot{newer.length === 1 ? '' : 's'} of disk {snap.disk_id}
              {driver ? ` on ${driver} storage ${disk?.zpool ?? ''}` : ''}:{' '}
              <strong>
                {driver === 'zfs'
                  ? newer.length === 1
                    ? 'it is destroyed by the rollback'
                    : 'they are destroyed by the rollback'
                  : driver
                    ? newer.length === 1
                      ? 'it is kept'
                      : 'they are kept'
                    : 'what happens to them depends on the storage'}
              </strong>
            </p>
            <ul class="newer-list">
              {newer.map((s) => (
                <li key={s.id}>
                  {s.name} <span class="muted">({formatUtc(s.created)})</span>
                </li>
              ))}
            </ul>
            <label class="check">
              <input type="checkbox" name="force" checked={force} onChange={(e) => setForce(e.currentTarget.checked)} /> Force: roll back although newer snapshots exist (on ZFS
              storage they are deleted)
            </label>
            {destroys ? (
              <label>
                Type the VM name, {data.vm.hostname}, to destroy {newer.length === 1 ? 'this snapshot' : `these ${newer.length} snapshots`}
                <input name="confirm" autocomplete="off" value={typed} onInput={(e) => setTyped(e.currentTarget.value)} />
              </label>
            ) : null}
          </div>
        )}
        <ErrorText error={error} />
        <DialogButtons label="Roll back" danger disabled={busy || running || !confirmed} reason={reason} onCancel={onClose} />
      </form>
    </Dialog>
  );
}

export function RestoreDialog({ data, snap, act, onClose }: Props & { snap: Snapshot }) {
  const [target, setTarget] = useState<RestoreTarget>(NO_TARGET);
  const [force, setForce] = useState(false);
  const [error, busy, submit] = useSubmit(onClose);
  const source = data.disks.find((d) => d.disk_id === snap.disk_id);
  return (
    <Dialog title={`Restore ${snap.name} into another server`} onClose={onClose}>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          const body = { disk_id: snap.disk_id, target_hostname_or_uuid: target.hostname, target_disk_id: target.diskId, force };
          void submit((accepted) => act(`Restore ${snap.name} into ${target.hostname}`, 'PUT', `vm/${seg(data.vm.hostname)}/snapshot/${seg(snap.name)}`, body, { onAccepted: accepted }));
        }}
      >
        <p class="warning" role="note">
          <strong>Warning:</strong> all data on the target disk is replaced by disk {snap.disk_id} as of {snap.name}
          {source ? ` (${formatMb(source.size)})` : ''}. The target disk must have the same size and its server must be stopped; the target disk's snapshots may be lost.
        </p>
        <RestoreTargetFields
          vmLabel="Target server"
          value={target}
          onChange={setTarget}
          prefer={(disks) => disks.find((x) => x.size === source?.size)}
          differs={(d) => source !== undefined && d.size !== source.size}
        />
        <label class="check">
          <input type="checkbox" name="force" checked={force} onChange={(e) => setForce(e.currentTarget.checked)} /> Force: restore although the target disk has snapshots
        </label>
        <ErrorText error={error} />
        <DialogButtons label="Restore" danger disabled={busy || !target.hostname || !target.diskId} onCancel={onClose} />
      </form>
    </Dialog>
  );
}

export function DeleteDialog({ data, snaps, act, onClose, onDone }: Props & { snaps: Snapshot[]; onDone: () => void }) {
  const [error, busy, submit] = useSubmit(onClose);
  const byDisk = new Map<number, string[]>();
  for (const s of snaps) byDisk.set(s.disk_id, [...(byDisk.get(s.disk_id) ?? []), s.name]);
  const base = `vm/${seg(data.vm.hostname)}/snapshot`;
  return (
    <Dialog title={snaps.length === 1 ? `Delete snapshot ${snaps[0]!.name}` : `Delete ${snaps.length} snapshots`} onClose={onClose}>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void submit(async (accepted) => {
            // One request per disk (the API deletes several snapshots of one disk at a time).
            const jobs = [...byDisk].map(([disk, names], i) => {
              const one = snaps.length === 1;
              const label = one ? `Delete ${names[0]}` : `Delete ${names.length} snapshots of disk ${disk}`;
              const path = one ? `${base}/${seg(names[0]!)}` : base;
              const body = one ? { disk_id: disk } : { disk_id: disk, snapnames: names };
              return act(label, 'DELETE', path, body, i === 0 ? { onAccepted: accepted } : {});
            });
            onDone();
            // Their outcomes go to the page's notice; only the first one's refusal stays in here.
            for (const j of jobs.slice(1)) j.catch(() => undefined);
            await jobs[0];
          });
        }}
      >
        <p>
          {snaps.length === 1 ? 'This snapshot is' : 'These snapshots are'} destroyed on storage:{' '}
          {[...byDisk].map(([d, names]) => `disk ${d}: ${names.join(', ')}`).join('; ')}.
        </p>
        <ErrorText error={error} />
        <DialogButtons label="Delete" danger disabled={busy} onCancel={onClose} />
      </form>
    </Dialog>
  );
}
