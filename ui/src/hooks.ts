/** Data loading for pages: one async loader, its error, reloading when a task ends. */
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { on } from './events.js';

export interface Loaded<T> {
  readonly data: T | null;
  readonly error: string | null;
  readonly loading: boolean;
  reload(): void;
}

/**
 * Runs `load` on mount, when `key` changes, on `reload()`, and when a task ends (for `hostname`
 * only, when given). A later load wins over an earlier one still in flight.
 */
export function useLoad<T>(load: () => Promise<T>, key: string, opts: { hostname?: string } = {}): Loaded<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const seq = useRef(0);
  const loader = useRef(load);
  loader.current = load;

  const reload = useCallback(() => {
    const mine = ++seq.current;
    setLoading(true);
    loader.current().then(
      (d) => {
        if (mine !== seq.current) return;
        setData(d);
        setError(null);
        setLoading(false);
      },
      (err: unknown) => {
        if (mine !== seq.current) return;
        setError(err instanceof Error ? err.message : String(err));
        setLoading(false);
      },
    );
  }, []);

  useEffect(() => {
    setData(null);
    reload();
  }, [key, reload]);

  useEffect(() => {
    const h = opts.hostname;
    const a = on('task-ended', (e) => {
      if (h === undefined || e.hostname === null || e.hostname === h) reload();
    });
    const b = on('task-started', (e) => {
      if (h === undefined || e.hostname === null || e.hostname === h) reload();
    });
    const c = on('data-changed', (e) => {
      if (h === undefined || e.hostname === null || e.hostname === h) reload();
    });
    return () => {
      a();
      b();
      c();
    };
  }, [opts.hostname, reload]);

  return { data, error, loading, reload };
}

/** Re-renders every `ms` (ages, elapsed times). */
export function useNow(ms = 30000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}

/**
 * A dialog's submit: runs `fn` once, closing the dialog as soon as the server has accepted the
 * task (`accepted`; its end is the page's notice) or when `fn` resolves; a refusal before that
 * stays in the dialog as `error`, and the dialog can be submitted again.
 *
 * @example
 *   const [error, busy, submit] = useSubmit(onClose);
 *   void submit((accepted) => act('Delete x', 'DELETE', path, body, { onAccepted: accepted }));
 */
export function useSubmit(onClose: () => void): [string | null, boolean, (fn: (accepted: () => void) => Promise<unknown>) => Promise<void>] {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (fn: (accepted: () => void) => Promise<unknown>): Promise<void> => {
    setBusy(true);
    setError(null);
    let closed = false;
    try {
      await fn(() => {
        closed = true;
        onClose();
      });
      if (!closed) onClose();
    } catch (err) {
      if (!closed) setError((err as Error).message);
    } finally {
      if (!closed) setBusy(false);
    }
  };
  return [error, busy, submit];
}
