/**
 * Retention: which automatic snapshots of one definition to destroy now. One pure function, used
 * by the preview (`GET …/define/snapshot/<def>/preview/`) and by the real prune after each
 * successful automatic snapshot, so what the preview shows is what the prune does.
 *
 * Fail safe, by construction:
 * - the plan is a subset of its input, and only OK (status 1), unpinned snapshots are in it;
 * - no rule (retention 0 and no retention_days) destroys nothing;
 * - the newest OK snapshot of the definition is never destroyed, whatever the rules say;
 * - while the definition's last run failed, nothing is destroyed (a failing schedule must not eat
 *   its own history: with an age limit, every old snapshot would otherwise go one by one).
 *
 * Rules (Danube's count rule, plus esnap's optional age limit):
 * - `retention` N > 0: of the unpinned OK snapshots, all but the N newest (by id, Danube's "oldest
 *   = lowest id") are due. Pinned snapshots neither count nor go: pinning one never shortens the
 *   rolling history. Without pinned snapshots this is exactly Danube's rule (spec 8.4); with them
 *   it destroys a subset of what counting them would.
 * - `retention_days` D: an OK unpinned snapshot created more than D days before `now` is due too.
 * Pending, rollback and lost snapshots neither count nor go (spec 8.4).
 */

export const SNAPSHOT_OK = 1;
const DAY_MS = 86_400_000;

export interface RetentionSnapshot {
  /** Creation order: a lower id is an older snapshot (Danube). */
  readonly id: number;
  readonly name: string;
  /** 1 ok, 2 pending, 3 rollback, 4 lost. */
  readonly status: number;
  readonly pinned: boolean;
  /** ISO-8601 instant. */
  readonly created: string;
}

export interface RetentionPolicy {
  /** Keep this many newest OK snapshots; 0 keeps all (no count rule). */
  readonly retention: number;
  /** Also destroy snapshots older than this many days; null: no age rule. */
  readonly retentionDays: number | null;
  /** The definition's last run failed: nothing is destroyed until a run succeeds again. */
  readonly lastRunFailed: boolean;
}

export type RetentionReason = 'count' | 'age';

export interface RetentionPlan<T extends RetentionSnapshot> {
  /** What to destroy, oldest first. */
  readonly destroy: T[];
  /** Why each destroyed snapshot is due, by id. */
  readonly reasons: ReadonlyMap<number, readonly RetentionReason[]>;
  /** True when pruning is stopped because the last run failed. */
  readonly stopped: boolean;
}

/**
 * @example
 * planRetention(rows, { retention: 2, retentionDays: null, lastRunFailed: false }, new Date())
 * // with three OK unpinned rows ids 1,2,3 → destroy [row 1], reasons {1: ['count']}
 */
export function planRetention<T extends RetentionSnapshot>(
  snapshots: readonly T[],
  policy: RetentionPolicy,
  now: Date,
): RetentionPlan<T> {
  const none = (stopped: boolean): RetentionPlan<T> => ({ destroy: [], reasons: new Map(), stopped });
  if (policy.lastRunFailed) return none(true);
  const countRule = Number.isSafeInteger(policy.retention) && policy.retention > 0;
  const days = policy.retentionDays;
  const ageRule = days !== null && Number.isFinite(days) && days > 0;
  if (!countRule && !ageRule) return none(false);

  const ok = snapshots.filter((s) => s.status === SNAPSHOT_OK).sort((a, b) => a.id - b.id);
  if (ok.length === 0) return none(false);
  const newestId = ok[ok.length - 1]!.id;
  const candidates = ok.filter((s) => !s.pinned && s.id !== newestId);

  const reasons = new Map<number, RetentionReason[]>();
  const add = (s: T, r: RetentionReason): void => {
    const list = reasons.get(s.id);
    if (list) list.push(r);
    else reasons.set(s.id, [r]);
  };
  if (countRule) {
    const unpinned = ok.filter((s) => !s.pinned);
    const excess = unpinned.length - policy.retention;
    // The excess oldest unpinned; the newest OK is never among them since retention >= 1.
    for (const s of unpinned.slice(0, Math.max(0, excess))) add(s, 'count');
  }
  if (ageRule) {
    const cutoff = now.getTime() - days * DAY_MS;
    for (const s of candidates) {
      const created = Date.parse(s.created);
      // An unreadable time is never "old enough".
      if (Number.isFinite(created) && created < cutoff) add(s, 'age');
    }
  }
  const destroy = candidates.filter((s) => reasons.has(s.id));
  // Reasons only for what is destroyed (the newest and pinned ones may have collected some).
  const kept = new Map(destroy.map((s) => [s.id, reasons.get(s.id)!] as const));
  return { destroy, reasons: kept, stopped: false };
}
