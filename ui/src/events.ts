/** A tiny typed event bus: task starts and ends, sign-out. Pages subscribe to reload their data. */
export interface TaskEvent {
  readonly id: string;
  /** VM the task acted on, when known (pages reload only for their VM). */
  readonly hostname: string | null;
}

export interface Events {
  'task-started': TaskEvent;
  'task-ended': TaskEvent;
  /** A synchronous write changed the VM's data (no task to wait for). */
  'data-changed': { readonly hostname: string | null };
  'signed-out': { readonly message: string | null };
  'tracker-changed': null;
}

type Listener<T> = (value: T) => void;
const listeners = new Map<keyof Events, Set<Listener<never>>>();

export function on<K extends keyof Events>(name: K, fn: Listener<Events[K]>): () => void {
  let set = listeners.get(name);
  if (!set) {
    set = new Set();
    listeners.set(name, set);
  }
  set.add(fn as Listener<never>);
  return () => set.delete(fn as Listener<never>);
}

export function emit<K extends keyof Events>(name: K, value: Events[K]): void {
  for (const fn of listeners.get(name) ?? []) (fn as Listener<Events[K]>)(value);
}
