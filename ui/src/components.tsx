/** Small shared pieces: error text, modal dialog, page header. */
import type { ComponentChildren } from 'preact';
import { useEffect, useRef } from 'preact/hooks';

export function ErrorText({ error }: { error: string | null | undefined }) {
  if (!error) return null;
  return (
    <p class="error" role="alert">
      <span aria-hidden="true">⚠ </span>
      {error}
    </p>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p class="muted" role="status">
      Loading {what}…
    </p>
  );
}

let dialogSeq = 0;

/**
 * A modal `<dialog>`: focus moves into it and is trapped by the browser, Escape closes it, and
 * focus returns where it was.
 */
export function Dialog(props: { title: string; onClose: () => void; children: ComponentChildren; wide?: boolean }) {
  const ref = useRef<HTMLDialogElement>(null);
  const id = useRef(`dialog-title-${++dialogSeq}`);
  // The opener, read during the first render: by the time an effect runs, focus may already have
  // moved (autofocus inside the dialog), and then it would "return" into the dialog being removed.
  const opener = useRef(document.activeElement as HTMLElement | null);
  useEffect(() => {
    const d = ref.current;
    const before = opener.current;
    if (d && !d.open) d.showModal();
    return () => {
      if (d?.open) d.close();
      before?.focus?.();
    };
  }, []);
  return (
    <dialog
      ref={ref}
      class={props.wide ? 'wide' : ''}
      aria-labelledby={id.current}
      onCancel={(e) => {
        e.preventDefault();
        props.onClose();
      }}
    >
      <h2 id={id.current}>{props.title}</h2>
      {props.children}
    </dialog>
  );
}

/** A status word with a symbol, so colour is never the only signal. */
export function Badge({ kind, children }: { kind: 'ok' | 'warn' | 'bad' | 'busy' | 'info'; children: ComponentChildren }) {
  const symbol = { ok: '✓', warn: '!', bad: '✗', busy: '⟳', info: 'i' }[kind];
  return (
    <span class={`badge badge-${kind}`}>
      <span aria-hidden="true">{symbol} </span>
      {children}
    </span>
  );
}
