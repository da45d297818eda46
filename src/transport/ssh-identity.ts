/**
 * A node's SSH identity for backups (issue 15, "Keys, trust and secrets"): the agent's own ed25519
 * key pair, made once in ESNAP_SSH_DIR at its first start (`ssh-keygen`, no passphrase: the agent
 * runs unattended; the folder is 0700 and the private key 0600), and the host key of the node's
 * sshd that other nodes pin. Both public halves go to the servers in the registration message.
 *
 * The host key comes from `<ssh dir>/host_key.pub` when the operator put one there (a copy of
 * /etc/ssh/ssh_host_ed25519_key.pub: nothing crosses a network), else from `ssh-keyscan` of
 * ESNAP_NODE_ADDRESS, which is this node's own sshd. Only ed25519 keys are accepted.
 *
 * Example:
 *   const id = await ensureIdentity(runner, '/var/lib/esnap/ssh', 'node1');
 *   const hostKey = await readHostKey(runner, '/var/lib/esnap/ssh', parseSshAddress('esnap@node1')!);
 */
import { chmod, mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { CommandRunner } from '../storage/runner.js';
import type { SshAddress } from './ssh-address.js';

export const IDENTITY_FILE = 'id_ed25519';
export const HOST_KEY_FILE = 'host_key.pub';

/** `ssh-ed25519 <base64>` without a comment: the form esnap stores and writes. */
const ED25519_RE = /^ssh-ed25519 (AAAAC3NzaC1lZDI1NTE5AAAAI[A-Za-z0-9+/]{43})(?:=*)(?:\s.*)?$/;

export class SshIdentityError extends Error {
  override readonly name = 'SshIdentityError';
}

/** The key as `ssh-ed25519 <base64>`, or null when the text is not one ed25519 public key. */
export function normalizePublicKey(text: string): string | null {
  const m = ED25519_RE.exec(text.trim());
  return m ? `ssh-ed25519 ${m[1]}` : null;
}

/** Makes ESNAP_SSH_DIR (0700) and the agent's key pair if it has none; returns the public key. */
export async function ensureIdentity(runner: CommandRunner, dir: string, node: string): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const key = join(dir, IDENTITY_FILE);
  const exists = await stat(key).then(
    () => true,
    (err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? false : Promise.reject(err)),
  );
  if (!exists) {
    const argv = ['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', `esnap@${node}`, '-f', key];
    const r = await runner.run(argv, { timeoutMs: 30_000 });
    if (r.code !== 0) throw new SshIdentityError(`ssh-keygen could not make the agent's key pair in ${dir}: ${r.stderr.trim() || `exit ${r.code}`}`);
  }
  const pub = normalizePublicKey(await readFile(`${key}.pub`, 'utf8'));
  if (pub === null) throw new SshIdentityError(`${key}.pub is not an ed25519 public key`);
  return pub;
}

/** The private key's path (what `ssh -i` takes). */
export function identityPath(dir: string): string {
  return join(dir, IDENTITY_FILE);
}

/** The ed25519 host key of the node's sshd, from `<dir>/host_key.pub` or `ssh-keyscan` of `address`. */
export async function readHostKey(runner: CommandRunner, dir: string, address: SshAddress): Promise<string> {
  const file = join(dir, HOST_KEY_FILE);
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? null : Promise.reject(err)));
  if (text !== null) {
    const key = normalizePublicKey(text);
    if (key === null) throw new SshIdentityError(`${file} is not an ed25519 public key`);
    return key;
  }
  const argv = ['ssh-keyscan', '-T', '5', '-t', 'ed25519', '-p', String(address.port), address.host];
  const r = await runner.run(argv, { timeoutMs: 30_000 });
  // Lines are `<host> ssh-ed25519 <base64>`; comments (`# host:port SSH-2.0-…`) go to stderr.
  for (const line of r.stdout.split('\n')) {
    const key = normalizePublicKey(line.trim().split(/\s+/).slice(1).join(' '));
    if (key !== null) return key;
  }
  throw new SshIdentityError(
    `no ed25519 host key from the sshd at ${address.host}:${address.port} (ESNAP_NODE_ADDRESS): ${r.stderr.trim() || `ssh-keyscan exit ${r.code}`}; ` +
      `start sshd there, or put its public host key in ${file}`,
  );
}
