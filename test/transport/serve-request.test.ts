/**
 * The forced command's parser (what a backup node's key may run) and the trust files' text: the
 * refusals of the security list of issue 15 at the parser level; the same refusals go through a
 * real sshd in ssh-serve.sshd.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { parseServeRequest, ServeRefusal } from '../../src/transport/serve-request.js';
import { parseSshAddress, knownHostsName } from '../../src/transport/ssh-address.js';
import { authorizedKeysText, forcedCommand, knownHostsText, TrustFileError } from '../../src/transport/trust-files.js';
import { normalizePublicKey } from '../../src/transport/ssh-identity.js';
import { sshArgv } from '../../src/transport/ssh-client.js';

const STORAGES = ['tank', 'backup'];
const TASK = '1e1u1-6f75849b-1a2b-3c4d-5e6f';
const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO6u5z/D4ARs5HRcpToqvt4kcMDEefn+IKWHV9o2lPcX';

function refusal(command: string | undefined): string {
  try {
    parseServeRequest(command, STORAGES);
  } catch (err) {
    expect(err).toBeInstanceOf(ServeRefusal);
    return (err as Error).message;
  }
  throw new Error(`not refused: ${String(command)}`);
}

describe('forced command requests', () => {
  it('accepts the six requests esnap sends', () => {
    expect(parseServeRequest('send dataset tank vm1/disk0 is-7 is-6', STORAGES)).toEqual({
      op: 'send', format: 'dataset', storage: 'tank', disk: 'vm1/disk0', snapshot: 'is-7', base: 'is-6',
    });
    expect(parseServeRequest('send dataset tank vm1-disk0 es-3', STORAGES)).toMatchObject({ base: null, snapshot: 'es-3' });
    expect(parseServeRequest('send image tank vm1-disk0 as-12', STORAGES)).toMatchObject({ op: 'send', format: 'image' });
    expect(parseServeRequest(`receive ${TASK} backup vm2-disk1`, STORAGES)).toEqual({ op: 'receive', taskId: TASK, storage: 'backup', disk: 'vm2-disk1' });
    expect(parseServeRequest(`receive dataset ${TASK} backup vm2-disk1 is-4`, STORAGES)).toEqual({ op: 'receive-dataset', taskId: TASK, storage: 'backup', disk: 'vm2-disk1', snapshot: 'is-4' });
    expect(parseServeRequest('snapshot tank vm1-disk0 is-9', STORAGES)).toMatchObject({ op: 'snapshot', snapshot: 'is-9' });
    expect(parseServeRequest('release tank vm1-disk0 is-9', STORAGES)).toMatchObject({ op: 'release' });
    expect(parseServeRequest('snapshot tank vm1-disk0 is-9', STORAGES)).toMatchObject({ freezeTask: null });
    expect(parseServeRequest(`snapshot tank vm1-disk0 is-9 freeze ${TASK}`, STORAGES)).toEqual({ op: 'snapshot', storage: 'tank', disk: 'vm1-disk0', snapshot: 'is-9', freezeTask: TASK });
  });

  it('snapshot … freeze takes a task id and nothing else; release takes no freeze', () => {
    expect(refusal('snapshot tank vm1 is-9 freeze')).toMatch(/not an esnap task id/);
    expect(refusal('snapshot tank vm1 is-9 freeze /run/qga.sock')).toMatch(/not an esnap task id/);
    expect(refusal(`snapshot tank vm1 is-9 thaw ${TASK}`)).toMatch(/"freeze <task id>"/);
    expect(refusal(`snapshot tank vm1 is-9 freeze ${TASK} extra`)).toMatch(/"freeze <task id>"/);
    expect(refusal(`release tank vm1 is-9 freeze ${TASK}`)).toMatch(/too many words/);
  });

  it('refuses a shell, other commands and anything a shell would read', () => {
    expect(refusal(undefined)).toMatch(/not a shell/);
    expect(refusal('')).toMatch(/not a shell/);
    expect(refusal('bash')).toMatch(/"bash" is not a command of this key/);
    expect(refusal('zfs destroy -r tank')).toMatch(/not a command of this key/);
    expect(refusal('scp -t /root')).toMatch(/not a command of this key/);
    expect(refusal('send dataset tank vm1 es-1; rm -rf /')).toMatch(/characters esnap never sends/);
    expect(refusal('send dataset tank vm1 es-1 $(id)')).toMatch(/characters/);
    expect(refusal('send  dataset tank vm1 es-1')).toMatch(/single spaces/);
    expect(refusal('send dataset tank vm1 es-1\nbash')).toMatch(/characters/);
  });

  it('refuses paths outside the storages and unknown storages', () => {
    expect(refusal('send image tank /etc/shadow es-1')).toMatch(/not a disk path inside a storage/);
    expect(refusal('send image tank ../../etc es-1')).toMatch(/not a disk path/);
    expect(refusal('send image tank vm1/../../x es-1')).toMatch(/not a disk path/);
    expect(refusal('send image tank .snapshots/vm1 es-1')).toMatch(/not a disk path/);
    expect(refusal('send image other vm1 es-1')).toMatch(/no storage "other" on this node/);
    expect(refusal(`receive ${TASK} tank /dev/sda`)).toMatch(/not a disk path/);
    expect(refusal(`receive dataset ${TASK} tank ../vm1 is-4`)).toMatch(/not a disk path/);
    expect(refusal(`receive dataset ${TASK} other vm1 is-4`)).toMatch(/no storage "other" on this node/);
  });

  it('refuses ids that are not esnap snapshots, bases that are not backup bases, stray words', () => {
    expect(refusal('send image tank vm1 foo')).toMatch(/not an esnap snapshot id/);
    expect(refusal('send dataset tank vm1 es-2 es-1')).toMatch(/backup base snapshot id/);
    expect(refusal('snapshot tank vm1 es-1')).toMatch(/is-<n>/);
    expect(refusal('release tank vm1 as-1')).toMatch(/is-<n>/);
    expect(refusal('send image tank vm1 es-1 extra')).toMatch(/too many words/);
    expect(refusal('receive 123 tank vm1')).toMatch(/not an esnap task id/);
    expect(refusal('receive dataset tank vm1 is-4')).toMatch(/not an esnap task id/);
    expect(refusal(`receive dataset ${TASK} tank vm1 pool@x`)).toMatch(/characters esnap never sends/);
    expect(refusal(`receive dataset ${TASK} tank vm1 foo`)).toMatch(/not an esnap snapshot id/);
    expect(refusal(`receive dataset ${TASK} tank vm1 is-4 extra`)).toMatch(/too many words/);
    expect(refusal('send tar tank vm1 es-1')).toMatch(/send takes "dataset" or "image"/);
  });
});

describe('ssh addresses and trust files', () => {
  it('parses [user@]host[:port] and refuses what ssh could misread', () => {
    expect(parseSshAddress('node1')).toEqual({ user: 'esnap', host: 'node1', port: 22 });
    expect(parseSshAddress('root@127.0.0.1:2222')).toEqual({ user: 'root', host: '127.0.0.1', port: 2222 });
    expect(parseSshAddress('[::1]:22')).toEqual({ user: 'esnap', host: '::1', port: 22 });
    for (const bad of ['-oProxyCommand=x', 'a b', 'node*', 'x@y@z', 'node:0', 'node:70000', 'Root@node', '']) expect(parseSshAddress(bad)).toBeNull();
    expect(knownHostsName(parseSshAddress('n:2222')!)).toBe('[n]:2222');
    expect(knownHostsName(parseSshAddress('n')!)).toBe('n');
  });

  it('writes authorized keys with restrict and the forced command only, and pinned known hosts', () => {
    const cmd = forcedCommand('/usr/bin/node', '/opt/esnap/dist/src/bin/esnap-ssh-serve.js', '/var/lib/esnap/ssh');
    expect(cmd).toBe('/usr/bin/node /opt/esnap/dist/src/bin/esnap-ssh-serve.js /var/lib/esnap/ssh/serve.json');
    const text = authorizedKeysText([{ node: 'bkp1', publicKey: `${KEY} comment` }, { node: 'evil', publicKey: 'ssh-rsa AAAA' }], cmd);
    expect(text).toBe(`restrict,command="${cmd}" ${KEY} esnap-backup@bkp1\n`);
    expect(knownHostsText([{ node: 'n1', address: 'esnap@n1.example:2222', hostKey: KEY }, { node: 'n2', address: '-oX', hostKey: KEY }])).toBe(`[n1.example]:2222 ${KEY}\n`);
    expect(() => forcedCommand('/usr/bin/node', '/opt/my esnap/esnap.js', '/x')).toThrow(TrustFileError);
    expect(() => forcedCommand('/usr/bin/node', '/opt/esnap/"; sh; "', '/x')).toThrow(TrustFileError);
    expect(normalizePublicKey(`${KEY}\n`)).toBe(KEY);
    expect(normalizePublicKey('ssh-ed25519 AAAA')).toBeNull();
  });

  it('ssh pins host keys and uses the agent key only; it never sends a request the forced command would refuse', () => {
    const argv = sshArgv('/var/lib/esnap/ssh', parseSshAddress('esnap@n1:2222')!, ['send', 'dataset', 'tank', 'vm1', 'is-2', 'is-1']);
    expect(argv).toContain('StrictHostKeyChecking=yes');
    expect(argv).toContain('UserKnownHostsFile=/var/lib/esnap/ssh/known_hosts');
    expect(argv).toContain('IdentitiesOnly=yes');
    expect(argv.slice(-3)).toEqual(['--', 'n1', 'send dataset tank vm1 is-2 is-1']);
    expect(() => sshArgv('/d', parseSshAddress('n1')!, ['send', 'image', 'tank', '/etc/passwd', 'es-1'])).toThrow(ServeRefusal);
  });
});
