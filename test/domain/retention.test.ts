/**
 * The retention plan: its fail-safe invariants checked on generated inputs, and its rules on
 * examples (Danube's count rule, esnap's age rule, pinned snapshots, keep-newest, failed runs).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { planRetention, type RetentionPolicy, type RetentionSnapshot } from '../../src/domain/retention.js';

const NOW = new Date('2026-06-01T12:00:00Z');
const DAY = 86_400_000;

const snapshotsArb = fc
  .array(
    fc.record({
      status: fc.constantFrom(1, 1, 1, 2, 3, 4),
      pinned: fc.boolean(),
      ageDays: fc.double({ min: 0, max: 60, noNaN: true }),
    }),
    { maxLength: 40 },
  )
  .chain((rows) =>
    fc.shuffledSubarray(
      rows.map((r, i) => ({ id: i + 1, name: `s${i + 1}`, status: r.status, pinned: r.pinned, created: new Date(NOW.getTime() - r.ageDays * DAY).toISOString() })),
      { minLength: rows.length, maxLength: rows.length },
    ),
  );

const policyArb = fc.record({
  retention: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 10 })),
  retentionDays: fc.oneof(fc.constant(null), fc.integer({ min: 1, max: 30 })),
  lastRunFailed: fc.boolean(),
});

describe('planRetention: invariants', () => {
  it('destroys a subset of its input: only OK, unpinned snapshots, never the newest OK one', () => {
    fc.assert(
      fc.property(snapshotsArb, policyArb, (snaps, policy) => {
        const plan = planRetention(snaps, policy, NOW);
        const newestOk = Math.max(-1, ...snaps.filter((s) => s.status === 1).map((s) => s.id));
        for (const d of plan.destroy) {
          expect(snaps).toContain(d);
          expect(d.status).toBe(1);
          expect(d.pinned).toBe(false);
          expect(d.id).not.toBe(newestOk);
        }
        expect(new Set(plan.destroy).size).toBe(plan.destroy.length);
        expect([...plan.reasons.keys()].sort((x, y) => x - y)).toEqual(plan.destroy.map((d) => d.id).sort((x, y) => x - y));
      }),
      { numRuns: 500 },
    );
  });

  it('destroys nothing while the last run failed, or when no rule is set', () => {
    fc.assert(
      fc.property(snapshotsArb, policyArb, (snaps, policy) => {
        expect(planRetention(snaps, { ...policy, lastRunFailed: true }, NOW).destroy).toEqual([]);
        expect(planRetention(snaps, { retention: 0, retentionDays: null, lastRunFailed: false }, NOW).destroy).toEqual([]);
      }),
      { numRuns: 300 },
    );
  });

  it('a snapshot is destroyed only when a rule names it: the count rule keeps the newest N unpinned OK ones', () => {
    fc.assert(
      fc.property(snapshotsArb, fc.integer({ min: 1, max: 10 }), (snaps, retention) => {
        const plan = planRetention(snaps, { retention, retentionDays: null, lastRunFailed: false }, NOW);
        const unpinnedOk = snaps.filter((s) => s.status === 1 && !s.pinned).sort((a, b) => a.id - b.id);
        expect(plan.destroy.map((d) => d.id)).toEqual(unpinnedOk.slice(0, Math.max(0, unpinnedOk.length - retention)).map((d) => d.id));
        // Whatever is kept among the unpinned OK ones is the newest `retention` of them.
        const kept = unpinnedOk.filter((s) => !plan.destroy.includes(s));
        expect(kept.length).toBe(Math.min(retention, unpinnedOk.length));
      }),
      { numRuns: 300 },
    );
  });

  it('adding a rule never saves a snapshot another rule destroys, and pinning only ever saves', () => {
    fc.assert(
      fc.property(snapshotsArb, policyArb, fc.nat(), (snaps, policy, pick) => {
        const p: RetentionPolicy = { ...policy, lastRunFailed: false };
        const both = new Set(planRetention(snaps, p, NOW).destroy.map((d) => d.id));
        for (const d of planRetention(snaps, { ...p, retentionDays: null }, NOW).destroy) expect(both.has(d.id)).toBe(true);
        for (const d of planRetention(snaps, { ...p, retention: 0 }, NOW).destroy) expect(both.has(d.id)).toBe(true);
        if (snaps.length === 0) return;
        const target = snaps[pick % snaps.length]!;
        const pinnedOne = snaps.map((s) => (s === target ? { ...s, pinned: true } : s));
        const after = new Set(planRetention(pinnedOne, p, NOW).destroy.map((d) => d.id));
        for (const id of after) expect(both.has(id)).toBe(true);
        expect(after.has(target.id)).toBe(false);
      }),
      { numRuns: 300 },
    );
  });
});

describe('planRetention: rules', () => {
  const at = (days: number) => new Date(NOW.getTime() - days * DAY).toISOString();
  const snap = (id: number, o: Partial<RetentionSnapshot> = {}): RetentionSnapshot => ({ id, name: `s${id}`, status: 1, pinned: false, created: at(10 - id), ...o });
  const names = (xs: readonly RetentionSnapshot[]) => xs.map((x) => x.name);
  const none = { retentionDays: null, lastRunFailed: false };

  it("is Danube's count rule without pinned snapshots: the lowest ids beyond retention go", () => {
    const snaps = [snap(3), snap(1), snap(2), snap(4)];
    expect(names(planRetention(snaps, { retention: 2, ...none }, NOW).destroy)).toEqual(['s1', 's2']);
    expect(names(planRetention(snaps, { retention: 4, ...none }, NOW).destroy)).toEqual([]);
    expect(names(planRetention(snaps, { retention: 0, ...none }, NOW).destroy)).toEqual([]);
  });

  it('does not count pending, rollback or lost snapshots, nor destroy them', () => {
    const snaps = [snap(1, { status: 4 }), snap(2), snap(3, { status: 2 }), snap(4, { status: 3 }), snap(5)];
    expect(names(planRetention(snaps, { retention: 1, ...none }, NOW).destroy)).toEqual(['s2']);
  });

  it('never destroys pinned snapshots, which do not count either', () => {
    const snaps = [snap(1), snap(2, { pinned: true }), snap(3), snap(4)];
    const plan = planRetention(snaps, { retention: 2, ...none }, NOW);
    expect(names(plan.destroy)).toEqual(['s1']);
    expect(plan.reasons.get(1)).toEqual(['count']);
  });

  it('adds the age rule, but keeps the newest OK snapshot however old', () => {
    const snaps = [snap(1, { created: at(40) }), snap(2, { created: at(31) }), snap(3, { created: at(29) })];
    expect(names(planRetention(snaps, { retention: 0, retentionDays: 30, lastRunFailed: false }, NOW).destroy)).toEqual(['s1', 's2']);
    const old = [snap(1, { created: at(40) }), snap(2, { created: at(35) })];
    expect(names(planRetention(old, { retention: 0, retentionDays: 30, lastRunFailed: false }, NOW).destroy)).toEqual(['s1']);
    const plan = planRetention([...snaps, snap(4)], { retention: 3, retentionDays: 30, lastRunFailed: false }, NOW);
    expect(names(plan.destroy)).toEqual(['s1', 's2']);
    expect(plan.reasons.get(1)).toEqual(['count', 'age']);
    expect(plan.reasons.get(2)).toEqual(['age']);
  });

  it('keeps the newest OK one when the only newer snapshot is still pending', () => {
    const snaps = [snap(1), snap(2, { status: 2 })];
    expect(names(planRetention(snaps, { retention: 0, retentionDays: 1, lastRunFailed: false }, NOW).destroy)).toEqual([]);
  });

  it('stops while the last run failed, and says so', () => {
    const plan = planRetention([snap(1), snap(2), snap(3)], { retention: 1, retentionDays: null, lastRunFailed: true }, NOW);
    expect(plan).toMatchObject({ destroy: [], stopped: true });
  });
});
