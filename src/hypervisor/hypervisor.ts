/**
 * The agent's hypervisor seam, beside its storage drivers: `none` (VMs registered through the API,
 * sockets given per VM) or `libvirt` (the node's domains discovered and kept in sync; see
 * libvirt.inventory.ts and libvirt.rows.ts). Chosen once per agent from ESNAP_HYPERVISOR, in
 * embedded and cluster mode alike; only where the inventory goes differs (`publish`).
 */
import { existsSync } from 'node:fs';
import type { Logger } from '../app-context.js';
import type { HypervisorConfig } from '../config.js';
import type { StorageDriver } from '../storage/driver.js';
import type { DriverExtras, StorageConfig } from '../storage/drivers.js';
import { openLibvirtMonitor, snapshotOnKnownNode } from './libvirt.monitor.js';
import type { CommandRunner } from '../storage/runner.js';
import { LibvirtWatcher, type DomainInventory } from './libvirt.inventory.js';
import { Virsh } from './virsh.js';

/** Where a local libvirtd keeps persistent domain definitions (rewritten on every change). */
const LOCAL_CONFIG_DIRS: Readonly<Record<string, string>> = { 'qemu:///system': '/etc/libvirt/qemu' };

export interface HypervisorHandle {
  readonly kind: 'libvirt';
  readonly virsh: Virsh;
  readonly watcher: LibvirtWatcher;
  stop(): Promise<void>;
}

export interface HypervisorDeps {
  readonly node: string;
  readonly storages: readonly StorageConfig[];
  readonly drivers: ReadonlyMap<string, StorageDriver>;
  readonly runner: CommandRunner;
  readonly log: Logger;
  readonly publish: (inv: DomainInventory) => Promise<void>;
  /** Seconds between full resyncs (default libvirt.inventory.ts DEFAULT_RESYNC_S). */
  readonly resyncS?: number;
}

/** What the storage drivers get from the hypervisor: libvirt's monitor for qcow2 live snapshots. */
export function driverExtras(cfg: HypervisorConfig | undefined, runner: CommandRunner): DriverExtras {
  if (!cfg || cfg.kind === 'none') return {};
  const uri = cfg.uri;
  return {
    libvirtMonitor: (uuid) => openLibvirtMonitor(runner, uri, uuid),
    libvirtSnapshot: (uuid, image, id, timeoutMs) => snapshotOnKnownNode(runner, uri, uuid, image, id, timeoutMs),
  };
}

/** The agent's libvirt connection for start/stop tasks; null for `none`. */
export function agentVirsh(cfg: HypervisorConfig | undefined, runner: CommandRunner): Virsh | null {
  return cfg && cfg.kind === 'libvirt' ? new Virsh(runner, cfg.uri) : null;
}

/** Starts the adapter (first inventory published before it returns); null for `none`. */
export async function startHypervisor(cfg: HypervisorConfig | undefined, deps: HypervisorDeps): Promise<HypervisorHandle | null> {
  if (!cfg || cfg.kind === 'none') return null;
  const virsh = new Virsh(deps.runner, cfg.uri);
  const storages = deps.storages.flatMap((s) => {
    const driver = deps.drivers.get(s.name);
    return driver ? [{ config: s, driver }] : [];
  });
  const configDir = LOCAL_CONFIG_DIRS[cfg.uri] ?? null;
  const watcher = new LibvirtWatcher(virsh, storages, { node: deps.node, dc: cfg.dc }, deps.publish, deps.log, {
    ...(deps.resyncS !== undefined ? { resyncS: deps.resyncS } : {}),
    configDir: configDir !== null && existsSync(configDir) ? configDir : null,
  });
  await watcher.start();
  deps.log.info({ node: deps.node, uri: cfg.uri }, 'libvirt discovery started');
  return { kind: 'libvirt', virsh, watcher, stop: () => watcher.stop() };
}
