/**
 * The `ssh` command line of a backup node's agent: its own key only, host keys pinned from the
 * known-hosts file the agent maintains (no prompt, no trust on first use), no user or system ssh
 * configuration, keep-alives so a dead peer ends the transfer instead of hanging it. The remote
 * command is one of the forced command's requests, checked by the same parser before it is sent.
 *
 * Example:
 *   sshArgv('/var/lib/esnap/ssh', parseSshAddress('esnap@node1:22')!, ['send', 'dataset', 'tank', 'vm1-disk0', 'is-7'])
 *   // ['ssh', '-F', 'none', '-i', '/var/lib/esnap/ssh/id_ed25519', …, '-p', '22', '-l', 'esnap', '--', 'node1', 'send dataset tank vm1-disk0 is-7']
 */
import { join } from 'node:path';
import type { SshAddress } from './ssh-address.js';
import { identityPath } from './ssh-identity.js';
import { KNOWN_HOSTS_FILE } from './trust-files.js';
import { parseServeRequest } from './serve-request.js';

/** ssh's own exit status for its failures (connection, authentication, host key). */
export const SSH_FAILED = 255;

export function sshArgv(sshDir: string, to: SshAddress, request: readonly string[]): string[] {
  const command = request.join(' ');
  // Fails early, on this side, for a request the forced command would refuse anyway.
  parseServeRequest(command, null);
  return [
    'ssh',
    '-F',
    'none',
    '-i',
    identityPath(sshDir),
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    'IdentityAgent=none',
    '-o',
    'BatchMode=yes',
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    `UserKnownHostsFile=${join(sshDir, KNOWN_HOSTS_FILE)}`,
    '-o',
    'GlobalKnownHostsFile=/dev/null',
    '-o',
    'ConnectTimeout=15',
    '-o',
    'ServerAliveInterval=10',
    '-o',
    'ServerAliveCountMax=3',
    '-o',
    'LogLevel=ERROR',
    '-T',
    '-p',
    String(to.port),
    '-l',
    to.user,
    '--',
    to.host,
    command,
  ];
}
