/** Tasks: what runs now (followed to its end), this tab's own tasks, and the task log with its filters. */
import { Fragment } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { onLinkClick, vmPath } from '../router.js';
import { parseDetail } from '../tasklog.js';
import { parseBody, rawRequest, request, seg } from '../api.js';
import { Badge, ColumnHeads, EmptyRow, ErrorText, Loading } from '../components.js';
import { on } from '../events.js';
import { formatDuration, formatUtc } from '../format.js';
import { useLoad, useNow } from '../hooks.js';
import { trackedTasks, waitForeign, type TrackedTask } from '../tasks.js';
import type { TaskLogEntry } from '../types.js';

interface Running {
  id: string;
  view: Record<string, unknown> | null;
}

/** New tasks (started elsewhere) have no push channel in the API: the list is re-read this often. */
const DISCOVER_MS = 5000;

async function loadRunning(): Promise<Running[]> {
  const r = await request<string[]>('GET', 'task');
  const ids = r.body;
  return Promise.all(
    ids.map(async (id) => {
      // A task may end between the two requests: then it has no details any more.
      const res = await rawRequest('GET', `task/${seg(id)}`);
      const body = await parseBody(res);
      return { id, view: res.ok ? (body as Record<string, unknown>) : null };
    }),
  );
}

function stateKind(s: string): 'ok' | 'bad' | 'busy' | 'warn' {
  return s === 'SUCCESS' ? 'ok' : s === 'FAILURE' ? 'bad' : s === 'REVOKED' ? 'warn' : 'busy';
}

function describe(v: Record<string, unknown> | null): string {
  if (!v) return 'finished meanwhile';
  const parts = [v['view'], v['method'], v['hostname'], v['snapname'] ?? v['snapnames'], v['disk_id'] !== undefined ? `disk ${String(v['disk_id'])}` : null];
  return parts.filter((p) => p !== undefined && p !== null && p !== '').map(String).join(' · ');
}

function useTracked(): readonly TrackedTask[] {
  const [, force] = useState(0);
  useEffect(() => on('tracker-changed', () => force((n) => n + 1)), []);
  return trackedTasks();
}

export function TrackedList({ compact }: { compact?: boolean }) {
  const tasks = useTracked();
  if (tasks.length === 0) return compact ? null : <p class="muted">No tasks started from this tab yet.</p>;
  return (
    <ul class="tracked" aria-live="polite" data-testid="tracked">
      {(compact ? tasks.slice(0, 3) : tasks).map((t) => (
        <li key={t.id} data-task={t.id} data-state={t.state}>
          <Badge kind={stateKind(t.state)}>{t.state}</Badge> {t.label}
          {t.message ? `: ${t.message}` : ''}
        </li>
      ))}
    </ul>
  );
}

interface Filters {
  status: string;
  object_name: string;
  hide_auto: boolean;
  show_running: boolean;
  date_from: string;
  date_to: string;
}

const NO_FILTERS: Filters = { status: '', object_name: '', hide_auto: false, show_running: false, date_from: '', date_to: '' };

/** The object of an entry: a VM links to its page. */
function ObjectLink({ e }: { e: TaskLogEntry }) {
  if (e.object_type === 'vm' && e.object_name) {
    return (
      <a href={vmPath(e.object_name)} onClick={(ev) => onLinkClick(ev, vmPath(e.object_name))}>
        {e.object_name}
      </a>
    );
  }
  return <>{e.object_name}</>;
}

function Fields({ detail }: { detail: string }) {
  const fields = parseDetail(detail);
  if (fields === null) return <>{detail}</>;
  return (
    <dl class="fields">
      {fields.map(([k, v], i) => (
        <Fragment key={`${k}-${i}`}>
          <dt>{k.replace(/_/g, ' ')}</dt>
          <dd>{v}</dd>
        </Fragment>
      ))}
    </dl>
  );
}

/** Details as labelled fields; a failure is collapsed to its message and expands to the rest. */
function Detail({ e }: { e: TaskLogEntry }) {
  if (e.status !== 'FAILURE') return <Fields detail={e.detail} />;
  return (
    <details class="failure">
      <summary>Failed: show why</summary>
      <Fields detail={e.detail} />
    </details>
  );
}

