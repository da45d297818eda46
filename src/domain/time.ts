/**
 * Danube's time formats. `created` and other timestamps are Python's `isoformat()` of a UTC
 * datetime with `+00:00` written as `Z` (spec 5.1): microseconds appear only when non-zero, and a
 * JavaScript date has milliseconds, so the fraction is the milliseconds followed by `000`.
 */

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

function checkDate(d: Date): void {
  if (!Number.isFinite(d.getTime())) throw new RangeError('Invalid date');
}

/**
 * @example formatDanubeTime(new Date('2017-05-04T10:11:12Z')) === '2017-05-04T10:11:12Z'
 * @example formatDanubeTime(new Date('2017-05-04T10:11:12.123Z')) === '2017-05-04T10:11:12.123000Z'
 */
export function formatDanubeTime(d: Date): string {
  checkDate(d);
  const ms = d.getUTCMilliseconds();
  const fraction = ms === 0 ? '' : `.${pad(ms, 3)}000`;
  return (
    `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}` +
    `T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}${fraction}Z`
  );
}

/**
 * The name of an automatic snapshot (spec 8.1): `<define>-YYYYmmdd_HHMMSS` in UTC.
 *
 * @example formatAutoSnapshotName('daily', new Date('2026-03-29T01:00:00Z')) === 'daily-20260329_010000'
 */
export function formatAutoSnapshotName(define: string, at: Date): string {
  checkDate(at);
  return (
    `${define}-${pad(at.getUTCFullYear(), 4)}${pad(at.getUTCMonth() + 1)}${pad(at.getUTCDate())}` +
    `_${pad(at.getUTCHours())}${pad(at.getUTCMinutes())}${pad(at.getUTCSeconds())}`
  );
}
