/**
 * A VM's last days as a picture: one lane per disk and definition (manual snapshots in their own
 * lane, backups in lanes of their own), a dot per snapshot and a square per backup (green ok, red
 * lost or damaged, blue in progress) and a tick per failed (red) or skipped (amber) scheduled run,
 * so a gap shows. Plain SVG from GET /overview/vm/<vm>/timeline/.
 */
import { getResult, seg } from '../api.js';
import { ErrorText } from '../components.js';
import { formatUtc } from '../format.js';
import { useLoad } from '../hooks.js';

interface TimelineData {
  from: string;
  to: string;
  snapshots: { name: string; disk_id: number; define: string | null; type: number; status: number; created: string; size: number | null }[];
  backups?: { name: string; disk_id: number; define: string | null; status: number; created: string; size: number | null }[];
  /** `backup`: a backup definition's slot (drawn in its backup lane). */
  runs: { define: string | null; disk_id: number; slot: string; state: string; reason: string | null; backup?: boolean }[];
}

const BACKUP_CLASS: Record<number, string> = { 1: 'tl-ok', 2: 'tl-pending', 3: 'tl-pending', 4: 'tl-lost', 5: 'tl-lost' };
const BACKUP_WORD: Record<number, string> = { 1: 'ok', 2: 'pending', 3: 'restore', 4: 'lost', 5: 'damaged' };
/** Backup lanes are told apart from snapshot lanes by their key and label. */
const backupLane = (define: string | null): string => `backup ${define ?? ''}`.trim();

const STATUS_CLASS: Record<number, string> = { 1: 'tl-ok', 2: 'tl-pending', 3: 'tl-pending', 4: 'tl-lost' };
const STATUS_WORD: Record<number, string> = { 1: 'ok', 2: 'pending', 3: 'rollback', 4: 'lost' };

export function Timeline({ hostname }: { hostname: string }) {
  const { data, error } = useLoad(() => getResult<TimelineData>(`overview/vm/${seg(hostname)}/timeline`), `timeline-${hostname}`, { hostname });
  if (error) return <ErrorText error={error} />;
  if (!data) return null;
  const lanes = new Map<string, { disk: number; define: string | null }>();
  const laneKey = (disk: number, define: string | null): string => `${disk}\u0000${define ?? ''}`;
  for (const s of data.snapshots) lanes.set(laneKey(s.disk_id, s.define), { disk: s.disk_id, define: s.define });
  const runLane = (r: TimelineData['runs'][number]): string | null => (r.backup ? backupLane(r.define) : r.define);
  for (const r of data.runs) lanes.set(laneKey(r.disk_id, runLane(r)), { disk: r.disk_id, define: runLane(r) });
  const backups = data.backups ?? [];
  for (const b of backups) lanes.set(laneKey(b.disk_id, backupLane(b.define)), { disk: b.disk_id, define: backupLane(b.define) });
  const order = [...lanes.entries()].sort((a, b) => a[1].disk - b[1].disk || (a[1].define ?? '~').localeCompare(b[1].define ?? '~'));
  const from = Date.parse(data.from);
  const to = Date.parse(data.to);
  const labelW = 150;
  const plotW = 600;
  const laneH = 22;
  const h = Math.max(1, order.length) * laneH + 20;
  const x = (iso: string): number => labelW + ((Date.parse(iso) - from) / Math.max(1, to - from)) * plotW;
  const days = Math.round((to - from) / 86_400_000);
  const failed = data.runs.filter((r) => r.state === 'failed').length;
  const skipped = data.runs.filter((r) => r.state === 'skipped').length;
  const backupText = backups.length > 0 ? `, ${backups.length} backup${backups.length === 1 ? '' : 's'}` : '';
  const summary = `${data.snapshots.length} snapshots${backupText}, ${failed} failed and ${skipped} skipped scheduled runs in the last ${days} days`;
  return (
    <section id="timeline" aria-labelledby="timeline-title">
      <h2 id="timeline-title">Last {days} days</h2>
      {order.length === 0 ? (
        <p class="muted">No snapshots and no missed runs in the last {days} days.</p>
      ) : (
        <div class="timeline" tabIndex={0} role="region" aria-labelledby="timeline-title">
          <svg viewBox={`0 0 ${labelW + plotW + 10} ${h}`} width={labelW + plotW + 10} height={h} role="img" aria-label={summary} data-testid="timeline">
            {Array.from({ length: days + 1 }, (_, i) => {
              const t = new Date(from + i * 86_400_000).toISOString();
              return <line key={i} class="tl-axis" x1={x(t)} x2={x(t)} y1={0} y2={h - 16} />;
            })}
            {order.map(([key, lane], i) => {
              const y = i * laneH + laneH / 2;
              return (
                <g key={key} data-lane={`${lane.disk}/${lane.define ?? 'manual'}`}>
                  <text class="tl-label" x={4} y={y + 4}>
                    disk {lane.disk} · {lane.define ?? 'manual'}
                  </text>
                  <line class="tl-axis" x1={labelW} x2={labelW + plotW} y1={y} y2={y} />
                  {data.runs
                    .filter((r) => laneKey(r.disk_id, runLane(r)) === key)
                    .map((r) => (
                      <line key={r.slot} class={r.state === 'failed' ? 'tl-failed' : 'tl-skipped'} x1={x(r.slot)} x2={x(r.slot)} y1={y - 8} y2={y + 8} data-run={r.state}>
                        <title>
                          {r.state} run {formatUtc(r.slot)}
                          {r.reason ? `: ${r.reason}` : ''}
                        </title>
                      </line>
                    ))}
                  {data.snapshots
                    .filter((s) => laneKey(s.disk_id, s.define) === key)
                    .map((s) => (
                      <circle key={`${s.name}-${s.created}`} class={STATUS_CLASS[s.status] ?? 'tl-pending'} cx={x(s.created)} cy={y} r={4} data-status={STATUS_WORD[s.status] ?? s.status}>
                        <title>
                          {s.name} ({STATUS_WORD[s.status] ?? s.status}) {formatUtc(s.created)}
                        </title>
                      </circle>
                    ))}
                  {backups
                    .filter((b) => laneKey(b.disk_id, backupLane(b.define)) === key)
                    .map((b) => (
                      <rect key={`${b.name}-${b.created}`} class={BACKUP_CLASS[b.status] ?? 'tl-pending'} x={x(b.created) - 4} y={y - 4} width={8} height={8} data-backup-status={BACKUP_WORD[b.status] ?? b.status}>
                        <title>
                          backup {b.name} ({BACKUP_WORD[b.status] ?? b.status}) {formatUtc(b.created)}
                        </title>
                      </rect>
                    ))}
                </g>
              );
            })}
            <text class="tl-label" x={labelW} y={h - 4}>
              {data.from.slice(0, 10)}
            </text>
            <text class="tl-label" x={labelW + plotW} y={h - 4} text-anchor="end">
              {data.to.slice(0, 10)}
            </text>
          </svg>
        </div>
      )}
      <p class="legend">
        <span>{summary}.</span>
        <span>Dots: snapshots{backups.length > 0 ? ', squares: backups' : ''} (green ok, red lost{backups.length > 0 ? ' or damaged' : ''}, blue in progress).</span>
        <span>Ticks: scheduled runs that failed (red) or were skipped (amber).</span>
      </p>
    </section>
  );
}
