/**
 * The per-DC backup settings (Danube's `VMS_VM_BACKUP_*`, `VMS_STORAGE_DEFAULT`), read from the
 * same JSON on the DC row as the snapshot settings, with Danube's defaults (esnap's default
 * storage is named `default`, Danube's `zones`).
 */
import type { DcRow } from '../db/schema.js';

export interface DcBackupSettings {
  readonly VMS_VM_BACKUP_ENABLED: boolean;
  readonly VMS_VM_BACKUP_DEFINE_LIMIT: number | null;
  readonly VMS_VM_BACKUP_LIMIT: number | null;
  readonly VMS_VM_BACKUP_DC_SIZE_LIMIT: number | null;
  readonly VMS_VM_BACKUP_COMPRESSION_DEFAULT: number;
  readonly VMS_STORAGE_DEFAULT: string;
}

const DEFAULTS: DcBackupSettings = Object.freeze({
  VMS_VM_BACKUP_ENABLED: true,
  VMS_VM_BACKUP_DEFINE_LIMIT: null,
  VMS_VM_BACKUP_LIMIT: null,
  VMS_VM_BACKUP_DC_SIZE_LIMIT: null,
  VMS_VM_BACKUP_COMPRESSION_DEFAULT: 0,
  VMS_STORAGE_DEFAULT: 'default',
});

export function backupSettings(dc: DcRow): DcBackupSettings {
  let stored: Record<string, unknown> = {};
  try {
    stored = JSON.parse(dc.settings) as Record<string, unknown>;
  } catch {
    stored = {};
  }
  const out: Record<string, unknown> = { ...DEFAULTS };
  for (const k of Object.keys(DEFAULTS)) if (k in stored) out[k] = stored[k];
  return out as unknown as DcBackupSettings;
}
