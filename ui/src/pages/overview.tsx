/**
 * Overview, the page an operator opens first: what is wrong (each problem linking to where to act),
 * every VM's protection, nodes with storage usage against the floor. One aggregate request
 * (esnap's /overview/) brings the problems, one page of the VM table (the server filters and
 * pages) and the nodes; the storages' bytes-over-days charts, below the fold and the costliest part
 * to compute, follow in a second request once the first is rendered. `main[data-ready="overview"]`
 * is set once the first answer is rendered (the benchmark and tests wait for it), and
 * `data-charts="ready"` on the nodes section once the charts are.
 */
import { useRef, useState } from 'preact/hooks';
import { getResult } from '../api.js';
import { Badge, DiskFlags, ErrorText, Loading } from '../components.js';
import { BytesChart, StorageBar } from '../charts.js';
import { formatAge, formatBytes, formatMb, formatUtc } from '../format.js';
import { useLoad, useNow } from '../hooks.js';
import { backupsPath, onLinkClick, vmPath } from '../router.js';
import type { NodesOverview, Problem, VmSummary } from '../types.js';

/** VM rows per page: a thousand rows would cost the first paint more than they help (problems come first anyway). */
export const VM_PAGE = 100;

interface VmQuery {
  readonly offset: number;
  readonly attention: boolean;
}

interface OverviewData {
  problems: Problem[];
  vms: VmSummary[];
  vm_count: number;
  nodes: NodesOverview;
}

/** One request: problems, one page of VMs (with the count of the whole list) and nodes without their history. */
function loadOverview(q: VmQuery): Promise<OverviewData> {
  return getResult('overview', { days: 0, limit: VM_PAGE, offset: q.offset, attention: q.attention ? 'true' : undefined });
}

type Charts = Map<string, { day: string; bytes: number }[]>;

/** The storages' snapshot bytes over the last 30 days, by node and storage. */
async function loadCharts(): Promise<Charts> {
  const r = await getResult<NodesOverview>('overview/node', { days: 30 });
  return new Map(r.nodes.flatMap((n) => n.storages.map((s) => [storageAnchor(n.hostname, s.name), s.snapshot_bytes] as const)));
}

const storageAnchor = (node: string, storage: string): string => `storage-${node}-${storage}`;

/** Where to act on a problem: the VM's definitions or snapshots, or the storage/node below. */
function target(p: Problem): { href: string; label: string } {
  if (p.vm && p.kind.startsWith('backup_')) return { href: backupsPath(p.vm), label: `Open the backups of ${p.vm}` };
  if (p.vm) {
    const section = p.kind === 'snapshot_lost' ? 'snapshots' : 'definitions';
    return { href: `${vmPath(p.vm)}#${section}`, label: p.kind === 'snapshot_lost' ? `Open the snapshots of ${p.vm}` : `Open the definitions of ${p.vm}` };
  }
  if (p.storage && p.node) return { href: `#${storageAnchor(p.node, p.storage)}`, label: `Show storage ${p.storage} on ${p.node}` };
  return { href: `#node-${p.node ?? ''}`, label: `Show node ${p.node ?? ''}` };
}

function Problems({ list }: { list: Problem[] }) {
  return (
    <section aria-labelledby="problems-title" class="panel problems" data-testid="problems">
      <h2 id="problems-title">Problems</h2>
      {list.length === 0 ? (
        <p>
          <Badge kind="ok">All clear</Badge> every definition on schedule, no lost snapshots, all nodes online, every storage above the floor.
        </p>
      ) : (
        <ul class="problem-list">
          {list.map((p, i) => {
            const t = target(p);
            return (
              <li key={i} data-kind={p.kind} class={`problem problem-${p.severity}`}>
                <Badge kind={p.severity}>{p.severity === 'bad' ? 'problem' : 'warning'}</Badge> <span>{p.message}</span>{' '}
                <a href={t.href} onClick={(e) => (t.href.startsWith('#') ? undefined : onLinkClick(e, t.href))}>
                  {t.label}
                </a>
              </li>
            );
          })}
        </ul>
      )}
    </section>
  );
}

