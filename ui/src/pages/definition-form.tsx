/**
 * Add or edit a snapshot definition. As the schedule, zone and retention change, the preview shows
 * the next five runs in UTC and in the zone, and what retention would destroy now. For an existing
 * definition the preview comes from the server (`…/preview/`, the same plan the real prune uses);
 * a new definition has no snapshots yet, so its runs are computed here with the server's cron code.
 */
import { useEffect, useMemo, useState } from 'preact/hooks';
import { getResult, seg } from '../api.js';
import type { Act } from '../actions.js';
import { Dialog, DialogButtons, DiskOptions, ErrorText } from '../components.js';
import { formatInZone, formatUtc } from '../format.js';
import { parsePreview, type Preview } from '../preview.js';
import { nextRuns, validateCron } from '../stale.js';
import type { Definition } from '../types.js';
import type { VmData } from './vm.js';

const PRESETS: Readonly<Record<string, string>> = {
  hourly: 'every hour at a random minute, keep 24',
  daily: 'every day at a random time, keep 30',
  weekly: 'every week at a random time, keep 12',
  monthly: 'every month at a random time, keep 6',
};
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

function zones(): string[] {
  const intl = Intl as unknown as { supportedValuesOf?: (k: string) => string[] };
  try {
    return ['UTC', ...(intl.supportedValuesOf?.('timeZone') ?? [])];
  } catch {
    return ['UTC'];
  }
}

interface State {
  name: string;
  diskId: number;
  schedule: string;
  tz: string;
  retention: string;
  retentionDays: string;
  active: boolean;
  fsfreeze: boolean;
  catchup: boolean;
  desc: string;
}

function initial(def: Definition | null, diskId: number): State {
  return {
    name: def?.name ?? '',
    diskId: def?.disk_id ?? diskId,
    schedule: def?.schedule ?? '',
    tz: def?.tz ?? 'UTC',
    retention: def ? String(def.retention) : '',
    retentionDays: def?.retention_days ? String(def.retention_days) : '',
    active: def?.active ?? true,
    fsfreeze: def?.fsfreeze ?? false,
    catchup: def?.catchup ?? true,
    desc: def?.desc ?? '',
  };
}

/** The request body: on edit only what changed; on add, empty schedule/retention are left to the server's presets. */
function bodyOf(s: State, def: Definition | null): Record<string, unknown> {
  const out: Record<string, unknown> = { disk_id: s.diskId };
  const days = s.retentionDays.trim() === '' ? null : s.retentionDays.trim();
  const fields: [string, unknown, unknown][] = [
    ['schedule', s.schedule.trim(), def?.schedule],
    ['tz', s.tz.trim(), def?.tz ?? 'UTC'],
    ['retention', s.retention.trim(), def ? String(def.retention) : undefined],
    ['retention_days', days, def ? (def.retention_days ? String(def.retention_days) : null) : null],
    ['active', s.active, def?.active ?? true],
    ['fsfreeze', s.fsfreeze, def?.fsfreeze ?? false],
    ['catchup', s.catchup, def?.catchup ?? true],
    ['desc', s.desc, def?.desc ?? ''],
  ];
  for (const [k, v, old] of fields) {
    if (def ? v !== old : v !== '' && v !== null && v !== old) out[k] = typeof v === 'string' && /^\d+$/.test(v) && k.startsWith('retention') ? Number(v) : v;
  }
  return out;
}

