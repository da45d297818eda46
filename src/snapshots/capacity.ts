/**
 * The storage free-space floor (ESNAP_MIN_FREE_PERCENT): a new snapshot is refused while a storage
 * it would be written to has less than that share of its size free. Manual creates and "run now"
 * answer 417 `Storage free space below the limit`; a scheduled slot is skipped with a log line, a
 * skip count and an alert (src/scheduler/capacity.skip.ts), and retention still prunes.
 *
 * Only snapshot creation is guarded. Deletes and retention free space; rollbacks and restores
 * into another disk rewrite a disk of a fixed size in place and are what an operator reaches for
 * when things go wrong, so refusing them on a full storage would help nobody.
 *
 * The numbers are the `size`/`size_free` columns of node_storage, kept current by the agents
 * (src/nodes/storage.usage.ts): the guard never asks storage itself, so an API request costs no
 * statfs or `zfs get`. A storage whose size is unknown (null: the agent could not read it) is never
 * blocked: the floor protects against a known shortage, it does not stop work on a guess.
 */
import type { NodeStorageRow } from '../db/schema.js';
import { API_ERRORS, ApiError } from '../domain/errors.js';

export const DEFAULT_MIN_FREE_PERCENT = 5;

export interface CapacitySettings {
  /** 0–100; 0 disables the floor. */
  readonly minFreePercent: number;
}

/** The 417 of a storage below the floor, with what the scheduler's skip reports. */
export class StorageFullError extends ApiError {
  constructor(
    readonly storage: string,
    readonly freePercent: number,
    readonly minFreePercent: number,
  ) {
    super(...API_ERRORS.storageFull);
  }
}

/**
 * Free share of a storage in percent, or null when its size is unknown.
 *
 * @example freePercent({ size: 1000, size_free: 40 }) === 4
 */
export function freePercent(s: Pick<NodeStorageRow, 'size' | 'size_free'>): number | null {
  if (s.size === null || s.size_free === null || !(s.size > 0)) return null;
  return (s.size_free / s.size) * 100;
}

/** Throws StorageFullError for the first of the storages below the floor (each checked once). */
export function assertCapacity(settings: CapacitySettings, storages: ReadonlyArray<Pick<NodeStorageRow, 'id' | 'name' | 'size' | 'size_free'>>): void {
  if (settings.minFreePercent <= 0) return;
  const seen = new Set<number>();
  for (const s of storages) {
    if (seen.has(s.id)) continue;
    seen.add(s.id);
    const free = freePercent(s);
    if (free !== null && free < settings.minFreePercent) throw new StorageFullError(s.name, free, settings.minFreePercent);
  }
}
