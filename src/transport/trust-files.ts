/**
 * The files an agent maintains in ESNAP_SSH_DIR from what the servers hand it (a `trust` message):
 *
 * - `authorized_keys`: one entry per backup node's public key, each
 *   `restrict,command="<node> <esnap-ssh-serve.js> <ssh dir>/serve.json" ssh-ed25519 … esnap-backup@<node>`,
 *   so the key runs esnap's forced command and nothing else (no shell, no forwarding, no pty). The
 *   host's sshd reads it for one dedicated user (README: `Match User` + `AuthorizedKeysFile`).
 * - `known_hosts`: the registered host key of every node's sshd, under its ESNAP_NODE_ADDRESS
 *   name; this agent's ssh pins them (StrictHostKeyChecking=yes, UserKnownHostsFile=this file).
 * - `serve.json`: what the forced command needs to know about this node (its name and storages):
 *   sshd gives the command none of the agent's environment.
 * - `hosts.json`: where every node's sshd is (node → ESNAP_NODE_ADDRESS), from the last trust set:
 *   an agent restarted after a crash runs the cleanup of its interrupted backups before the servers'
 *   next trust set reaches it, and still has to reach the source nodes (readTrustedHosts).
 *
 * Every file is written whole to a temporary name and renamed (sshd never reads half a file), mode
 * 0600, and only when its content changes.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { StorageConfig } from '../storage/drivers.js';
import { formatSshAddress, knownHostsName, parseSshAddress, type SshAddress } from './ssh-address.js';
import { normalizePublicKey } from './ssh-identity.js';

export const AUTHORIZED_KEYS_FILE = 'authorized_keys';
export const KNOWN_HOSTS_FILE = 'known_hosts';
export const SERVE_CONFIG_FILE = 'serve.json';
export const HOSTS_FILE = 'hosts.json';
/** Restores the servers announced to this node (one JSON file per task, see announcements.ts). */
export const ANNOUNCED_DIR = 'announced';

/** What the servers hand every node: the backup nodes' keys, and every node's sshd. */
export interface TrustSet {
  /** Public keys allowed to run the forced command here: those of the backup nodes. */
  readonly backupKeys: ReadonlyArray<{ readonly node: string; readonly publicKey: string }>;
  /** The sshd of each node: ESNAP_NODE_ADDRESS and its registered ed25519 host key. */
  readonly hosts: ReadonlyArray<{ readonly node: string; readonly address: string; readonly hostKey: string }>;
}

/** What `esnap ssh-serve` reads (serve.json). */
export interface ServeConfig {
  readonly node: string;
  readonly storages: readonly StorageConfig[];
  /** Folder of the announced restores. */
  readonly announcedDir: string;
  /**
   * How long a receive waits for its announcement (default ANNOUNCE_WAIT_MS): the announcement is
   * a job on this node's queue, and a busy agent may apply it after the backup node has connected.
   */
  readonly announceWaitMs?: number;
  /** Longest a guest stays frozen for a backup's snapshot (the agent's ESNAP_FREEZE_LIMIT_S). */
  readonly freezeLimitMs?: number;
}

/** Default wait of a receive for its restore announcement. */
export const ANNOUNCE_WAIT_MS = 30_000;

/** Characters a path in the forced command may have: it is read by the login shell, inside double quotes. */
const SAFE_PATH_RE = /^\/[A-Za-z0-9/._+-]+$/;
const NODE_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;

export class TrustFileError extends Error {
  override readonly name = 'TrustFileError';
}

/**
 * The forced command: node, esnap's ssh-serve entry (dist/src/bin/esnap-ssh-serve.js), the serve
 * config. Paths with a character a shell or sshd's option parser could read otherwise are refused
 * here, at start-up.
 */
export function forcedCommand(nodeBinary: string, serveScript: string, sshDir: string): string {
  const parts = [nodeBinary, serveScript, join(sshDir, SERVE_CONFIG_FILE)];
  for (const p of parts) {
    if (!SAFE_PATH_RE.test(p)) {
      throw new TrustFileError(`${JSON.stringify(p)} cannot be part of the SSH forced command: use a path of letters, digits and / . _ + - only`);
    }
  }
  return `${parts[0]} ${parts[1]} ${parts[2]}`;
}

