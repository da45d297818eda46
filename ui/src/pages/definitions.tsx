/** The VM's snapshot definitions: list, add, edit, delete, pause/resume, run now. */
import { useState } from 'preact/hooks';
import { seg } from '../api.js';
import type { Act } from '../actions.js';
import type { Identity } from '../auth.js';
import { Icon } from '../icons.js';
import { ScheduleText } from '../schedule-text.js';
import { Badge, ColumnHeads, Dialog, DialogButtons, ErrorText } from '../components.js';
import { formatAge, formatMb, formatUtc } from '../format.js';
import { useNow } from '../hooks.js';
import { staleness } from '../stale.js';
import type { Definition } from '../types.js';
import type { VmData } from './vm.js';
import { DefinitionForm } from './definition-form.js';

type Open = { kind: 'add' } | { kind: 'edit'; def: Definition } | { kind: 'delete'; def: Definition } | null;

export function Definitions({ data, act, who }: { data: VmData; act: Act; who: Identity }) {
  const [open, setOpen] = useState<Open>(null);
  const [deleteError, setDeleteError] = useState<string | null>(null);
  const now = useNow();
  const path = (d: Definition): string => `vm/${seg(data.vm.hostname)}/define/snapshot/${seg(d.name)}`;
  const ignore = (): undefined => undefined;

  return (
    <section id="definitions" aria-labelledby="defs-title">
      <h2 id="defs-title">Snapshot definitions</h2>
      {!who.admin ? <p class="muted">Changing definitions needs an admin of the datacenter; the server decides.</p> : null}
      <div class="toolbar">
        <button type="button" onClick={() => setOpen({ kind: 'add' })}>
          Add definition
        </button>
      </div>
      {data.defs.length === 0 ? (
        <p>No snapshot definitions.</p>
      ) : (
        <div class="scroll" tabIndex={0} role="region" aria-labelledby="defs-title">
<table class="grid" aria-labelledby="defs-title" data-testid="definitions">
          <thead>
            <tr>
              <ColumnHeads names={['Name', 'Disk', 'Schedule', 'Retention', 'State', 'Last success', 'Description', 'Actions']} />
            </tr>
          </thead>
          <tbody>
            {data.defs.map((d) => {
              const st = staleness(d, data.snapshots, now);
              const disk = data.disks.find((x) => x.disk_id === d.disk_id);
              return (
                <tr key={`${d.disk_id}/${d.name}`} data-name={d.name}>
                  <th scope="row">{d.name}</th>
                  <td>
                    {d.disk_id}
                    {disk ? <span class="muted"> ({formatMb(disk.size)})</span> : null}
                  </td>
                  <td>
                    <ScheduleText schedule={d.schedule} tz={d.tz ?? 'UTC'} />
                    {d.next_run ? <div class="muted">next: {formatUtc(d.next_run)}</div> : null}
                  </td>
                  <td>
                    {d.retention === 0 ? 'keep all' : `keep ${d.retention}`}
                    {d.retention_days ? `, max ${d.retention_days} days` : ''}
                  </td>
                  <td>
                    {d.active ? <Badge kind="ok">active</Badge> : <Badge kind="warn">paused</Badge>}
                    {d.fsfreeze ? <span class="flag"> <Icon name="snow" /> freeze</span> : null}
                  </td>
                  <td>
                    {st.lastSuccess ? <time dateTime={st.lastSuccess}>{formatAge(st.lastSuccess, now)}</time> : 'never'}{' '}
                    {st.stale ? <Badge kind="bad">stale: {st.reason}</Badge> : null}
                    {d.last_error ? <div class="error-text">last error: {d.last_error}</div> : null}
                  </td>
                  <td>{d.desc}</td>
                  <td class="actions">
                    <button type="button" aria-label={`Edit definition ${d.name}`} onClick={() => setOpen({ kind: 'edit', def: d })}>
                      Edit
                    </button>
                    <button
                      type="button"
                      aria-label={`${d.active ? 'Pause' : 'Resume'} definition ${d.name}`}
                      onClick={() => void act(`${d.active ? 'Pause' : 'Resume'} ${d.name}`, 'PUT', path(d), { disk_id: d.disk_id, active: !d.active }, { syncText: 'saved' }).catch(ignore)}
                    >
                      {d.active ? 'Pause' : 'Resume'}
                    </button>
                    <button type="button" aria-label={`Run now: definition ${d.name}`} onClick={() => void act(`Run ${d.name} now`, 'POST', `${path(d)}/run`, { disk_id: d.disk_id }).catch(ignore)}>
                      Run now
                    </button>
                    <button
                      type="button"
                      class="danger"
                      aria-label={`Delete definition ${d.name}`}
                      onClick={() => {
                        setDeleteError(null);
                        setOpen({ kind: 'delete', def: d });
                      }}
                    >
                      Delete
                    </button>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
</div>
      )}
      {open?.kind === 'add' || open?.kind === 'edit' ? (
        <DefinitionForm data={data} act={act} def={open.kind === 'edit' ? open.def : null} onClose={() => setOpen(null)} />
      ) : null}
      {open?.kind === 'delete' ? (
        <Dialog title={`Delete definition ${open.def.name}`} onClose={() => setOpen(null)}>
          <form
            onSubmit={(e) => {
              e.preventDefault();
              const d = open.def;
              act(`Delete definition ${d.name}`, 'DELETE', path(d), { disk_id: d.disk_id }, { syncText: 'deleted' }).then(
                () => setOpen(null),
                (err: Error) => setDeleteError(err.message),
              );
            }}
          >
            <p>Its snapshots stay, no longer linked to a definition.</p>
            <ErrorText error={deleteError} />
            <DialogButtons label="Delete" danger onCancel={() => setOpen(null)} />
          </form>
        </Dialog>
      ) : null}
    </section>
  );
}