function PreviewPanel({ state, def, hostname }: { state: State; def: Definition | null; hostname: string }) {
  const [server, setServer] = useState<{ preview: Preview | null; error: string | null; key: string } | null>(null);
  const schedule = state.schedule.trim();
  const tz = state.tz.trim() || 'UTC';
  const cronError = schedule === '' ? null : validateCron(schedule);
  const key = JSON.stringify([schedule, tz, state.retention, state.retentionDays]);

  useEffect(() => {
    if (!def || cronError) return;
    const t = setTimeout(() => {
      const query = {
        disk_id: def.disk_id,
        schedule: schedule || undefined,
        tz,
        retention: state.retention.trim() || undefined,
        retention_days: state.retentionDays.trim() || undefined,
      };
      getResult<unknown>(`vm/${seg(hostname)}/define/snapshot/${seg(def.name)}/preview`, query).then(
        (r) => setServer({ preview: parsePreview(r), error: null, key }),
        (e: Error) => setServer({ preview: null, error: e.message, key }),
      );
    }, 250);
    return () => clearTimeout(t);
  }, [key, def, hostname, cronError]);

  const local = useMemo(() => {
    if (schedule === '' || cronError) return null;
    try {
      return nextRuns(schedule, tz, new Date(), 5);
    } catch (e) {
      return (e as Error).message;
    }
  }, [schedule, tz, cronError]);

  const fresh = server && server.key === key ? server : null;
  const runs = fresh?.preview?.runs?.length ? fresh.preview.runs.map((r) => ({ utc: r.utc, local: r.local })) : null;
  const rows = runs ?? (Array.isArray(local) ? local.map((d) => ({ utc: d.toISOString(), local: null })) : []);
  return (
    <section class="preview" aria-labelledby="preview-title" aria-live="polite" data-testid="preview">
      <h3 id="preview-title">Preview</h3>
      {schedule === '' ? <p class="muted">{def ? 'Enter a schedule.' : 'No schedule: a predefined name gets its default from the server.'}</p> : null}
      {cronError ? (
        <p class="error" role="alert">
          {cronError}
        </p>
      ) : null}
      {typeof local === 'string' && !runs ? <p class="error">{local}</p> : null}
      {rows.length > 0 ? (
        <table class="grid compact" data-testid="next-runs">
          <caption>
            Next {rows.length} runs{runs ? '' : ' (computed in the browser)'}
          </caption>
          <thead>
            <tr>
              <th scope="col">UTC</th>
              <th scope="col">{tz}</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr key={r.utc}>
                <td>{formatUtc(r.utc)}</td>
                <td>{r.local && !/^\d{4}-\d\d-\d\dT/.test(r.local) ? r.local : formatInZone(r.local ?? r.utc, tz)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      <div data-testid="prune-preview">
        {!def ? (
          <p class="muted">Retention: a new definition has no snapshots, so nothing would be deleted now.</p>
        ) : fresh?.error ? (
          <p class="error" role="alert">
            Preview: {fresh.error}
          </p>
        ) : fresh?.preview?.stopped ? (
          <p>
            <strong>Pruning is stopped</strong>: the definition's last run failed, so retention deletes nothing until a run succeeds.
          </p>
        ) : fresh?.preview?.prune ? (
          fresh.preview.prune.length === 0 ? (
            <p>Retention would delete nothing now.</p>
          ) : (
            <p>
              Retention would delete now ({fresh.preview.prune.length}): <strong>{fresh.preview.prune.join(', ')}</strong>
            </p>
          )
        ) : (
          <p class="muted">{fresh ? 'The server did not say what retention would delete.' : 'Asking the server what retention would delete…'}</p>
        )}
      </div>
    </section>
  );
}

export function DefinitionForm({ data, act, def, onClose }: { data: VmData; act: Act; def: Definition | null; onClose: () => void }) {
  const [s, setS] = useState<State>(() => initial(def, data.disks[0]?.disk_id ?? 1));
  const [error, setError] = useState<string | null>(null);
  const [nameError, setNameError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const zoneList = useMemo(zones, []);
  const set = <K extends keyof State>(k: K, v: State[K]): void => setS((old) => ({ ...old, [k]: v }));
  const preset = PRESETS[s.name];

  const submit = async (): Promise<void> => {
    if (!def) {
      const n = s.name;
      const err = n === '' ? 'This field is required.' : n.length > 8 ? `Ensure this value has at most 8 characters (it has ${n.length}).` : NAME_RE.test(n) ? null : 'Invalid value.';
      setNameError(err);
      if (err) return;
    }
    setBusy(true);
    setError(null);
    const path = `vm/${seg(data.vm.hostname)}/define/snapshot/${seg(s.name)}`;
    try {
      await act(def ? `Update definition ${s.name}` : `Add definition ${s.name}`, def ? 'PUT' : 'POST', path, bodyOf(s, def), { syncText: 'saved' });
      onClose();
    } catch (err) {
      setError((err as Error).message);
      setBusy(false);
    }
  };

  return (
    <Dialog title={def ? `Edit definition ${def.name}` : 'Add snapshot definition'} onClose={onClose} wide>
      <form
        noValidate
        onSubmit={(e) => {
          e.preventDefault();
          void submit();
        }}
      >
        <ErrorText error={error} />
        <div class="form-grid">
          <div>
            <label>
              Name
              <input
                name="name"
                list="define-presets"
                placeholder="daily"
                value={s.name}
                readOnly={def !== null}
                aria-invalid={nameError ? 'true' : undefined}
                aria-describedby="define-name-hint"
                onInput={(e) => set('name', e.currentTarget.value)}
              />
            </label>
            <datalist id="define-presets">
              {Object.keys(PRESETS).map((p) => (
                <option key={p} value={p} />
              ))}
            </datalist>
            <p id="define-name-hint" class={nameError ? 'field-error' : 'hint'} role={nameError ? 'alert' : undefined}>
              {nameError ?? (preset && !def ? `Predefined: ${preset}, unless you fill in the fields.` : 'hourly, daily, weekly and monthly have defaults.')}
            </p>
            <label>
              Disk
              <select name="disk_id" value={s.diskId} disabled={def !== null} onChange={(e) => set('diskId', Number(e.currentTarget.value))}>
                <DiskOptions disks={data.disks} />
              </select>
            </label>
            <label>
              Schedule (cron: minute hour day month weekday)
              <input name="schedule" placeholder={preset && !def ? 'server default' : '0 3 * * *'} value={s.schedule} onInput={(e) => set('schedule', e.currentTarget.value)} />
            </label>
            <label>
              Time zone
              <input name="tz" list="define-zones" value={s.tz} onInput={(e) => set('tz', e.currentTarget.value)} />
            </label>
            <datalist id="define-zones">
              {zoneList.map((z) => (
                <option key={z} value={z} />
              ))}
            </datalist>
            <label>
              Retention (snapshots to keep, 0 keeps all)
              <input name="retention" type="number" min={0} placeholder={preset && !def ? 'server default' : '30'} value={s.retention} onInput={(e) => set('retention', e.currentTarget.value)} />
            </label>
            <label>
              Retention days (also delete older ones; empty: no age limit)
              <input name="retention_days" type="number" min={1} value={s.retentionDays} onInput={(e) => set('retentionDays', e.currentTarget.value)} />
            </label>
            <label class="check">
              <input type="checkbox" name="active" checked={s.active} onChange={(e) => set('active', e.currentTarget.checked)} /> Active
            </label>
            <label class="check">
              <input type="checkbox" name="fsfreeze" checked={s.fsfreeze} onChange={(e) => set('fsfreeze', e.currentTarget.checked)} /> Freeze filesystem
            </label>
            <label class="check">
              <input type="checkbox" name="catchup" checked={s.catchup} onChange={(e) => set('catchup', e.currentTarget.checked)} /> Catch up a missed run after downtime
            </label>
            <label>
              Description
              <input name="desc" value={s.desc} onInput={(e) => set('desc', e.currentTarget.value)} />
            </label>
          </div>
          <PreviewPanel state={s} def={def} hostname={data.vm.hostname} />
        </div>
        <DialogButtons label={def ? 'Save' : 'Add'} disabled={busy} onCancel={onClose} />
      </form>
    </Dialog>
  );
}
