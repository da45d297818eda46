/** Small shared pieces: error text, modal dialog, page header. */
import type { ComponentChildren } from 'preact';
import { useEffect, useRef } from 'preact/hooks';
import { formatMb } from './format.js';
import { Icon, type IconName } from './icons.js';
import type { Disk } from './types.js';

export function ErrorText({ error }: { error: string | null | undefined }) {
  if (!error) return null;
  return (
    <p class="error" role="alert">
      <Icon name="warn" /> {error}
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

/** A dialog form's footer: its submit button, then Cancel. */
export function DialogButtons({ label, disabled, onCancel, danger, reason }: { label: string; disabled?: boolean; onCancel: () => void; danger?: boolean; reason?: string }) {
  return (
    <div class="buttons">
      <button type="submit" disabled={disabled} class={danger ? 'danger' : undefined} title={reason}>
        {label}
      </button>
      <button type="button" onClick={onCancel}>
        Cancel
      </button>
    </div>
  );
}

/** The `<option>`s of a disk `<select>`: "disk 1 (10 GiB)", valued by disk_id. */
/** A disk choice per disk; with `snapshot`, a libvirt disk on no esnap storage is offered but disabled (it cannot be snapshotted). */
export function DiskOptions({ disks, snapshot }: { disks: readonly Disk[]; snapshot?: boolean }) {
  return (
    <>
      {disks.map((d) => (
        <option key={d.disk_id} value={d.disk_id} disabled={snapshot === true && !!d.reason}>
          disk {d.disk_id}
          {d.target ? ` ${d.target}` : ''} ({formatMb(d.size)}){d.reason ? ': not on an esnap storage' : ''}
          {d.detached ? ', detached' : ''}
        </option>
      ))}
    </>
  );
}

/** Plain column headers of a table's head row, in order. */
export function ColumnHeads({ names }: { names: readonly string[] }) {
  return (
    <>
      {names.map((n) => (
        <th key={n} scope="col">
          {n}
        </th>
      ))}
    </>
  );
}

/** The one row a table shows when it has no rows: a cell across all `cols` columns. */
export function EmptyRow({ cols, children }: { cols: number; children: ComponentChildren }) {
  return (
    <tr>
      <td colSpan={cols}>{children}</td>
    </tr>
  );
}

/** A status word with a symbol, so colour is never the only signal. */
export function Badge({ kind, children }: { kind: IconName; children: ComponentChildren }) {
  return (
    <span class={`badge badge-${kind}`}>
      <Icon name={kind} /> {children}
    </span>
  );
}

/**
 * A libvirt disk's cues: its target device, a disk that left its domain (kept with its snapshots
 * until deleted), and one on no esnap storage (never snapshotted), with the reason. `long` writes
 * the reason out; the short form keeps it in the tooltip.
 */
export function DiskFlags({ target, detached, unmapped, long }: { target?: string | undefined; detached?: boolean | undefined; unmapped?: string | null | undefined; long?: boolean }) {
  return (
    <>
      {target ? <span class="muted"> ({target})</span> : null}
      {detached ? (
        <span class="disk-flag" data-disk-flag="detached" title="Detached from its libvirt domain: kept with its snapshots until an admin deletes it">
          {' '}
          <Badge kind="warn">detached</Badge>
        </span>
      ) : null}
      {unmapped ? (
        <span class="disk-flag" data-disk-flag="unmapped" title={`Not on an esnap storage, never snapshotted: ${unmapped}`}>
          {' '}
          <Badge kind="info">not on an esnap storage</Badge>
          {long ? <span class="muted"> ({unmapped}; never snapshotted)</span> : null}
        </span>
      ) : null}
    </>
  );
}

/**
 * A table row's action button. Destructive ones (`danger`) are red, never primary. One that cannot
 * succeed now is disabled with the reason as the tooltip (on a wrapper: a disabled button gets no
 * hover), in its accessible name and in `data-reason`.
 */
export function RowAction({ label, aria, reason, danger, onClick }: { label: string; aria: string; reason: string | null; danger?: boolean; onClick: () => void }) {
  return (
    <span title={reason ?? undefined} class="action">
      <button type="button" class={danger ? 'danger' : undefined} disabled={reason !== null} aria-label={reason ? `${aria} (${reason})` : aria} data-reason={reason ?? undefined} onClick={onClick}>
        {label}
      </button>
    </span>
  );
}

/**
 * A titled section with one grid table that scrolls sideways inside itself, never the page (a
 * focusable region, for the keyboard): its column heads, `empty` as the one row when `rows` is
 * empty, else the rows; `after` follows the table inside the section (its dialogs).
 */
export function GridSection<T>(props: {
  id: string;
  title: string;
  testId: string;
  cols: readonly string[];
  rows: readonly T[];
  row: (item: T) => ComponentChildren;
  empty: ComponentChildren;
  after?: ComponentChildren;
}) {
  const titleId = `${props.id}-title`;
  return (
    <section aria-labelledby={titleId}>
      <h2 id={titleId}>{props.title}</h2>
      <div class="scroll" tabIndex={0} role="region" aria-labelledby={titleId}>
        <table class="grid" data-testid={props.testId}>
          <thead>
            <tr>
              <ColumnHeads names={props.cols} />
            </tr>
          </thead>
          <tbody>
            {props.rows.length === 0 ? <EmptyRow cols={props.cols.length}>{props.empty}</EmptyRow> : null}
            {props.rows.map(props.row)}
          </tbody>
        </table>
      </div>
      {props.after}
    </section>
  );
}
