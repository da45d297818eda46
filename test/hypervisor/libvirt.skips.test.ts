/**
 * The agent's copy of its node's skipped libvirt domains (cluster mode): the newest report wins,
 * an older one arriving late is ignored, a malformed one changes nothing, and /readyz's summary
 * counts by reason without naming a domain. The end-to-end path is in libvirt.cluster.test.ts.
 */
import { describe, expect, it } from 'vitest';
import type { Logger } from '../../src/app-context.js';
import { SKIPS_KIND, SkipBoard, skipSummary } from '../../src/hypervisor/libvirt.skips.js';
import { CONTROL_KINDS } from '../../src/transport/trust.service.js';

function recordingLog(): { log: Logger; lines: Array<{ level: string; msg: string; obj: unknown }> } {
  const lines: Array<{ level: string; msg: string; obj: unknown }> = [];
  const at = (level: string) => (obj: unknown, msg?: string) => void lines.push({ level, msg: msg ?? '', obj });
  return { log: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }, lines };
}

const A = { uuid: 'a0000000-0000-0000-0000-000000000001', name: 'web01', reason: 'name is already the hostname of another VM' };
const B = { uuid: 'b0000000-0000-0000-0000-000000000002', name: 'db 1', reason: 'name is not a valid hostname' };

describe('libvirt skip reports on the agent', () => {
  it('is a control message, not a task', () => {
    expect(CONTROL_KINDS.has(SKIPS_KIND)).toBe(true);
  });

  it('has no summary until the first report, then counts by reason and names nothing', () => {
    const { log } = recordingLog();
    const board = new SkipBoard('n1', log);
    expect(board.summary()).toBeNull();
    board.receive({ at: '2026-12-06T10:00:00.000Z', skipped: [A, B] });
    const s = board.summary()!;
    expect(s.skipped_domains).toBe(2);
    expect(s.skipped).toContain('name is already the hostname of another VM (1)');
    expect(s.skipped).toContain('name is not a valid hostname (1)');
    expect(JSON.stringify(s)).not.toContain('web01');
    expect(JSON.stringify(s)).not.toContain(A.uuid);
    expect(skipSummary([])).toEqual({ skipped_domains: 0, skipped: '' });
  });

  it('keeps the newest report: an older one arriving late is ignored; a resolved conflict is logged once', () => {
    const { log, lines } = recordingLog();
    const board = new SkipBoard('n1', log);
    board.receive({ at: '2026-12-06T10:00:02.000Z', skipped: [A] });
    board.receive({ at: '2026-12-06T10:00:01.000Z', skipped: [A, B] });
    expect(board.summary()?.skipped_domains).toBe(1);
    board.receive({ at: '2026-12-06T10:00:03.000Z', skipped: [] });
    expect(board.summary()).toEqual({ skipped_domains: 0, skipped: '' });
    expect(lines.filter((l) => l.msg === 'libvirt domain skipped').map((l) => (l.obj as { domain: string }).domain)).toEqual(['web01']);
    expect(lines.filter((l) => l.msg === 'libvirt domain no longer skipped').map((l) => (l.obj as { uuid: string }).uuid)).toEqual([A.uuid]);
    // The same list again logs nothing more.
    board.receive({ at: '2026-12-06T10:00:04.000Z', skipped: [] });
    expect(lines.filter((l) => l.msg.startsWith('libvirt domain')).length).toBe(2);
  });

  it('ignores a malformed report', () => {
    const { log, lines } = recordingLog();
    const board = new SkipBoard('n1', log);
    board.receive({ at: '2026-12-06T10:00:00.000Z', skipped: [A] });
    board.receive({ skipped: 'nonsense' });
    board.receive(null);
    expect(board.summary()?.skipped_domains).toBe(1);
    expect(lines.filter((l) => l.msg === 'malformed libvirt skip report ignored')).toHaveLength(2);
  });
});
