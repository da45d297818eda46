import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatAutoSnapshotName, formatDanubeTime } from '../../src/domain/time.js';

describe('formatDanubeTime (spec 5.1)', () => {
  it('writes UTC with Z and no fraction when it is zero', () => {
    expect(formatDanubeTime(new Date('2017-05-04T10:11:12Z'))).toBe('2017-05-04T10:11:12Z');
    expect(formatDanubeTime(new Date('2017-05-04T12:11:12+02:00'))).toBe('2017-05-04T10:11:12Z');
    expect(formatDanubeTime(new Date(0))).toBe('1970-01-01T00:00:00Z');
  });

  it('writes six fractional digits when the fraction is non-zero', () => {
    expect(formatDanubeTime(new Date('2017-05-04T10:11:12.123Z'))).toBe('2017-05-04T10:11:12.123000Z');
    expect(formatDanubeTime(new Date('2017-05-04T10:11:12.001Z'))).toBe('2017-05-04T10:11:12.001000Z');
    expect(formatDanubeTime(new Date('2017-05-04T10:11:12.500Z'))).toBe('2017-05-04T10:11:12.500000Z');
  });

  it('pads the year to four digits', () => {
    const d = new Date(Date.UTC(2000, 0, 2, 3, 4, 5));
    d.setUTCFullYear(999);
    expect(formatDanubeTime(d)).toBe('0999-01-02T03:04:05Z');
  });

  it('refuses an invalid date', () => {
    expect(() => formatDanubeTime(new Date(Number.NaN))).toThrow(RangeError);
  });

  it('agrees with toISOString for years 1000-9999 (property)', () => {
    fc.assert(
      fc.property(fc.date({ min: new Date('1000-01-01T00:00:00Z'), max: new Date('9999-12-31T23:59:59.999Z'), noInvalidDate: true }), (d) => {
        const iso = d.toISOString(); // 2017-05-04T10:11:12.123Z
        const expected = iso.endsWith('.000Z') ? iso.replace('.000Z', 'Z') : iso.replace('Z', '000Z');
        expect(formatDanubeTime(d)).toBe(expected);
      }),
    );
  });
});

describe('formatAutoSnapshotName (spec 8.1)', () => {
  it('appends the UTC time as YYYYmmdd_HHMMSS', () => {
    expect(formatAutoSnapshotName('daily', new Date('2026-03-29T01:00:00Z'))).toBe('daily-20260329_010000');
    expect(formatAutoSnapshotName('hourly', new Date('2026-12-31T23:59:59.999Z'))).toBe('hourly-20261231_235959');
    expect(formatAutoSnapshotName('x', new Date('2026-07-04T05:06:07+02:00'))).toBe('x-20260704_030607');
  });

  it('fits a snapshot name: 8-character define plus 16 is 24', () => {
    expect(formatAutoSnapshotName('abcdefgh', new Date('2026-01-01T00:00:00Z'))).toHaveLength(24);
  });

  it('refuses an invalid date', () => {
    expect(() => formatAutoSnapshotName('daily', new Date(Number.NaN))).toThrow(RangeError);
  });
});
