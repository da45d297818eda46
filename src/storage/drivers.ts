/**
 * Builds a storage driver from one entry of the storage configuration (`ESNAP_STORAGES`). The
 * configuration has already been validated in shape; this checks what each driver needs.
 *
 * Example:
 *   const driver = createDriver({ name: 'default', driver: 'file', root: '/var/lib/esnap/storage' }, runner);
 *   await driver.init();
 */
import type { StorageDriver } from './driver.js';
import { FileDriver } from './file/file.driver.js';
import { ZfsDriver } from './zfs/zfs.driver.js';
import { BtrfsDriver } from './btrfs/btrfs.driver.js';
import { Qcow2Driver } from './qcow2/qcow2.driver.js';
import type { CommandRunner } from './runner.js';
import type { LibvirtQuickSnapshot, QemuMonitor } from './qcow2/qcow2.live.js';

export interface StorageConfig {
  readonly name: string;
  readonly driver: string;
  /** Folder of the storage (file, qcow2, btrfs). */
  readonly root?: string;
  /** Parent dataset (zfs). */
  readonly dataset?: string;
}

/** What a driver may get besides its configuration (the hypervisor's monitor for qcow2 live snapshots). */
export interface DriverExtras {
  readonly libvirtMonitor?: (uuid: string) => Promise<QemuMonitor | null>;
  /** A live snapshot in one round trip where the device is known (libvirt.monitor.ts snapshotOnKnownNode). */
  readonly libvirtSnapshot?: LibvirtQuickSnapshot;
}

type Factory = (cfg: StorageConfig, runner: CommandRunner, extras: DriverExtras) => StorageDriver;

/** One entry per backend; a new driver is one line here plus its folder. */
const FACTORIES: Readonly<Record<string, Factory>> = Object.freeze({
  file: (cfg, runner) => new FileDriver({ root: requireField(cfg, 'root'), runner }),
  zfs: (cfg, runner) => new ZfsDriver({ dataset: requireField(cfg, 'dataset'), runner }),
  btrfs: (cfg, runner) => new BtrfsDriver({ root: requireField(cfg, 'root'), runner }),
  qcow2: (cfg, runner, extras) => new Qcow2Driver({ root: requireField(cfg, 'root'), runner, ...extras }),
});

export function createDriver(cfg: StorageConfig, runner: CommandRunner, extras: DriverExtras = {}): StorageDriver {
  const factory = Object.hasOwn(FACTORIES, cfg.driver) ? FACTORIES[cfg.driver] : undefined;
  if (!factory) {
    throw new Error(
      `Storage ${JSON.stringify(cfg.name)}: unknown driver ${JSON.stringify(cfg.driver)} (known: ${Object.keys(FACTORIES).join(', ')})`,
    );
  }
  return factory(cfg, runner, extras);
}

function requireField(cfg: StorageConfig, field: 'root' | 'dataset'): string {
  const value = cfg[field];
  if (typeof value !== 'string' || value === '') {
    throw new Error(`Storage ${JSON.stringify(cfg.name)}: driver ${JSON.stringify(cfg.driver)} needs "${field}"`);
  }
  return value;
}
