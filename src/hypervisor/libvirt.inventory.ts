/**
 * The agent's side of libvirt discovery: reads every persistent domain of the node (one `virsh
 * list`, then batched `dumpxml`/`domstats`), maps each disk to a storage (disk-mapping.ts) and hands
 * the whole inventory on — to the database directly in embedded mode, as an `esnap.register`
 * message in cluster mode (agents never read esnap's tables). The server applies it
 * (libvirt.rows.ts): a full inventory each time keeps one code path for start, events and resync,
 * and makes a lost or reordered message harmless.
 *
 * When: at start; after each libvirt domain event; and every `resyncS` seconds as the safety net.
 * Events come from `virsh event --all` run once per event (see Virsh.nextEvent): the next waiter
 * starts before the rescan, so a change made during a rescan wakes the next one. The gap left is
 * the instant between a waiter's exit and its successor's registration with libvirtd; a change
 * falling exactly there waits for the periodic resync. Changes to the persistent definition of a
 * domain that is not running raise no event at all; for a local libvirtd the watch on its config
 * folder catches those.
 */
import { watch, type FSWatcher } from 'node:fs';
import type { Logger } from '../app-context.js';
import { mapDisk, type MappedDisk, type StorageEntry } from './disk-mapping.js';
import type { Virsh } from './virsh.js';

export interface DomainReport {
  readonly uuid: string;
  readonly name: string;
  readonly title: string | null;
  /** libvirt's state number (libvirt.domains.ts DOMAIN_STATE). */
  readonly state: number;
  readonly disks: readonly MappedDisk[];
}

/** One full inventory of a node's persistent domains. */
export interface DomainInventory {
  readonly node: string;
  /** ESNAP_LIBVIRT_DC of the agent: DC that new VMs join (null: the default DC). */
  readonly dc: string | null;
  readonly domains: readonly DomainReport[];
  readonly at: string;
}

export const DEFAULT_RESYNC_S = 30;
/** Lets a new event waiter reach libvirtd before the rescan reads the domains. */
const WAITER_HEAD_START_MS = 250;

export async function readInventory(virsh: Virsh, storages: readonly StorageEntry[], node: string, dc: string | null): Promise<DomainInventory> {
  const at = new Date().toISOString();
  const domains = await virsh.describe(await virsh.persistentUuids());
  const out: DomainReport[] = [];
  for (const d of domains) {
    const disks: MappedDisk[] = [];
    for (const disk of d.disks) disks.push(await mapDisk(disk, storages));
    out.push({ uuid: d.uuid, name: d.name, title: d.title, state: d.state, disks });
  }
  return { node, dc, domains: out, at };
}

export class LibvirtWatcher {
  #stopped = false;
  #abort = new AbortController();
  #loop: Promise<void> | null = null;
  #scans = 0;
  /** Set by a config-folder change; read (and cleared) before each rescan, so no change is lost mid-scan. */
  #dirty = false;
  #wake: () => void = () => undefined;
  #dirWatch: FSWatcher | null = null;

  constructor(
    private readonly virsh: Virsh,
    private readonly storages: readonly StorageEntry[],
    private readonly target: { readonly node: string; readonly dc: string | null },
    private readonly publish: (inv: DomainInventory) => Promise<void>,
    private readonly log: Logger,
    private readonly opts: { readonly resyncS?: number; readonly configDir?: string | null } = {},
  ) {}

  /** Number of inventories published (tests and /readyz read it). */
  get scans(): number {
    return this.#scans;
  }

  /** Publishes the first inventory (a failure here fails the agent's start), then watches. */
  async start(): Promise<void> {
    await this.#scan();
    // libvirt sends no event when the persistent definition of a domain that is not running
    // changes (`attach-disk --config`), but it rewrites the domain's file in its config folder.
    if (this.opts.configDir) {
      try {
        this.#dirWatch = watch(this.opts.configDir, { persistent: false }, () => this.#kick());
        this.#dirWatch.unref();
        this.#dirWatch.on('error', (err) => this.log.warn({ err }, 'libvirt config folder watch failed'));
      } catch (err) {
        this.log.warn({ err, dir: this.opts.configDir }, 'libvirt config folder cannot be watched; relying on events and resyncs');
      }
    }
    this.#loop = this.#run();
  }

  #kick(): void {
    this.#dirty = true;
    this.#wake();
  }

  async #scan(): Promise<void> {
    const inv = await readInventory(this.virsh, this.storages, this.target.node, this.target.dc);
    await this.publish(inv);
    this.#scans++;
  }

  #wait(): Promise<unknown> {
    // Errors (libvirtd restarting) end the wait like a timeout; the loop rescans and waits again.
    return this.virsh.nextEvent(this.opts.resyncS ?? DEFAULT_RESYNC_S, this.#abort.signal).catch((err: unknown) => {
      if (!this.#stopped) this.log.warn({ err }, 'libvirt event wait failed');
      return new Promise((r) => setTimeout(r, 1000));
    });
  }

  async #run(): Promise<void> {
    let waiterDone = false;
    const arm = (): Promise<unknown> => {
      waiterDone = false;
      return this.#wait().finally(() => {
        waiterDone = true;
      });
    };
    let waiter = arm();
    while (!this.#stopped) {
      if (!this.#dirty) {
        const kicked = new Promise<void>((r) => (this.#wake = r));
        await Promise.race([waiter, kicked]);
      }
      if (this.#stopped) break;
      this.#dirty = false;
      // A new waiter before the rescan, so a change made during the rescan wakes the next one.
      if (waiterDone) waiter = arm();
      await new Promise((r) => setTimeout(r, WAITER_HEAD_START_MS));
      try {
        await this.#scan();
      } catch (err) {
        this.log.error({ err }, 'libvirt resync failed');
      }
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#dirWatch?.close();
    this.#abort.abort();
    this.#kick();
    await this.#loop;
  }
}