/** The authorized-keys text for these keys (sorted by node: the same set writes the same file). */
export function authorizedKeysText(keys: TrustSet['backupKeys'], command: string): string {
  const lines: string[] = [];
  for (const k of [...keys].sort((a, b) => a.node.localeCompare(b.node))) {
    const key = normalizePublicKey(k.publicKey);
    if (key === null || !NODE_RE.test(k.node)) continue; // the server checked; a bad entry never becomes a line
    lines.push(`restrict,command="${command}" ${key} esnap-backup@${k.node}`);
  }
  return lines.map((l) => `${l}\n`).join('');
}

/** The known-hosts text for these hosts; entries with an address or key that is not valid are left out. */
export function knownHostsText(hosts: TrustSet['hosts']): string {
  const lines: string[] = [];
  for (const h of [...hosts].sort((a, b) => a.node.localeCompare(b.node))) {
    const address = parseSshAddress(h.address);
    const key = normalizePublicKey(h.hostKey);
    if (address === null || key === null) continue;
    lines.push(`${knownHostsName(address)} ${key}`);
  }
  return lines.map((l) => `${l}\n`).join('');
}

/** Writes `text` to `dir/name` (0600) through a temporary file and a rename; false when it was already so. */
export async function writeIfChanged(dir: string, name: string, text: string): Promise<boolean> {
  const path = join(dir, name);
  const old = await readFile(path, 'utf8').catch(() => null);
  if (old === text) return false;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, text, { mode: 0o600 });
  await rename(tmp, path);
  return true;
}

/** The valid node → address pairs of a trust set's hosts (what `hosts.json` holds). */
export function trustedHosts(hosts: TrustSet['hosts']): Map<string, SshAddress> {
  const out = new Map<string, SshAddress>();
  for (const h of hosts) {
    const a = parseSshAddress(h.address);
    if (a !== null && NODE_RE.test(h.node)) out.set(h.node, a);
  }
  return out;
}

/** Applies a trust set: the authorized keys (with `command`), the known hosts and the hosts' addresses. */
export async function applyTrust(dir: string, trust: TrustSet, command: string): Promise<void> {
  await writeIfChanged(dir, AUTHORIZED_KEYS_FILE, authorizedKeysText(trust.backupKeys, command));
  await writeIfChanged(dir, KNOWN_HOSTS_FILE, knownHostsText(trust.hosts));
  const hosts = [...trustedHosts(trust.hosts)].sort(([a], [b]) => a.localeCompare(b)).map(([node, a]) => ({ node, address: formatSshAddress(a) }));
  await writeIfChanged(dir, HOSTS_FILE, `${JSON.stringify(hosts)}\n`);
}

/** The hosts of the last trust set applied in `dir` (empty before the first, or when the file is unreadable). */
export async function readTrustedHosts(dir: string): Promise<Map<string, SshAddress>> {
  const text = await readFile(join(dir, HOSTS_FILE), 'utf8').catch(() => null);
  if (text === null) return new Map();
  try {
    const parsed = JSON.parse(text) as unknown;
    if (!Array.isArray(parsed)) return new Map();
    return trustedHosts(parsed.filter((h): h is { node: string; address: string } => typeof h?.node === 'string' && typeof h?.address === 'string').map((h) => ({ ...h, hostKey: '' })));
  } catch {
    return new Map();
  }
}

/** Writes serve.json for the forced command. */
export async function writeServeConfig(dir: string, node: string, storages: readonly StorageConfig[], announceWaitMs?: number, freezeLimitMs?: number): Promise<ServeConfig> {
  const config: ServeConfig = {
    node,
    storages,
    announcedDir: join(dir, ANNOUNCED_DIR),
    ...(announceWaitMs !== undefined ? { announceWaitMs } : {}),
    ...(freezeLimitMs !== undefined ? { freezeLimitMs } : {}),
  };
  await mkdir(config.announcedDir, { recursive: true, mode: 0o700 });
  await writeIfChanged(dir, SERVE_CONFIG_FILE, `${JSON.stringify(config, null, 2)}\n`);
  return config;
}