const PROTECTION: Record<VmSummary['protection'], { kind: 'ok' | 'bad' | 'warn' | 'info'; text: string }> = {
  none: { kind: 'info', text: 'no definition' },
  ok: { kind: 'ok', text: 'on schedule' },
  stale: { kind: 'bad', text: 'stale' },
  failing: { kind: 'bad', text: 'failing' },
};

function VmRow({ v, now }: { v: VmSummary; now: number }) {
  const p = PROTECTION[v.protection];
  return (
    <tr class={v.protection === 'stale' || v.protection === 'failing' ? 'row-stale' : ''} data-vm={v.hostname} data-protection={v.protection}>
      <th scope="row" data-label="VM">
        <a href={vmPath(v.hostname)} onClick={(e) => onLinkClick(e, vmPath(v.hostname))}>
          {v.hostname}
        </a>
        {v.alias && v.alias !== v.hostname ? <div class="muted">{v.alias}</div> : null}
      </th>
      <td data-label="Node">{v.node ?? '—'}</td>
      <td data-label="Status">
        {v.status}
        {v.libvirt ? <span class="muted"> (libvirt)</span> : null}
      </td>
      <td data-label="Disks">
        {v.disks.length === 0
          ? 'none'
          : v.disks.map((d, i) => (
              <span key={d.disk_id} data-disk={d.disk_id}>
                {i > 0 ? ', ' : ''}
                {formatMb(d.size)}
                <DiskFlags target={d.target} detached={d.detached} unmapped={d.unmapped} />
              </span>
            ))}
      </td>
      <td class="num" data-label="Snapshots">
        {v.snapshots}
        {v.snapshots_lost > 0 ? <span class="error-text"> ({v.snapshots_lost} lost)</span> : null}
      </td>
      <td class="num" data-label="Size">
        {formatBytes(v.snapshots_size)}
      </td>
      <td data-label="Last success">
        {v.definitions.length === 0 ? (
          <span class="muted">—</span>
        ) : (
          v.definitions.map((d) => (
            <div key={`${d.disk_id}/${d.name}`}>
              {d.name} <span class="muted">(disk {d.disk_id})</span>:{' '}
              {d.last_success ? (
                <time dateTime={d.last_success} title={formatUtc(d.last_success)}>
                  {formatAge(d.last_success, now)}
                </time>
              ) : (
                'never'
              )}
              {d.state === 'paused' ? <span class="muted"> (paused)</span> : null}
            </div>
          ))
        )}
      </td>
      <td data-label="Protection">
        <Badge kind={p.kind}>{p.text}</Badge>
      </td>
    </tr>
  );
}

