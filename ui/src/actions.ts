/**
 * What a page does with an action: say that it runs, and when the server has the final word, say
 * that word, in one notice per action (the page shows it as a toast). Errors before the server
 * accepted a task are thrown back to the form that asked, so it can show them next to its fields;
 * the end of an accepted task goes to the notice. A success with a warning (a sync that lost
 * snapshots) is a warning, not a success.
 */
import { ApiFailure } from './api.js';
import { emit } from './events.js';
import { runAction, type Outcome } from './tasks.js';

export interface Notice {
  readonly kind: 'ok' | 'warn' | 'bad' | 'busy';
  readonly text: string;
}

export interface ActOptions {
  onAccepted?: () => void;
  syncText?: string;
  /** Part of a larger action that reports once for all its parts (act.notify). */
  quiet?: boolean;
}

export interface Act {
  (label: string, method: string, path: string, body: unknown, opts?: ActOptions): Promise<Outcome>;
  /** Replaces the page's notice (the one report of an action made of several requests). */
  notify(n: Notice): void;
}

/** Danube's task messages carry warnings as `; WARNING: …` (sync: lost or found snapshots). */
export function noticeKind(ok: boolean, message: string): Notice['kind'] {
  return !ok ? 'bad' : /WARNING/i.test(message) ? 'warn' : 'ok';
}

export function makeAct(hostname: string | null, setNotice: (n: Notice) => void): Act {
  const act = async (label: string, method: string, path: string, body: unknown, opts: ActOptions = {}): Promise<Outcome> => {
    const say = (n: Notice): void => {
      if (!opts.quiet) setNotice(n);
    };
    let accepted = false;
    say({ kind: 'busy', text: `${label}: sent, waiting for the server…` });
    try {
      const o = await runAction(method, path, body, label, hostname, () => {
        accepted = true;
        say({ kind: 'busy', text: `${label}: task accepted, running…` });
        opts.onAccepted?.();
      });
      if (o.kind === 'sync') {
        say({ kind: 'ok', text: `${label}: ${opts.syncText ?? 'done'}` });
        emit('data-changed', { hostname });
      } else say({ kind: noticeKind(o.ok, o.message), text: `${label}: ${o.message}` });
      return o;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      say({ kind: 'bad', text: `${label}: ${message}` });
      if (!accepted) throw err instanceof ApiFailure ? err : new ApiFailure(0, message, null);
      throw err;
    }
  };
  return Object.assign(act, { notify: setNotice });
}

/**
 * The one notice of a sync of several disks: how many snapshots were lost or found on which disk
 * (amber), failures (red), else green.
 */
export function syncNotice(results: readonly { disk: number; outcome: Outcome | Error }[]): Notice {
  const failed: string[] = [];
  const warnings: string[] = [];
  for (const r of results) {
    if (r.outcome instanceof Error) {
      failed.push(`disk ${r.disk}: ${r.outcome.message}`);
      continue;
    }
    if (r.outcome.kind === 'task' && !r.outcome.ok) {
      failed.push(`disk ${r.disk}: ${r.outcome.message}`);
      continue;
    }
    const msg = r.outcome.kind === 'task' ? r.outcome.message : '';
    for (const [, n, what] of msg.matchAll(/([0-9]+) snapshot\(s\) (lost|found)/g)) {
      warnings.push(`${n} snapshot${n === '1' ? '' : 's'} ${what} on disk ${r.disk}`);
    }
  }
  if (failed.length > 0) return { kind: 'bad', text: `Sync with storage failed: ${[...failed, ...warnings].join('; ')}` };
  if (warnings.length > 0) return { kind: 'warn', text: `Sync with storage: ${warnings.join('; ')}` };
  return { kind: 'ok', text: 'Sync with storage: snapshots match the storage' };
}