function TaskLog() {
  const [filters, setFilters] = useState<Filters>(NO_FILTERS);
  const [draft, setDraft] = useState<Filters>(NO_FILTERS);
  const [page, setPage] = useState(1);
  const query = {
    page,
    status: filters.status,
    object_name: filters.object_name,
    hide_auto: filters.hide_auto ? 'true' : '',
    show_running: filters.show_running ? 'true' : '',
    date_from: filters.date_from ? new Date(filters.date_from).toISOString() : '',
    date_to: filters.date_to ? new Date(filters.date_to).toISOString() : '',
  };
  const log = useLoad(() => request<{ count: number; next: string | null; previous: string | null; results: TaskLogEntry[] }>('GET', 'task/log', { query }).then((r) => r.body), JSON.stringify(query));
  const set = <K extends keyof Filters>(k: K, v: Filters[K]): void => setDraft((d) => ({ ...d, [k]: v }));
  return (
    <section aria-labelledby="log-title">
      <h2 id="log-title">Task log</h2>
      <form
        class="filters"
        aria-label="Filter the task log"
        onSubmit={(e) => {
          e.preventDefault();
          setPage(1);
          setFilters(draft);
        }}
      >
        <label>
          Status
          <select name="status" value={draft.status} onChange={(e) => set('status', e.currentTarget.value)}>
            <option value="">all</option>
            {['PENDING', 'SUCCESS', 'FAILURE', 'REVOKED'].map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
        <label>
          Object name
          <input name="object_name" value={draft.object_name} onInput={(e) => set('object_name', e.currentTarget.value)} />
        </label>
        <label>
          From
          <input name="date_from" type="datetime-local" value={draft.date_from} onInput={(e) => set('date_from', e.currentTarget.value)} />
        </label>
        <label>
          To
          <input name="date_to" type="datetime-local" value={draft.date_to} onInput={(e) => set('date_to', e.currentTarget.value)} />
        </label>
        <label class="check">
          <input type="checkbox" name="hide_auto" checked={draft.hide_auto} onChange={(e) => set('hide_auto', e.currentTarget.checked)} /> Hide automatic
        </label>
        <label class="check">
          <input type="checkbox" name="show_running" checked={draft.show_running} onChange={(e) => set('show_running', e.currentTarget.checked)} /> Only running
        </label>
        <button type="submit">Apply filters</button>
      </form>
      <ErrorText error={log.error} />
      {!log.data && log.loading ? <Loading what="the task log" /> : null}
      {log.data ? (
        <>
          <div class="scroll" tabIndex={0} role="region" aria-labelledby="log-title">
<table class="grid cards" aria-labelledby="log-title" data-testid="task-log">
            <thead>
              <tr>
                <ColumnHeads names={['Time', 'Status', 'User', 'Message', 'Object', 'Detail']} />
              </tr>
            </thead>
            <tbody>
              {log.data.results.length === 0 ? <EmptyRow cols={6}>No entries.</EmptyRow> : null}
              {log.data.results.map((e) => (
                <tr key={`${e.task}-${e.time}-${e.status}`} data-status={e.status}>
                  <td data-label="Time">
                    <time dateTime={e.time}>{formatUtc(e.time)}</time>
                  </td>
                  <td data-label="Status">
                    <Badge kind={stateKind(e.status)}>{e.status}</Badge>
                  </td>
                  <td data-label="User">{e.username}</td>
                  <td data-label="Message">{e.msg}</td>
                  <td data-label="Object">
                    <ObjectLink e={e} />
                  </td>
                  <td class="detail" data-label="Detail">
                    <Detail e={e} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
</div>
          <nav class="pager" aria-label="Task log pages">
            {/* Not `previous`: like Danube's, it is null on page 2 although page 1 exists. */}
            <button type="button" disabled={page <= 1} onClick={() => setPage(page - 1)}>
              Previous page
            </button>
            <span>
              Page {page} of {Math.max(1, Math.ceil(log.data.count / 100))} ({log.data.count} entries)
            </span>
            <button type="button" disabled={!log.data.next} onClick={() => setPage(page + 1)}>
              Next page
            </button>
          </nav>
        </>
      ) : null}
    </section>
  );
}

export function TasksPage() {
  const running = useLoad(loadRunning, 'running');
  const now = useNow(1000);
  const ids = (running.data ?? []).map((r) => r.id).join(',');
  useEffect(() => {
    if (!ids) return;
    for (const r of running.data ?? []) void waitForeign(r.id, typeof r.view?.['hostname'] === 'string' ? r.view['hostname'] : null, describe(r.view));
  }, [ids]);
  useEffect(() => {
    const t = setInterval(() => {
      if (document.visibilityState === 'visible') running.reload();
    }, DISCOVER_MS);
    return () => clearInterval(t);
  }, [running.reload]);
  useEffect(() => {
    document.title = 'Tasks · esnap';
  }, []);
  return (
    <main id="main">
      <h1>Tasks</h1>
      <section aria-labelledby="running-title">
        <h2 id="running-title">Running</h2>
        <ErrorText error={running.error} />
        {running.data && running.data.length === 0 ? <p>No task is running.</p> : null}
        {running.data && running.data.length > 0 ? (
          <ul data-testid="running">
            {running.data.map((r) => {
              const t = typeof r.view?.['time'] === 'string' ? new Date(r.view['time']).getTime() : null;
              return (
                <li key={r.id}>
                  <Badge kind="busy">running</Badge> {describe(r.view)} <span class="muted">({t ? `for ${formatDuration(now - t)}` : r.id})</span>
                </li>
              );
            })}
          </ul>
        ) : null}
      </section>
      <section aria-labelledby="mine-title">
        <h2 id="mine-title">Started from this tab</h2>
        <TrackedList />
      </section>
      <TaskLog />
    </main>
  );
}

