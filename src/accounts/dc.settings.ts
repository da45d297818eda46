/** The per-DC snapshot settings of spec 9 (`VMS_VM_SNAPSHOT_*`), stored as JSON on the DC row. */
import type { DcRow } from '../db/schema.js';

export interface DcSnapshotSettings {
  readonly VMS_VM_SNAPSHOT_ENABLED: boolean;
  readonly VMS_VM_SNAPSHOT_DEFINE_LIMIT: number | null;
  readonly VMS_VM_SNAPSHOT_LIMIT_AUTO: number | null;
  readonly VMS_VM_SNAPSHOT_LIMIT_MANUAL: number | null;
  readonly VMS_VM_SNAPSHOT_LIMIT_MANUAL_DEFAULT: number | null;
  readonly VMS_VM_SNAPSHOT_SIZE_LIMIT: number | null;
  readonly VMS_VM_SNAPSHOT_SIZE_LIMIT_DEFAULT: number | null;
  readonly VMS_VM_SNAPSHOT_SIZE_PERCENT_LIMIT: number | null;
  readonly VMS_VM_SNAPSHOT_SIZE_PERCENT_LIMIT_DEFAULT: number | null;
  readonly VMS_VM_SNAPSHOT_DC_SIZE_LIMIT: number | null;
}

export const DEFAULT_DC_SETTINGS: DcSnapshotSettings = Object.freeze({
  VMS_VM_SNAPSHOT_ENABLED: true,
  VMS_VM_SNAPSHOT_DEFINE_LIMIT: null,
  VMS_VM_SNAPSHOT_LIMIT_AUTO: null,
  VMS_VM_SNAPSHOT_LIMIT_MANUAL: null,
  VMS_VM_SNAPSHOT_LIMIT_MANUAL_DEFAULT: null,
  VMS_VM_SNAPSHOT_SIZE_LIMIT: null,
  VMS_VM_SNAPSHOT_SIZE_LIMIT_DEFAULT: null,
  VMS_VM_SNAPSHOT_SIZE_PERCENT_LIMIT: null,
  VMS_VM_SNAPSHOT_SIZE_PERCENT_LIMIT_DEFAULT: null,
  VMS_VM_SNAPSHOT_DC_SIZE_LIMIT: null,
});

export function dcSettings(dc: DcRow): DcSnapshotSettings {
  let stored: Record<string, unknown> = {};
  try {
    stored = JSON.parse(dc.settings) as Record<string, unknown>;
  } catch {
    stored = {};
  }
  return { ...DEFAULT_DC_SETTINGS, ...stored } as DcSnapshotSettings;
}
