/**
 * What a page does with an action: say that it runs, and when the server has the final word, say
 * that word. Errors before the server accepted a task are thrown back to the form that asked, so
 * it can show them next to its fields; the end of an accepted task goes to the page's notice.
 */
import { ApiFailure } from './api.js';
import { emit } from './events.js';
import { runAction, type Outcome } from './tasks.js';

export interface Notice {
  readonly kind: 'ok' | 'bad' | 'busy';
  readonly text: string;
}

export type Act = (
  label: string,
  method: string,
  path: string,
  body: unknown,
  opts?: { onAccepted?: () => void; syncText?: string },
) => Promise<Outcome>;

export function makeAct(hostname: string | null, setNotice: (n: Notice) => void): Act {
  return async (label, method, path, body, opts = {}) => {
    let accepted = false;
    setNotice({ kind: 'busy', text: `${label}: sent, waiting for the server…` });
    try {
      const o = await runAction(method, path, body, label, hostname, () => {
        accepted = true;
        setNotice({ kind: 'busy', text: `${label}: task accepted, running…` });
        opts.onAccepted?.();
      });
      if (o.kind === 'sync') {
        setNotice({ kind: 'ok', text: `${label}: ${opts.syncText ?? 'done'}` });
        emit('data-changed', { hostname });
      }
      else setNotice({ kind: o.ok ? 'ok' : 'bad', text: `${label}: ${o.message}` });
      return o;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      setNotice({ kind: 'bad', text: `${label}: ${message}` });
      if (!accepted) throw err instanceof ApiFailure ? err : new ApiFailure(0, message, null);
      throw err;
    }
  };
}