function Vms({ vms, count, query, onQuery, now }: { vms: VmSummary[]; count: number; query: VmQuery; onQuery(q: VmQuery): void; now: number }) {
  const pages = Math.max(1, Math.ceil(count / VM_PAGE));
  const current = Math.min(Math.floor(query.offset / VM_PAGE), pages - 1);
  const go = (page: number) => onQuery({ ...query, offset: page * VM_PAGE });
  return (
    <section aria-labelledby="vms-title">
      <h2 id="vms-title">Virtual machines</h2>
      <div class="toolbar">
        <label class="check">
          <input type="checkbox" checked={query.attention} onChange={(e) => onQuery({ offset: 0, attention: e.currentTarget.checked })} /> Only VMs needing attention (not on schedule or
          with lost snapshots)
        </label>
      </div>
      {vms.length === 0 ? (
        <p>No VMs to show.</p>
      ) : (
        <div class="scroll" tabIndex={0} role="region" aria-labelledby="vms-title">
          <table class="grid cards" aria-labelledby="vms-title">
            <thead>
              <tr>
                {['VM', 'Node', 'Status', 'Disks', 'Snapshots', 'Size', 'Last success per definition', 'Protection'].map((n) => (
                  <th key={n} scope="col" class={n === 'Snapshots' || n === 'Size' ? 'num' : undefined}>
                    {n}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {vms.map((v) => (
                <VmRow key={v.hostname} v={v} now={now} />
              ))}
            </tbody>
          </table>
        </div>
      )}
      {pages > 1 ? (
        <nav class="pager" aria-label="VM pages">
          <button type="button" disabled={current === 0} onClick={() => go(current - 1)}>
            Previous page
          </button>
          <span data-testid="vm-range">
            VMs {current * VM_PAGE + 1}–{current * VM_PAGE + vms.length} of {count}
          </span>
          <button type="button" disabled={current >= pages - 1} onClick={() => go(current + 1)}>
            Next page
          </button>
        </nav>
      ) : null}
    </section>
  );
}

function Nodes({ data, now }: { data: NodesOverview; now: number }) {
  const floor = data.min_free_percent;
  // Loaded after the first answer is on screen: it reads every snapshot row's day and size.
  const charts = useLoad(loadCharts, 'charts');
  return (
    <section aria-labelledby="nodes-title" data-charts={charts.data ? 'ready' : undefined}>
      <h2 id="nodes-title">Nodes</h2>
      <p class="hint">{floor > 0 ? `New snapshots are refused on a storage with less than ${floor} % free (the mark on each bar).` : 'No free-space floor is set.'}</p>
      <div class="node-list">
        {data.nodes.map((n) => (
          <article key={n.hostname} id={`node-${n.hostname}`} class="panel node" aria-labelledby={`node-title-${n.hostname}`} data-node={n.hostname}>
            <h3 id={`node-title-${n.hostname}`}>
              {n.hostname} <Badge kind={n.status === 2 ? 'ok' : n.status === 1 ? 'warn' : 'bad'}>{n.status_display}</Badge>
            </h3>
            <p class="muted">
              last heartbeat: {n.last_heartbeat ? <time dateTime={n.last_heartbeat}>{formatAge(n.last_heartbeat, now)}</time> : 'never'}
            </p>
            {n.storages.map((s) => (
              <div key={s.name} id={storageAnchor(n.hostname, s.name)} class="storage" data-storage={s.name}>
                <div>
                  <strong>{s.name}</strong> <span class="muted">({s.driver})</span>{' '}
                  {s.size !== null && s.size_free !== null ? (
                    <span>
                      {formatBytes(s.size_free)} free of {formatBytes(s.size)}
                    </span>
                  ) : null}
                  {s.below_floor ? <Badge kind="bad">below the floor</Badge> : null}
                </div>
                <StorageBar size={s.size} free={s.size_free} floor={floor} label={`Storage ${s.name} on ${n.hostname}`} />
                <BytesChart series={charts.data?.get(storageAnchor(n.hostname, s.name)) ?? []} label={`Snapshot bytes on ${s.name} (${n.hostname})`} />
              </div>
            ))}
          </article>
        ))}
      </div>
    </section>
  );
}

export function Overview() {
  const now = useNow();
  const [query, setQuery] = useState<VmQuery>({ offset: 0, attention: false });
  // Paging or filtering reloads in place: the panel and table stay until the new answer replaces them.
  const q = useRef(query);
  const { data, error, loading, reload } = useLoad(() => loadOverview(q.current), 'overview');
  const onQuery = (next: VmQuery): void => {
    q.current = next;
    setQuery(next);
    reload();
  };
  return (
    <main id="main" data-ready={data && !loading ? 'overview' : undefined} aria-busy={loading ? 'true' : undefined}>
      <h1>Overview</h1>
      <ErrorText error={error} />
      {!data && loading ? <Loading what="the overview" /> : null}
      {data ? (
        <>
          <Problems list={data.problems} />
          <Vms vms={data.vms} count={data.vm_count} query={query} onQuery={onQuery} now={now} />
          <Nodes data={data.nodes} now={now} />
        </>
      ) : null}
    </main>
  );
}
