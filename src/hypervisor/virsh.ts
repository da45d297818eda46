/**
 * libvirt through `virsh`, over the one command runner (argument arrays, timeouts). virsh rather
 * than a Node binding: the maintained bindings are native addons that must be rebuilt against each
 * libvirt and Node release, while virsh ships with libvirt itself (`libvirt-clients`), speaks the
 * same remote protocol to libvirtd, and keeps every call visible in esnap's command log.
 *
 * Reading many domains costs one virsh process per batch, not per domain: virsh runs several
 * commands of one argument separated by `;` with its own parser (no shell). Only uuids that passed
 * UUID_RE go into such a command string, so nothing in it can be read as another command.
 */
import type { CommandRunner } from '../storage/runner.js';
import { parseDomainXml, parseDomstatsState, UUID_RE, type DomainInfo } from './libvirt.domains.js';

/** One libvirt domain event: the domain's name, or null when it is not known (re-read all). */
export interface DomainEvent {
  readonly domain: string | null;
}

export class LibvirtError extends Error {
  override readonly name = 'LibvirtError';
}

const TIMEOUT_MS = 30_000;
/** Domains per virsh process: one process for a host's usual count (its start and connection cost most). */
const BATCH = 250;
const MARK = '==esnap-domain ';
/** Domain names that may go into a `;`-separated virsh command string as they are. */
export const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

export class Virsh {
  constructor(
    private readonly runner: CommandRunner,
    readonly uri: string,
  ) {}

