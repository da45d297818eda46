/**
 * Skipped libvirt domains (a name or uuid that is already another esnap VM, a name that is not a
 * hostname) as `/readyz` shows them: counted by reason, never named (`/readyz` names no VM).
 *
 * The process that applies a node's inventory knows its skips (libvirt.rows.ts). In cluster mode
 * that is a server, so after applying an agent's inventory it hands the agent the node's skip list
 * as a `libvirt_skips` control message on the node's queue (src/nodes/node.heartbeat.ts); the
 * agent keeps the newest one (by the inventory's time) for its own `/readyz` and logs the changes.
 */
import type { Logger } from '../app-context.js';

export interface DomainConflict {
  readonly uuid: string;
  readonly name: string;
  readonly reason: string;
}

/** Kind of the control message (listed in src/transport/trust.service.ts CONTROL_KINDS). */
export const SKIPS_KIND = 'libvirt_skips';

/** Payload of a `libvirt_skips` control message: the node's skips after its inventory of `at`. */
export interface SkipReport {
  /** The applied inventory's `at` (the agent's clock): a newer report replaces an older one. */
  readonly at: string;
  readonly skipped: readonly DomainConflict[];
}

// A type, not an interface: /readyz's check details take it as a plain record.
export type SkipSummary = {
  readonly skipped_domains: number;
  readonly skipped: string;
};

/** Skips counted by reason, for a `libvirt` check of /readyz (which stays ok). */
export function skipSummary(conflicts: Iterable<DomainConflict>): SkipSummary {
  const byReason = new Map<string, number>();
  for (const c of conflicts) byReason.set(c.reason, (byReason.get(c.reason) ?? 0) + 1);
  const total = [...byReason.values()].reduce((a, b) => a + b, 0);
  return {
    skipped_domains: total,
    skipped: total === 0 ? '' : `${[...byReason].map(([r, n]) => `${r} (${n})`).join('; ')}: see 'libvirt domain skipped' in the log`,
  };
}

/**
 * Logs what changed between two skip lists of a node: each skip of a changed list (warning), each
 * domain no longer skipped (info).
 */
export function logSkipChanges(log: Logger, node: string, before: readonly DomainConflict[], after: readonly DomainConflict[]): void {
  if (JSON.stringify(before) === JSON.stringify(after)) return;
  for (const c of after) log.warn({ node, domain: c.name, uuid: c.uuid, reason: c.reason }, 'libvirt domain skipped');
  const still = new Set(after.map((c) => c.uuid));
  for (const c of before) if (!still.has(c.uuid)) log.info({ node, domain: c.name, uuid: c.uuid }, 'libvirt domain no longer skipped');
}

/**
 * The agent's side: the newest skip report of its node. `receive` ignores a report older than the
 * one it holds (messages may arrive out of order, from several servers).
 */
export class SkipBoard {
  #report: SkipReport | null = null;

  constructor(
    private readonly node: string,
    private readonly log: Logger,
  ) {}

  receive(payload: unknown): void {
    const r = payload as Partial<SkipReport> | null;
    if (!r || typeof r.at !== 'string' || !Array.isArray(r.skipped)) {
      this.log.warn({ node: this.node }, 'malformed libvirt skip report ignored');
      return;
    }
    const report: SkipReport = { at: r.at, skipped: r.skipped };
    if (this.#report !== null && report.at < this.#report.at) return;
    logSkipChanges(this.log, this.node, this.#report?.skipped ?? [], report.skipped);
    this.#report = report;
  }

  /** For /readyz: null until a report arrived. */
  summary(): SkipSummary | null {
    return this.#report === null ? null : skipSummary(this.#report.skipped);
  }
}
