/** Overview: every VM the caller may see, with snapshot counts, sizes and schedule health; nodes. */
import { getResult, seg } from '../api.js';
import { Badge, ColumnHeads, ErrorText, Loading } from '../components.js';
import { formatAge, formatBytes, formatUtc } from '../format.js';
import { useLoad, useNow } from '../hooks.js';
import { onLinkClick, vmPath } from '../router.js';
import { staleness, type Staleness } from '../stale.js';
import type { Definition, NodeInfo, Snapshot, Vm } from '../types.js';

interface VmRow {
  vm: Vm;
  count: number;
  size: number;
  lastAuto: string | null;
  defs: { def: Definition; st: Staleness }[];
}

/** Runs `fn` over `items` with at most `limit` in flight (browsers queue beyond ~6 per server). */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

async function loadOverview(now: number): Promise<{ rows: VmRow[]; nodes: NodeInfo[] }> {
  const [vms, nodes, defs] = await Promise.all([
    getResult<Vm[]>('vm', { full: true }),
    getResult<NodeInfo[]>('node', { full: true }),
    getResult<Definition[]>('vm/define/snapshot', { full: true, extended: true }),
  ]);
  const snaps = await mapLimit(vms, 4, (vm) => getResult<Snapshot[]>(`vm/${seg(vm.hostname)}/snapshot`, { full: true }));
  const rows = vms.map((vm, i): VmRow => {
    const list = snaps[i] ?? [];
    let size = 0;
    let lastAuto: string | null = null;
    for (const s of list) {
      size += s.size ?? 0;
      if (s.type === 1 && s.status === 1 && (lastAuto === null || s.created > lastAuto)) lastAuto = s.created;
    }
    const mine = defs.filter((d) => d.hostname === vm.hostname);
    return { vm, count: list.length, size, lastAuto, defs: mine.map((def) => ({ def, st: staleness(def, list, now) })) };
  });
  return { rows, nodes };
}

function Health({ row, now }: { row: VmRow; now: number }) {
  const stale = row.defs.filter((d) => d.st.stale);
  const active = row.defs.filter((d) => d.def.active);
  return (
    <span>
      {row.lastAuto ? <time dateTime={row.lastAuto} title={formatUtc(row.lastAuto)}>{formatAge(row.lastAuto, now)}</time> : 'none'}{' '}
      {stale.length > 0 ? (
        <Badge kind="bad">
          stale: {stale.map((d) => `${d.def.name} (${d.st.reason})`).join(', ')}
        </Badge>
      ) : active.length > 0 ? (
        <Badge kind="ok">on schedule</Badge>
      ) : (
        <span class="muted">{row.defs.length > 0 ? '(all definitions paused)' : '(no definitions)'}</span>
      )}
    </span>
  );
}

function nodeKind(status: number): 'ok' | 'warn' | 'bad' {
  return status === 2 ? 'ok' : status === 1 ? 'warn' : 'bad';
}

export function Overview() {
  const now = useNow();
  const { data, error, loading } = useLoad(() => loadOverview(Date.now()), 'overview');
  return (
    <main id="main">
      <h1>Overview</h1>
      <ErrorText error={error} />
      {!data && loading ? <Loading what="VMs" /> : null}
      {data ? (
        <>
          <section aria-labelledby="vms-title">
            <h2 id="vms-title">Virtual machines</h2>
            {data.rows.length === 0 ? (
              <p>No VMs to show.</p>
            ) : (
              <table class="grid" aria-labelledby="vms-title">
                <thead>
                  <tr>
                    <th scope="col">Hostname</th>
                    <th scope="col">Node</th>
                    <th scope="col">Status</th>
                    <th scope="col" class="num">Snapshots</th>
                    <th scope="col" class="num">Snapshot size</th>
                    <th scope="col">Last automatic snapshot</th>
                  </tr>
                </thead>
                <tbody>
                  {data.rows.map((r) => (
                    <tr key={r.vm.uuid} class={r.defs.some((d) => d.st.stale) ? 'row-stale' : ''}>
                      <th scope="row">
                        <a href={vmPath(r.vm.hostname)} onClick={(e) => onLinkClick(e, vmPath(r.vm.hostname))}>
                          {r.vm.hostname}
                        </a>
                      </th>
                      <td>{r.vm.node ?? '—'}</td>
                      <td>{r.vm.status}</td>
                      <td class="num">{r.count}</td>
                      <td class="num">{formatBytes(r.size)}</td>
                      <td>
                        <Health row={r} now={now} />
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </section>
          <section aria-labelledby="nodes-title">
            <h2 id="nodes-title">Nodes</h2>
            <table class="grid" aria-labelledby="nodes-title">
              <thead>
                <tr>
                  <ColumnHeads names={['Node', 'Status', 'Last heartbeat']} />
                </tr>
              </thead>
              <tbody>
                {data.nodes.map((n) => (
                  <tr key={n.uuid}>
                    <th scope="row">{n.hostname}</th>
                    <td>
                      <Badge kind={nodeKind(n.status)}>{n.status_display}</Badge>
                    </td>
                    <td>{n.last_heartbeat ? <time dateTime={n.last_heartbeat}>{formatAge(n.last_heartbeat, now)}</time> : 'never'}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </section>
        </>
      ) : null}
    </main>
  );
}
