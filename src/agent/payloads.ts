/**
 * What the server sends an agent and what the agent reports back. Everything an operation needs
 * travels in the payload: agents never read esnap's tables.
 */
import type { DiskRef } from '../storage/driver.js';
import type { PowerPayload } from '../hypervisor/libvirt.power.js';
import type { BackupPayload } from '../backups/backup.payloads.js';

export interface StorageDisk {
  readonly storage: string;
  readonly disk: DiskRef;
}

export type AgentPayload =
  /** One snapshot per item; with several items (disk_id "all") all are made or none. */
  | {
      readonly op: 'create';
      readonly items: readonly CreateItem[];
      /**
       * Freeze the guest's filesystems through its guest agent around the snapshots: its own
       * socket, or (ESNAP_HYPERVISOR=libvirt) libvirt's agent calls on the domain of that uuid.
       */
      readonly freeze?: { readonly socket: string } | { readonly domain: string };
    }
  | { readonly op: 'destroy'; readonly storage: string; readonly disk: DiskRef; readonly ids: readonly string[] }
  | {
      readonly op: 'rollback';
      readonly storage: string;
      readonly disk: DiskRef;
      readonly id: string;
      /** Restore into this disk instead of rolling back `disk` itself. */
      readonly target?: DiskRef;
    }
  | {
      readonly op: 'list';
      readonly storage: string;
      readonly disks: readonly DiskRef[];
      /**
       * Snapshot ids to destroy before listing, by disk path: what a create that ended FAILURE may
       * have made on storage all the same (cut off by a crash, or finished after its deadline).
       */
      readonly discard?: Readonly<Record<string, readonly string[]>>;
    }
  | { readonly op: 'disk_create'; readonly storage: string; readonly disk: DiskRef }
  | { readonly op: 'disk_delete'; readonly items: readonly StorageDisk[] }
  | { readonly op: 'noop' }
  // ESNAP_HYPERVISOR=libvirt: start or stop a domain (src/hypervisor/libvirt.power.ts).
  | PowerPayload
  // Backups (src/backups/backup.agent.ts), on the backup node's queue.
  | BackupPayload;

export interface CreateItem {
  readonly storage: string;
  readonly disk: DiskRef;
  readonly id: string;
  readonly name: string;
}

export interface ListedSnapshot {
  readonly id: string;
  readonly created: string;
  readonly size: number | null;
  readonly name: string | null;
}

/** Per disk path, the snapshots found, or null when the disk itself is missing. */
export type ListData = Record<string, ListedSnapshot[] | null>;

/** `list` data: the snapshots, and per disk path why its image is damaged (null: whole). */
export interface ListResult {
  readonly snapshots: ListData;
  readonly damage: Record<string, string | null>;
}

/** Data of a create refused because an image is damaged: the disk paths and why. */
export interface DamageData {
  readonly damage: Record<string, string>;
}

export interface CreatedSnapshot {
  readonly size: number | null;
  readonly created: string;
}

/** `create` data: one entry per item, in the payload's order, and whether the guest was frozen. */
export interface CreateData {
  readonly items: readonly CreatedSnapshot[];
  readonly frozen: boolean;
  readonly freezeError?: string | null;
}
