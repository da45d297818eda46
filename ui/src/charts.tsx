/**
 * The pictures, in plain SVG (a chart library would weigh more than the whole app for two small
 * charts): a storage usage bar with the free-space floor marked, and bytes over days as an area.
 */
import { formatBytes } from './format.js';

/** Used share of a storage as a bar; the floor is a mark where free space reaches it. */
export function StorageBar({ size, free, floor, label }: { size: number | null; free: number | null; floor: number; label: string }) {
  if (size === null || free === null || size <= 0) return <span class="muted">size unknown</span>;
  const usedPct = Math.min(100, Math.max(0, ((size - free) / size) * 100));
  const freePct = 100 - usedPct;
  const low = floor > 0 && freePct < floor;
  const text = `${label}: ${formatBytes(size - free)} used of ${formatBytes(size)}, ${formatBytes(free)} free (${freePct.toFixed(1)} %)${floor > 0 ? `; floor ${floor} % free` : ''}`;
  return (
    <div class={`bar${low ? ' bar-low' : ''}`} role="img" aria-label={text} title={text} data-testid="storage-bar" data-low={low ? 'true' : 'false'}>
      <div class="bar-used" style={{ width: `${usedPct}%` }} />
      {floor > 0 ? <div class="bar-floor" style={{ left: `${100 - floor}%` }} data-testid="floor-mark" /> : null}
    </div>
  );
}

/** An area chart of bytes per day (oldest first), with the newest value and the day range written out. */
export function BytesChart({ series, label }: { series: readonly { day: string; bytes: number }[]; label: string }) {
  const w = 240;
  const h = 48;
  if (series.length === 0) return null;
  const max = Math.max(1, ...series.map((p) => p.bytes));
  const x = (i: number): number => (series.length === 1 ? w : (i / (series.length - 1)) * w);
  const y = (b: number): number => h - (b / max) * (h - 2);
  const line = series.map((p, i) => `${i === 0 ? 'M' : 'L'}${x(i).toFixed(1)},${y(p.bytes).toFixed(1)}`).join('');
  const last = series[series.length - 1]!;
  const text = `${label}: ${formatBytes(series[0]!.bytes)} on ${series[0]!.day}, ${formatBytes(last.bytes)} on ${last.day}`;
  return (
    <figure class="chart">
      <svg viewBox={`0 0 ${w} ${h}`} width={w} height={h} role="img" aria-label={text} data-testid="bytes-chart">
        <path d={`${line}L${w},${h}L0,${h}Z`} class="chart-area" />
        <path d={line} class="chart-line" fill="none" />
      </svg>
      <figcaption class="muted">
        snapshot bytes, {series[0]!.day} – {last.day}: now {formatBytes(last.bytes)}
      </figcaption>
    </figure>
  );
}
