/**
 * Filesystem freeze of a libvirt domain through libvirt's own guest-agent calls (`virsh
 * domfsfreeze` / `domfsthaw`): libvirt owns the domain's agent channel, so esnap opens no socket.
 * The rules are those of guest/freeze.ts (freezeAround): the snapshot always runs once; a domain
 * without an agent channel, or whose agent does not answer or refuses, gets `Filesystem freeze
 * failed (<libvirt's error>)`, i.e. `(filesystem freeze failed)` in the API; esnap thaws after the
 * snapshot, after a failed one, and at ESNAP_FREEZE_LIMIT_S while the snapshot still runs.
 *
 * Two freezes of one domain wait for each other within this agent process (the one process that
 * snapshots the node's domains); libvirt itself runs one agent job per domain at a time.
 *
 * Example:
 *   const r = await withLibvirtFreeze({ virsh, domain: vm.uuid, limitMs: 60_000, log }, () => createAll());
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../app-context.js';
import { freezeAround, GUEST_ANSWER_MS, THAW_ATTEMPTS, THAW_RETRY_DELAY_MS, type FreezeChannel, type FreezeOutcome, type FreezeResult } from '../guest/freeze.js';
import { LibvirtError, type Virsh } from './virsh.js';

export interface LibvirtFreezeParams {
  readonly virsh: Virsh;
  /** The domain's uuid (the VM's uuid). */
  readonly domain: string;
  /** Longest time the guest stays frozen (ESNAP_FREEZE_LIMIT_S). */
  readonly limitMs: number;
  readonly log?: Logger;
  /** `guest-fsfreeze-freeze` at most (never longer than the limit). Default 120 s. */
  readonly freezeMs?: number;
  /** One `domfsthaw`. Default 30 s. */
  readonly thawMs?: number;
}

/**
 * libvirt errors that say the freeze was never carried out: no agent channel, an agent that is not
 * connected or does not answer libvirt's guest-sync (libvirt gives up before sending the freeze),
 * an error answer of the agent (qemu-ga thaws by itself after a partial freeze), a domain that is
 * not running or not there, or another agent job holding the domain.
 */
const NOT_FROZEN = /not configured|not connected|not responding|unable to execute QEMU agent command|not running|[Dd]omain not found|failed to get domain|cannot acquire state change lock/;
/** Thaw errors a retry cannot change. */
const FINAL = /not configured|unable to execute QEMU agent command|not running|[Dd]omain not found|failed to get domain/;

const held = new Map<string, Promise<void>>();

export async function withLibvirtFreeze<T>(p: LibvirtFreezeParams, fn: () => Promise<T>): Promise<FreezeOutcome<T>> {
  const unlock = await lockDomain(p.domain);
  const where = { domain: p.domain };
  const freezeMs = p.freezeMs ?? 120_000;
  const thawMs = p.thawMs ?? 30_000;
  const channel: FreezeChannel = {
    where,
    async freeze(limitMs): Promise<FreezeResult> {
      try {
        const count = await p.virsh.fsFreeze(p.domain, GUEST_ANSWER_MS + Math.min(freezeMs, limitMs));
        // As on the socket path: nothing frozen is a failure that still thaws.
        if (count < 1) return { ok: false, error: String(count), mayBeFrozen: true };
        return { ok: true, count };
      } catch (err) {
        const msg = message(err);
        return { ok: false, error: msg, mayBeFrozen: !(err instanceof LibvirtError && NOT_FROZEN.test(msg)) };
      }
    },
    async thaw(frozenCount): Promise<string | null> {
      let last = '';
      for (let attempt = 1; attempt <= THAW_ATTEMPTS; attempt++) {
        if (attempt > 1) await sleep(THAW_RETRY_DELAY_MS);
        try {
          const thawed = await p.virsh.fsThaw(p.domain, GUEST_ANSWER_MS + thawMs);
          if (thawed < frozenCount) return `thawed ${thawed} of ${frozenCount} filesystems`;
          p.log?.info({ ...where, filesystems: thawed }, 'guest filesystems thawed');
          return null;
        } catch (err) {
          last = message(err);
          if (err instanceof LibvirtError && FINAL.test(last)) break;
          p.log?.warn({ ...where, attempt, error: last }, 'guest thaw failed, retrying');
        }
      }
      p.log?.error({ ...where, error: last }, 'guest thaw failed');
      return last;
    },
  };
  return freezeAround(channel, { limitMs: p.limitMs, ...(p.log ? { log: p.log } : {}) }, async () => unlock(), fn);
}

/** Waits for earlier freezes of the domain in this process; returns the release. */
async function lockDomain(domain: string): Promise<() => void> {
  let release!: () => void;
  const mine = new Promise<void>((r) => (release = r));
  const before = held.get(domain) ?? Promise.resolve();
  const chain = before.then(() => mine);
  held.set(domain, chain);
  await before;
  return () => {
    release();
    if (held.get(domain) === chain) held.delete(domain);
  };
}

function message(err: unknown): string {
  // virsh's own prefix says nothing to an API client; libvirt's text after it does.
  // virsh's own lines (`Unable to freeze filesystems`) neither; libvirt's reason is kept, on one line.
  const text = err instanceof Error ? err.message : String(err);
  const lines = text
    .replace(/^virsh [\w-]*: /, '')
    .split('\n')
    .map((l) => l.trim().replace(/^error: /, ''))
    .filter((l) => l !== '' && !/^Unable to (freeze|thaw) filesystems$/.test(l));
  return lines.join('; ') || text;
}
