/**
 * Where a node's sshd is reached for backups and restores (ESNAP_NODE_ADDRESS): `[user@]host[:port]`.
 * The user is the account whose sshd configuration reads esnap's authorized-keys file (README,
 * "Backups between nodes"); it defaults to `esnap`. Every part is checked here, once, because each
 * one ends up as an argument of `ssh` and a line of the known-hosts file: nothing that ssh could
 * read as an option (a leading `-`) or a known-hosts pattern (`*`, `?`, `!`, `,`) gets through.
 *
 * Example:
 *   parseSshAddress('esnap@node2.example:2222') // { user: 'esnap', host: 'node2.example', port: 2222 }
 *   parseSshAddress('[::1]:22')                  // { user: 'esnap', host: '::1', port: 22 }
 */
import { isIP } from 'node:net';

export interface SshAddress {
  readonly user: string;
  readonly host: string;
  readonly port: number;
}

export const DEFAULT_SSH_USER = 'esnap';

const USER_RE = /^[a-z_][a-z0-9_-]{0,31}$/;
const HOSTNAME_RE = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))*\.?$/;

/** The address, or null when it is not one. */
export function parseSshAddress(value: string): SshAddress | null {
  const m = /^(?:([^@]+)@)?(\[[^\]]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(value);
  if (!m) return null;
  const user = m[1] ?? DEFAULT_SSH_USER;
  const bracketed = m[2]!.startsWith('[');
  const host = bracketed ? m[2]!.slice(1, -1) : m[2]!;
  const port = m[3] === undefined ? 22 : Number(m[3]);
  if (!USER_RE.test(user)) return null;
  if (port < 1 || port > 65535) return null;
  if (bracketed ? isIP(host) !== 6 : isIP(host) === 0 && !HOSTNAME_RE.test(host)) return null;
  return Object.freeze({ user, host, port });
}

/** The host as known-hosts names it: `host` on port 22, else `[host]:port`. */
export function knownHostsName(a: SshAddress): string {
  return a.port === 22 ? a.host : `[${a.host}]:${a.port}`;
}

/** The address written back as ESNAP_NODE_ADDRESS takes it. */
export function formatSshAddress(a: SshAddress): string {
  const host = isIP(a.host) === 6 ? `[${a.host}]` : a.host;
  return `${a.user}@${host}:${a.port}`;
}
