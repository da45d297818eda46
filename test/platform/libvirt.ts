/**
 * The machine's real libvirtd for the libvirt tests (`.ci/run` installs and starts it). Domains are
 * `type='qemu'` (TCG: no KVM needed) and named with a per-run prefix, so parallel test files and
 * runs never touch each other's domains; `cleanup` undefines (and destroys) what a test defined.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const LIBVIRT_URI = 'qemu:///system';

/** Null when libvirtd answers on qemu:///system as root, else why not. */
export async function libvirtUnavailable(): Promise<string | null> {
  if (process.getuid?.() !== 0) return 'needs root for qemu:///system';
  try {
    await run('virsh', ['-c', LIBVIRT_URI, 'version'], { timeout: 15_000 });
    return null;
  } catch (err) {
    return `libvirtd not reachable: ${(err as Error).message.split('\n')[0]}`;
  }
}

export async function virsh(...args: string[]): Promise<string> {
  const { stdout } = await run('virsh', ['-c', LIBVIRT_URI, ...args], { timeout: 60_000 });
  return stdout;
}

export function uniqueName(base: string): string {
  return `${base}-${randomBytes(3).toString('hex')}`;
}

export interface TestDisk {
  readonly target: string;
  readonly source: string;
  readonly format: 'raw' | 'qcow2';
}

export function domainXml(name: string, opts: { title?: string; disks?: readonly TestDisk[]; memoryMb?: number } = {}): string {
  const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/'/g, '&apos;');
  const disks = (opts.disks ?? [])
    .map(
      (d) =>
        `<disk type='file' device='disk'><driver name='qemu' type='${d.format}'/><source file='${esc(d.source)}'/><target dev='${d.target}' bus='virtio'/></disk>`,
    )
    .join('\n    ');
  return `<domain type='qemu'>
  <name>${esc(name)}</name>
  ${opts.title ? `<title>${esc(opts.title)}</title>` : ''}
  <memory unit='MiB'>${opts.memoryMb ?? 32}</memory>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    ${disks}
  </devices>
</domain>`;
}

/** Defines a domain from XML; returns its uuid. */
export async function defineDomain(xml: string): Promise<string> {
  const file = join(tmpdir(), `esnap-dom-${randomBytes(4).toString('hex')}.xml`);
  await writeFile(file, xml);
  await virsh('define', file);
  const name = /<name>([^<]+)<\/name>/.exec(xml)![1]!.replace(/&apos;/g, "'").replace(/&lt;/g, '<').replace(/&amp;/g, '&');
  return (await virsh('domuuid', name)).trim();
}

/** Destroys (if running) and undefines the domains; errors for ones already gone are ignored. */
export async function cleanupDomains(uuids: Iterable<string>): Promise<void> {
  for (const u of uuids) {
    await virsh('destroy', u).catch(() => undefined);
    await virsh('undefine', u).catch(() => undefined);
  }
}
