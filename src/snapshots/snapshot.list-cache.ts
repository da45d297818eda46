/**
 * PostgreSQL's list answers kept in this process, each with the fingerprint of the rows it was
 * built from: the identity of every row version it read (`ctid` and `xmin` of the VM's row, its
 * snapshot rows with their definitions, its disk rows). Every request still runs its one
 * statement, which computes the fingerprint now and builds the JSON only when it differs from the
 * one the request passed in (src/snapshots/snapshot.list-json.ts). Any committed write to one of
 * those rows, from any process on the database, makes a new row version (a new `xmin`), a deleted
 * or added row changes the set, so the next request sees every committed write: there is nothing
 * to invalidate and no message to wait for.
 *
 * Bounded by bytes (least recently used first out); an answer larger than a quarter of the bound
 * is not kept.
 */
export interface CachedList {
  readonly fingerprint: string;
  readonly json: string;
}

export class ListCache {
  readonly #entries = new Map<string, CachedList>();
  #bytes = 0;
  hits = 0;
  misses = 0;

  constructor(readonly maxBytes = 64 * 1024 * 1024) {}

  get(key: string): CachedList | undefined {
    const e = this.#entries.get(key);
    if (e !== undefined) {
      // Most recently used last.
      this.#entries.delete(key);
      this.#entries.set(key, e);
    }
    return e;
  }

  set(key: string, entry: CachedList): void {
    this.delete(key);
    const size = entry.json.length + key.length;
    if (size > this.maxBytes / 4) return;
    this.#entries.set(key, entry);
    this.#bytes += size;
    for (const [k] of this.#entries) {
      if (this.#bytes <= this.maxBytes) break;
      this.delete(k);
    }
  }

  delete(key: string): void {
    const e = this.#entries.get(key);
    if (e === undefined) return;
    this.#entries.delete(key);
    this.#bytes -= e.json.length + key.length;
  }
}
