/** Display helpers: sizes, times, ages. Pure. */
const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return 'unknown';
  let v = n;
  let i = 0;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v >= 100 ? 0 : 1)} ${UNITS[i]}`;
}

/** Disk sizes in the API are MB (MiB). */
export function formatMb(mb: number): string {
  return formatBytes(mb * 1024 * 1024);
}

/** `2024-01-02 03:04:05 UTC` */
export function formatUtc(iso: string | Date): string {
  const d = typeof iso === 'string' ? new Date(iso) : iso;
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

/** The same instant in a time zone, with its offset: `2024-01-02 04:04 GMT+01:00`. */
export function formatInZone(iso: string | Date, tz: string): string {
  const d = typeof iso === 'string' ? new Date(iso) : iso;
  try {
    const parts = new Intl.DateTimeFormat('en-CA', {
      timeZone: tz,
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      hourCycle: 'h23',
      timeZoneName: 'longOffset',
    }).formatToParts(d);
    const get = (t: string): string => parts.find((p) => p.type === t)?.value ?? '';
    return `${get('year')}-${get('month')}-${get('day')} ${get('hour')}:${get('minute')} ${get('timeZoneName')}`;
  } catch {
    return formatUtc(d);
  }
}

export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.round(m / 6) / 10;
  if (h < 48) return `${h} h`;
  return `${Math.round(h / 24)} days`;
}

export function formatAge(iso: string | null, now: number): string {
  if (!iso) return 'never';
  return `${formatDuration(now - new Date(iso).getTime())} ago`;
}

export const SNAPSHOT_STATUS: Readonly<Record<number, string>> = { 1: 'ok', 2: 'pending', 3: 'rollback', 4: 'lost' };
export const SNAPSHOT_TYPE: Readonly<Record<number, string>> = { 1: 'automatic', 2: 'manual' };
