/** The console's pure rules: task-log details as fields, one sync notice per action, the reasons an action is disabled. */
import { describe, expect, it } from 'vitest';
import { parseDetail } from '../../ui/src/tasklog.js';
import { noticeKind, syncNotice } from '../../ui/src/actions.js';
import type { Outcome } from '../../ui/src/tasks.js';

const task = (ok: boolean, message: string): Outcome => ({ kind: 'task', id: 't', ok, state: ok ? 'SUCCESS' : 'FAILURE', message, result: null });

describe('task-log details', () => {
  it('reads Danube’s key=value lists, quoted strings with commas included', () => {
    expect(parseDetail("snapname='s1', disk_id=1, fsfreeze=false, note='a, b'")).toEqual([
      ['snapname', 's1'],
      ['disk_id', '1'],
      ['fsfreeze', 'false'],
      ['note', 'a, b'],
    ]);
    expect(parseDetail("snapnames=['a', 'b'], disk_id=2")).toEqual([
      ['snapnames', "['a', 'b']"],
      ['disk_id', '2'],
    ]);
    expect(parseDetail('')).toEqual([]);
  });

  it('gives null for free text, which is then shown whole', () => {
    expect(parseDetail('Got bad return code (1)')).toBeNull();
    expect(parseDetail('disk full, sorry')).toBeNull();
  });
});

describe('notices', () => {
  it('a task that succeeded with a warning is amber', () => {
    expect(noticeKind(true, 'Snapshots successfully synced; WARNING: 1 snapshot(s) lost')).toBe('warn');
    expect(noticeKind(true, 'Snapshot successfully created')).toBe('ok');
    expect(noticeKind(false, 'Snapshot successfully created')).toBe('bad');
  });

  it('a sync of several disks is one notice naming what was lost or found where', () => {
    expect(syncNotice([{ disk: 1, outcome: task(true, 'Snapshots successfully synced') }, { disk: 2, outcome: task(true, 'Snapshots successfully synced') }])).toEqual({
      kind: 'ok',
      text: 'Sync with storage: snapshots match the storage',
    });
    expect(
      syncNotice([
        { disk: 1, outcome: task(true, 'Snapshots successfully synced; WARNING: 1 snapshot(s) lost') },
        { disk: 2, outcome: task(true, 'Snapshots successfully synced; WARNING: 2 snapshot(s) lost; WARNING: 1 snapshot(s) found') },
      ]),
    ).toEqual({ kind: 'warn', text: 'Sync with storage: 1 snapshot lost on disk 1; 2 snapshots lost on disk 2; 1 snapshot found on disk 2' });
    expect(syncNotice([{ disk: 1, outcome: new Error('VM not found') }, { disk: 2, outcome: task(false, 'Got bad return code (1)') }])).toEqual({
      kind: 'bad',
      text: 'Sync with storage failed: disk 1: VM not found; disk 2: Got bad return code (1)',
    });
  });
});
