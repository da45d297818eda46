/** The UI's pure rules: when a definition is stale, how API answers become messages, the stream's end, the preview's shape. */
import { describe, expect, it } from 'vitest';
import { periodMs, staleness } from '../../ui/src/stale.js';
import { errorMessage } from '../../ui/src/api.js';
import { parseStream } from '../../ui/src/tasks.js';
import { parsePreview } from '../../ui/src/preview.js';
import type { Definition, Snapshot } from '../../ui/src/types.js';

const NOW = Date.parse('2026-06-10T12:00:00Z');
const H = 3_600_000;

function def(over: Partial<Definition> = {}): Definition {
  return { hostname: 'web01', vm_uuid: 'u', name: 'daily', disk_id: 1, desc: '', active: true, schedule: '0 3 * * *', retention: 7, fsfreeze: false, tz: 'UTC', ...over };
}
function snap(createdMsAgo: number, over: Partial<Snapshot> = {}): Snapshot {
  return {
    hostname: 'web01', vm_uuid: 'u', define: 'daily', name: 'x', disk_id: 1, note: '', type: 1,
    created: new Date(NOW - createdMsAgo).toISOString(), status: 1, size: 0, id: 1, fsfreeze: false, pinned: false, ...over,
  };
}

describe('staleness', () => {
  it('uses the longest gap between the next runs as the period', () => {
    expect(periodMs('0 3 * * *', 'UTC', NOW)).toBe(24 * H);
    expect(periodMs('0 * * * *', 'UTC', NOW)).toBe(H);
    // Weekdays only: the weekend gap counts.
    expect(periodMs('0 3 * * 1-5', 'UTC', NOW)).toBe(72 * H);
    expect(periodMs('not a cron', 'UTC', NOW)).toBeNull();
  });

  it('is stale only after two periods without a success of that definition on its disk', () => {
    expect(staleness(def(), [snap(47 * H)], NOW)).toMatchObject({ stale: false, reason: 'on schedule' });
    expect(staleness(def(), [snap(49 * H)], NOW)).toMatchObject({ stale: true, reason: 'no success within two periods' });
    // Manual, failed, other-definition and other-disk snapshots are no success.
    for (const other of [{ type: 2 }, { status: 4 }, { define: 'weekly' }, { disk_id: 2 }]) {
      expect(staleness(def(), [snap(49 * H), snap(H, other)], NOW).stale).toBe(true);
    }
    // The API's last_success counts too.
    expect(staleness(def({ last_success: new Date(NOW - H).toISOString() }), [snap(49 * H)], NOW).stale).toBe(false);
  });

  it('flags an overdue next run and a definition that never succeeded but failed; not a paused one or a new one', () => {
    expect(staleness(def({ next_run: new Date(NOW - 25 * H).toISOString() }), [snap(H)], NOW)).toMatchObject({ stale: true });
    expect(staleness(def({ last_error: 'out of space' }), [], NOW)).toMatchObject({ stale: true, reason: 'never succeeded: out of space' });
    expect(staleness(def({ active: false }), [snap(100 * H)], NOW)).toMatchObject({ stale: false, reason: 'paused' });
    expect(staleness(def(), [], NOW)).toMatchObject({ stale: false, reason: 'no automatic snapshot yet' });
  });
});

describe('API messages', () => {
  it('shows the API’s own words for every answer shape', () => {
    expect(errorMessage({ detail: 'VM not found' }, 404)).toBe('VM not found');
    expect(errorMessage({ status: 'FAILURE', result: 'Task did not acquire lock', task_id: 'x' }, 400)).toBe('Task did not acquire lock');
    expect(errorMessage({ status: 'FAILURE', result: { name: ['Invalid value.'], non_field_errors: ['Invalid data'] }, task_id: 'x' }, 400)).toBe(
      'name: Invalid value.; Invalid data',
    );
    expect(errorMessage({ status: 'FAILURE', result: { returncode: 1, message: 'VM is not stopped', detail: 'Got bad return code (1).' }, task_id: 'x' }, 400)).toBe(
      'VM is not stopped',
    );
    expect(errorMessage({ detail: { username: ['This field is required.'] } }, 400)).toBe('username: This field is required.');
    expect(errorMessage('', 502)).toBe('The server answered 502 without a message.');
  });

  it('reads the end of an ES-STREAM body', () => {
    expect(parseStream('   200\n{"status":"SUCCESS","result":{"message":"ok"}}')).toEqual({ httpStatus: 200, body: { status: 'SUCCESS', result: { message: 'ok' } } });
    expect(parseStream('  400\n{"status":"FAILURE","result":"x"}')?.httpStatus).toBe(400);
    expect(parseStream('   ')).toBeNull();
  });

  it('reads the preview', () => {
    const p = parsePreview({
      next_runs: [{ utc: '2026-01-01T03:00:00Z', local: '2026-01-01T04:00:00+01:00' }],
      retention_delete: ['daily-1', 'daily-2'],
      retention_stopped: false,
    });
    expect(p).toEqual({ runs: [{ utc: '2026-01-01T03:00:00Z', local: '2026-01-01T04:00:00+01:00' }], prune: ['daily-1', 'daily-2'], tz: null, stopped: false });
    expect(parsePreview(null)).toEqual({ runs: null, prune: null, tz: null, stopped: false });
  });
});