  async #run(args: readonly string[], timeoutMs = TIMEOUT_MS): Promise<string> {
    const r = await this.runner.run(['virsh', '-c', this.uri, ...args], { timeoutMs, env: { LC_ALL: 'C' } });
    if (r.code !== 0) throw new LibvirtError(`virsh ${args[0] ?? ''}: ${r.stderr.trim() || `exit code ${r.code}`}`);
    return r.stdout;
  }

  /** Uuids of the persistent (defined) domains; transient ones are not VMs esnap can keep. */
  async persistentUuids(): Promise<string[]> {
    return uuidLines(await this.#run(['-q', 'list', '--all', '--persistent', '--uuid']));
  }

  /**
   * The description and state of each domain; a domain undefined meanwhile is left out (the next
   * event or resync sees it gone). Batches run one after the other: libvirtd serialises per
   * connection anyway, and the agent must not crowd a loaded node.
   */
  async describe(uuids: readonly string[]): Promise<DomainInfo[]> {
    for (const u of uuids) if (!UUID_RE.test(u)) throw new LibvirtError(`not a domain uuid: ${JSON.stringify(u)}`);
    return this.#describe(uuids);
  }

  /**
   * The same for domains named by an event. Only names of SAFE_NAME go into the command string
   * (the caller rescans everything for others); a name that is no domain (undefined) is left out.
   */
  async describeNames(names: readonly string[]): Promise<{ present: string[]; domains: DomainInfo[] }> {
    for (const n of names) if (!SAFE_NAME.test(n)) throw new LibvirtError(`not a plain domain name: ${JSON.stringify(n)}`);
    // One process: the uuids of all persistent domains first (what is gone, what is transient), then the named ones.
    let present: string[] = [];
    const domains = await this.#describe(names, (head) => (present = uuidLines(head)));
    const persistent = new Set(present);
    return { present, domains: domains.filter((d) => persistent.has(d.uuid)) };
  }

  async #describe(ids: readonly string[], listed?: (head: string) => void): Promise<DomainInfo[]> {
    const out: DomainInfo[] = [];
    for (let i = 0; i < ids.length; i += BATCH) {
      const batch = ids.slice(i, i + BATCH);
      const list = listed && i === 0 ? 'list --all --persistent --uuid; ' : '';
      // The states of all domains in one command; then each description.
      const script = `${list}domstats --state --raw; ` + batch.map((u) => `echo ${MARK}${u}; dumpxml ${u}`).join('; ');
      // Errors of single commands (a domain just undefined) go to stderr and virsh goes on.
      const r = await this.runner.run(['virsh', '-c', this.uri, script], { timeoutMs: TIMEOUT_MS, env: { LC_ALL: 'C' } });
      if (r.code !== 0 && r.stdout === '') throw new LibvirtError(`virsh: ${r.stderr.trim() || `exit code ${r.code}`}`);
      const parts = r.stdout.split(MARK);
      if (list) listed!(parts[0]!);
      const states = parseAllStates(parts[0]!);
      for (const part of parts.slice(1)) {
        const end = part.indexOf('</domain>');
        if (end < 0) continue;
        const start = part.indexOf('<domain');
        const info = parseDomainXml(part.slice(start, end + '</domain>'.length));
        // Defined after the states were read: the event of its definition reads it again.
        const state = states.get(info.name);
        if (state === undefined) continue;
        out.push({ ...info, state });
      }
    }
    return out;
  }

  async start(uuid: string): Promise<void> {
    await this.#run(['start', checked(uuid)], 120_000);
  }

  async shutdown(uuid: string): Promise<void> {
    await this.#run(['shutdown', checked(uuid)]);
  }

  async destroy(uuid: string): Promise<void> {
    await this.#run(['destroy', checked(uuid)]);
  }

  /**
   * `guest-fsfreeze-freeze` through libvirt's guest-agent channel: the number of filesystems
   * frozen. A LibvirtError is an answer (no agent, an agent error: not frozen); any other error is
   * the runner's timeout, after which the guest may be frozen.
   */
  async fsFreeze(uuid: string, timeoutMs: number): Promise<number> {
    return filesystems(await this.#run(['domfsfreeze', checked(uuid)], timeoutMs), 'Froze');
  }

  /** `guest-fsfreeze-thaw` through libvirt: the number of filesystems thawed. */
  async fsThaw(uuid: string, timeoutMs: number): Promise<number> {
    return filesystems(await this.#run(['domfsthaw', checked(uuid)], timeoutMs), 'Thawed');
  }

  /** State of one domain (a DOMAIN_STATE value). */
  async state(uuid: string): Promise<number> {
    const s = parseDomstatsState(await this.#run(['domstats', '--state', '--raw', checked(uuid)]));
    if (s === null) throw new LibvirtError(`no state for domain ${uuid}`);
    return s;
  }

  /**
   * Waits for the next domain event, up to `timeoutS`; true when one came. `virsh event --all`
   * without `--loop` exits after one event, which lets the command runner own the process.
   */
  async nextEvent(timeoutS: number, signal?: AbortSignal): Promise<DomainEvent | null> {
    const r = await this.runner.run(['virsh', '-c', this.uri, 'event', '--all', '--timeout', String(timeoutS)], {
      timeoutMs: (timeoutS + 30) * 1000,
      env: { LC_ALL: 'C' },
      ...(signal ? { signal } : {}),
    });
    if (/events received: [1-9]/.test(r.stdout)) {
      // `event 'lifecycle' for domain 'web01': Defined Updated`; a name virsh's line cannot carry
      // unambiguously leaves the domain unknown (a full re-read).
      const m = /^event '[\w-]+' for domain '([^'\n]*)'/m.exec(r.stdout);
      return { domain: m && SAFE_NAME.test(m[1]!) ? m[1]! : null };
    }
    if (r.code !== 0 && !/timed out/.test(r.stdout + r.stderr)) throw new LibvirtError(`virsh event: ${r.stderr.trim() || `exit code ${r.code}`}`);
    return null;
  }
}

/** `domstats --state --raw` of all domains: `Domain: 'web01'` then `  state.state=1` → name → state. */
function parseAllStates(text: string): Map<string, number> {
  const out = new Map<string, number>();
  let name: string | null = null;
  for (const line of text.split('\n')) {
    const d = /^Domain: '(.*)'\s*$/.exec(line);
    if (d) {
      name = d[1]!;
      continue;
    }
    const st = name === null ? null : parseDomstatsState(line);
    if (st !== null && name !== null) out.set(name, st);
  }
  return out;
}

function uuidLines(out: string): string[] {
  return out
    .split('\n')
    .map((l) => l.trim().toLowerCase())
    .filter((l) => UUID_RE.test(l));
}

/** `Froze 2 filesystem(s)` → 2. */
function filesystems(out: string, verb: string): number {
  const m = new RegExp(`${verb} (\\d+) filesystem`).exec(out);
  if (!m) throw new LibvirtError(`virsh: unexpected answer ${JSON.stringify(out.trim())}`);
  return Number(m[1]);
}

function checked(uuid: string): string {
  if (!UUID_RE.test(uuid)) throw new LibvirtError(`not a domain uuid: ${JSON.stringify(uuid)}`);
  return uuid;
}
