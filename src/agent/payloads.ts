/**
 * What the server sends an agent and what the agent reports back. Everything an operation needs
 * travels in the payload: agents never read esnap's tables.
 */
import type { DiskRef } from '../storage/driver.js';

export interface StorageDisk {
  readonly storage: string;
  readonly disk: DiskRef;
}

export type AgentPayload =
  | { readonly op: 'create'; readonly storage: string; readonly disk: DiskRef; readonly id: string; readonly name: string }
  | { readonly op: 'destroy'; readonly storage: string; readonly disk: DiskRef; readonly ids: readonly string[] }
  | {
      readonly op: 'rollback';
      readonly storage: string;
      readonly disk: DiskRef;
      readonly id: string;
      /** Restore into this disk instead of rolling back `disk` itself. */
      readonly target?: DiskRef;
    }
  | { readonly op: 'list'; readonly storage: string; readonly disks: readonly DiskRef[] }
  | { readonly op: 'disk_create'; readonly storage: string; readonly disk: DiskRef }
  | { readonly op: 'disk_delete'; readonly items: readonly StorageDisk[] }
  | { readonly op: 'noop' };

export interface ListedSnapshot {
  readonly id: string;
  readonly created: string;
  readonly size: number | null;
  readonly name: string | null;
}

/** `list` data: per disk path, the snapshots found, or null when the disk itself is missing. */
export type ListData = Record<string, ListedSnapshot[] | null>;

export interface CreateData {
  readonly size: number | null;
  readonly created: string;
}
