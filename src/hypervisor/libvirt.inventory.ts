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
import { SAFE_NAME, type DomainEvent, type Virsh } from './virsh.js';
import type { DomainInfo } from './libvirt.domains.js';

export interface DomainReport {
  readonly uuid: string;
  readonly name: string;
  readonly title: string | null;
  /** libvirt's state number (libvirt.domains.ts DOMAIN_STATE). */
  readonly state: number;
  readonly disks: readonly MappedDisk[];
}

/**
 * An inventory of a node's persistent domains: all of them, or (`partial`) only those a domain
 * event named, with the uuids of all persistent domains in `present` (what is gone).
 */
export interface DomainInventory {
  readonly node: string;
  /** ESNAP_LIBVIRT_DC of the agent: DC that new VMs join (null: the default DC). */
  readonly dc: string | null;
  readonly domains: readonly DomainReport[];
  readonly at: string;
  readonly partial?: boolean;
  readonly present?: readonly string[];
}

export const DEFAULT_RESYNC_S = 30;
/** Lets a new event waiter reach libvirtd before the rescan reads the domains. */
const WAITER_HEAD_START_MS = 250;

export async function readInventory(virsh: Virsh, storages: readonly StorageEntry[], node: string, dc: string | null): Promise<DomainInventory> {
  const at = new Date().toISOString();
  return { node, dc, domains: await mapAll(await virsh.describe(await virsh.persistentUuids()), storages), at };
}

/** The inventory of the named domains only (one virsh process), for a domain event. */
export async function readNamed(virsh: Virsh, storages: readonly StorageEntry[], node: string, dc: string | null, names: readonly string[]): Promise<DomainInventory> {
  const at = new Date().toISOString();
  const { present, domains } = await virsh.describeNames(names);
  return { node, dc, domains: await mapAll(domains, storages), at, partial: true, present };
}

/** Disks mapped at once per domain group: file system checks overlap instead of queueing one by one. */
const MAP_CONCURRENCY = 16;

async function mapAll(domains: readonly DomainInfo[], storages: readonly StorageEntry[]): Promise<DomainReport[]> {
  const out: DomainReport[] = [];
  for (let i = 0; i < domains.length; i += MAP_CONCURRENCY) {
    const group = domains.slice(i, i + MAP_CONCURRENCY);
    const mapped = await Promise.all(group.map((d) => Promise.all(d.disks.map((disk) => mapDisk(disk, storages)))));
    group.forEach((d, k) => out.push({ uuid: d.uuid, name: d.name, title: d.title, state: d.state, disks: mapped[k]! satisfies MappedDisk[] }));
  }
  return out;
}

/** `web01.xml` (or libvirt's `web01.xml.new` while it writes) in the config folder → `web01`. */
function domainOfConfigFile(file: string | null): string | null {
  const m = file === null ? null : /^(.+)\.xml(\.new)?$/.exec(file);
  return m && SAFE_NAME.test(m[1]!) ? m[1]! : null;
}

export class LibvirtWatcher {
  #stopped = false;
  #abort = new AbortController();
  #loop: Promise<void> | null = null;
  #scans = 0;
  /** Set by an event or a config-folder change; read (and cleared) before each rescan, so no change is lost mid-scan. */
  #dirty = false;
  /** Domains named by events since the last scan; `#full`: something needs a full re-read. */
  #pending = new Set<string>();
  #full = false;
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
        this.#dirWatch = watch(this.opts.configDir, { persistent: false }, (_type, file) => this.#kick(domainOfConfigFile(file)));
        this.#dirWatch.unref();
        this.#dirWatch.on('error', (err) => this.log.warn({ err }, 'libvirt config folder watch failed'));
      } catch (err) {
        this.log.warn({ err, dir: this.opts.configDir }, 'libvirt config folder cannot be watched; relying on events and resyncs');
      }
    }
    this.#loop = this.#run();
  }

  /** A change of the named domain, or (null) of something that needs a full re-read. */
  #kick(domain: string | null): void {
    if (domain === null) this.#full = true;
    else this.#pending.add(domain);
    this.#dirty = true;
    this.#wake();
  }

  /** A full re-read, or (`names`) one of only the domains an event named. */
  async #scan(names?: readonly string[]): Promise<void> {
    const inv =
      names === undefined
        ? await readInventory(this.virsh, this.storages, this.target.node, this.target.dc)
        : await readNamed(this.virsh, this.storages, this.target.node, this.target.dc, names);
    await this.publish(inv);
    this.#scans++;
  }

  /** The next event (kicks its domain); a timeout (the periodic resync) or an error kicks a full re-read. */
  #wait(): Promise<void> {
    return this.virsh.nextEvent(this.opts.resyncS ?? DEFAULT_RESYNC_S, this.#abort.signal).then(
      (ev: DomainEvent | null) => this.#kick(ev?.domain ?? null),
      async (err: unknown) => {
        // Errors (libvirtd restarting) end the wait like a timeout; the loop rescans and waits again.
        if (!this.#stopped) this.log.warn({ err }, 'libvirt event wait failed');
        await new Promise((r) => setTimeout(r, 1000));
        this.#kick(null);
      },
    );
  }

  async #run(): Promise<void> {
    let waiterDone = false;
    const arm = (): Promise<void> => {
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
      const full = this.#full;
      const names = [...this.#pending];
      this.#full = false;
      this.#pending.clear();
      // A new waiter before the rescan, so a change made during the rescan wakes the next one.
      if (waiterDone) waiter = arm();
      await new Promise((r) => setTimeout(r, WAITER_HEAD_START_MS));
      try {
        await this.#scan(full ? undefined : names);
      } catch (err) {
        this.log.error({ err }, 'libvirt resync failed');
        this.#full = true; // the next wake-up re-reads everything
      }
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#dirWatch?.close();
    this.#abort.abort();
    this.#kick(null);
    await this.#loop;
  }
}
