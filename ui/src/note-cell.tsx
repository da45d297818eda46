/**
 * A note in a table cell with an Edit button that turns it into a one-line form: Save, Cancel, and
 * Escape cancels. Focus moves into the field when editing starts and back to Edit when it is
 * cancelled. `save` runs the page's action (its outcome is the page's one notice); a refusal before
 * the server accepted is also shown next to the field, which stays open to be corrected.
 *
 * @example
 *   <NoteCell note={s.note} what={`${s.name} on disk ${s.disk_id}`} id={`note-${s.id}`}
 *     save={(note) => act(`Note of ${s.name}`, 'PUT', path, { disk_id: s.disk_id, note }, { syncText: 'saved' })} />
 */
import { useEffect, useRef, useState } from 'preact/hooks';

export function NoteCell({ note, what, id, save }: { note: string; what: string; id: string; save: (note: string) => Promise<unknown> }) {
  const [editing, setEditing] = useState(false);
  const [value, setValue] = useState(note);
  const [error, setError] = useState<string | null>(null);
  const input = useRef<HTMLInputElement>(null);
  const edit = useRef<HTMLButtonElement>(null);
  // Where focus goes after the next render: into the field, or back to Edit after a cancel.
  const focusNext = useRef<'input' | 'edit' | null>(null);
  useEffect(() => {
    if (focusNext.current === 'input') input.current?.focus();
    if (focusNext.current === 'edit') edit.current?.focus();
    focusNext.current = null;
  }, [editing]);
  const cancel = (): void => {
    focusNext.current = 'edit';
    setEditing(false);
  };
  if (!editing) {
    return (
      <>
        <span class="note">{note}</span>{' '}
        <button
          ref={edit}
          type="button"
          class="link"
          aria-label={`Edit note of ${what}`}
          onClick={() => {
            setValue(note);
            setError(null);
            focusNext.current = 'input';
            setEditing(true);
          }}
        >
          Edit
        </button>
      </>
    );
  }
  return (
    <form
      class="inline"
      onSubmit={async (e) => {
        e.preventDefault();
        try {
          await save(value);
          setEditing(false);
        } catch (err) {
          setError((err as Error).message);
        }
      }}
    >
      <label class="sr-only" for={id}>
        Note for {what}
      </label>
      <input
        ref={input}
        id={id}
        name="note"
        maxLength={128}
        value={value}
        onInput={(e) => setValue(e.currentTarget.value)}
        onKeyDown={(e) => {
          if (e.key === 'Escape') {
            e.preventDefault();
            cancel();
          }
        }}
        aria-invalid={error ? 'true' : undefined}
      />
      <button type="submit">Save</button>
      <button type="button" onClick={cancel}>
        Cancel
      </button>
      {error ? (
        <span class="error" role="alert">
          {error}
        </span>
      ) : null}
    </form>
  );
}
