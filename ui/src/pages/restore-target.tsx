/**
 * The target of a restore into a VM's disk, one picker for the snapshot and the backup restore
 * dialogs: the VMs to choose from, the chosen VM's disks (loaded when it is chosen, one of them
 * preselected), and a warning when the chosen disk's size differs from the source's (the server
 * refuses: Disk size mismatch). The dialog keeps the choice and sends it.
 *
 * @example
 *   const [t, setT] = useState(NO_TARGET);
 *   <RestoreTargetFields vmLabel="Target VM" stoppedOnly value={t} onChange={setT}
 *     prefer={(disks) => disks.find((d) => d.disk_id === b.disk_id)} differs={(d) => d.size !== sizeMb} />
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { getResult, seg } from '../api.js';
import { DiskOptions, ErrorText } from '../components.js';
import type { Disk, Vm } from '../types.js';

export interface RestoreTarget {
  /** The target VM's hostname; '' while none is chosen. */
  readonly hostname: string;
  /** Its disk's array id; 0 while none is chosen. */
  readonly diskId: number;
}

export const NO_TARGET: RestoreTarget = { hostname: '', diskId: 0 };

export function RestoreTargetFields(props: {
  vmLabel: string;
  /** Only stopped VMs can be chosen; the others are listed disabled, saying why. */
  stoppedOnly?: boolean;
  /** The disk chosen when a VM is chosen (else its first). */
  prefer: (disks: readonly Disk[]) => Disk | undefined;
  /** Whether the chosen disk's size differs from the source's. */
  differs: (disk: Disk) => boolean;
  value: RestoreTarget;
  onChange: (t: RestoreTarget) => void;
}) {
  const { value, onChange } = props;
  const [vms, setVms] = useState<Vm[] | null>(null);
  const [disks, setDisks] = useState<Disk[] | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  // Read when the disks arrive, so that a new function on each render does not reload them.
  const latest = useRef(props);
  latest.current = props;
  useEffect(() => {
    getResult<Vm[]>('vm', { full: true }).then(setVms, (e: Error) => setLoadError(e.message));
  }, []);
  useEffect(() => {
    setDisks(null);
    const hostname = value.hostname;
    if (!hostname) return;
    let stale = false;
    getResult<Disk[]>(`vm/${seg(hostname)}/define/disk`).then(
      (d) => {
        if (stale) return;
        setDisks(d);
        latest.current.onChange({ hostname, diskId: latest.current.prefer(d)?.disk_id ?? d[0]?.disk_id ?? 0 });
      },
      (e: Error) => {
        if (!stale) setLoadError(e.message);
      },
    );
    return () => {
      stale = true;
    };
  }, [value.hostname]);
  const chosen = disks?.find((d) => d.disk_id === value.diskId);
  return (
    <>
      <ErrorText error={loadError} />
      <label>
        {props.vmLabel}
        <select name="target" required value={value.hostname} onChange={(e) => onChange({ hostname: e.currentTarget.value, diskId: value.diskId })}>
          <option value="">choose…</option>
          {(vms ?? []).map((v) => {
            const blocked = props.stoppedOnly === true && v.status !== 'stopped';
            return (
              <option key={v.uuid} value={v.hostname} disabled={blocked}>
                {v.hostname} ({blocked ? `${v.status}: stop it first` : v.status})
              </option>
            );
          })}
        </select>
      </label>
      <label>
        Target disk
        <select name="target_disk_id" required disabled={!disks} value={value.diskId} onChange={(e) => onChange({ hostname: value.hostname, diskId: Number(e.currentTarget.value) })}>
          <DiskOptions disks={disks ?? []} />
        </select>
      </label>
      {chosen && props.differs(chosen) ? (
        <p class="warning" role="note">
          Sizes differ: the server will refuse (Disk size mismatch).
        </p>
      ) : null}
    </>
  );
}
