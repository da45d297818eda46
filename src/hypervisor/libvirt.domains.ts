/**
 * What esnap reads from a libvirt domain description, as plain data: identity, title, state and
 * the disks (`<disk device='disk'>`; cdroms and floppies are not VM disks). Pure functions over
 * `virsh` output, so the rules are tested without a libvirtd.
 */
import { child, children, childText, parseXml } from './xml.js';

/** libvirt's virDomainState numbers (`virsh domstats --state --raw`: `state.state=<n>`). */
export const DOMAIN_STATE = {
  nostate: 0,
  running: 1,
  blocked: 2,
  paused: 3,
  shutdown: 4, // being shut down
  shutoff: 5,
  crashed: 6,
  pmsuspended: 7,
} as const;

export interface DomainDisk {
  /** Target device (`vda`, `sdb`): with the source, what identifies a disk. */
  readonly target: string;
  /** Source path for file and block disks; null for network, volume or empty sources. */
  readonly source: string | null;
  /** `<disk type=…>`: file, block, volume, network, dir. */
  readonly type: string;
  /** `<driver type=…>`: raw, qcow2…; null when libvirt did not say. */
  readonly format: string | null;
}

export interface DomainInfo {
  readonly uuid: string;
  readonly name: string;
  readonly title: string | null;
  /** A DOMAIN_STATE value. */
  readonly state: number;
  readonly disks: readonly DomainDisk[];
}

/** storage_id of a libvirt disk that lies on no esnap storage (no node_storage row has id 0). */
export const NO_STORAGE_ID = 0;

export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A domain XML (`virsh dumpxml`) without its state; throws on XML that is not a domain. */
export function parseDomainXml(xml: string): Omit<DomainInfo, 'state'> {
  const dom = parseXml(xml);
  if (dom.name !== 'domain') throw new Error(`not a domain description: <${dom.name}>`);
  const uuid = (childText(dom, 'uuid') ?? '').toLowerCase();
  const name = childText(dom, 'name') ?? '';
  if (!UUID_RE.test(uuid) || name === '') throw new Error('domain description without name or uuid');
  const title = childText(dom, 'title');
  const devices = child(dom, 'devices');
  const disks: DomainDisk[] = [];
  for (const d of devices ? children(devices, 'disk') : []) {
    if ((d.attrs['device'] ?? 'disk') !== 'disk') continue;
    const target = child(d, 'target')?.attrs['dev'];
    if (!target) continue;
    const src = child(d, 'source');
    const type = d.attrs['type'] ?? 'file';
    const source = src?.attrs['file'] ?? src?.attrs['dev'] ?? null;
    disks.push({ target, source, type, format: child(d, 'driver')?.attrs['type'] ?? null });
  }
  return { uuid, name, title: title === '' ? null : title, disks };
}

/** `state.state=<n>` of `virsh domstats --state --raw` output for one domain; null when absent. */
export function parseDomstatsState(text: string): number | null {
  const m = /^\s*state\.state=(\d+)\s*$/m.exec(text);
  return m ? Number(m[1]) : null;
}

/** Danube's VM status for a libvirt state: QEMU holding the image counts as running. */
export function statusOfState(state: number): 'running' | 'stopping' | 'stopped' {
  switch (state) {
    case DOMAIN_STATE.running:
    case DOMAIN_STATE.blocked:
    case DOMAIN_STATE.paused:
    case DOMAIN_STATE.pmsuspended:
      return 'running';
    case DOMAIN_STATE.shutdown:
      return 'stopping';
    default:
      // shut off, crashed, and libvirt's "no state" (a QEMU that is not there holds nothing).
      return 'stopped';
  }
}
