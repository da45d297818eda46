/**
 * An agent's SSH side remembers where the other nodes' sshd are across a restart (hosts.json in
 * its SSH folder, written with each trust set): a backup node's agent killed mid-backup runs the
 * cleanup of that backup before the servers' next trust set reaches it, and must still reach the
 * source node (test/backups/backup.cluster-faults.test.ts, the end-to-end case).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import { AgentSsh } from '../../src/transport/agent-ssh.js';
import { parseSshAddress } from '../../src/transport/ssh-address.js';
import { HOSTS_FILE } from '../../src/transport/trust-files.js';
import { useTempDirs } from '../helpers/temp-dirs.js';

const runner = new NodeCommandRunner();
const log = createLogger({ level: 'silent' });
const HOST_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl';

describe('agent SSH side: the trusted hosts survive a restart', () => {
  const tempDir = useTempDirs();

  const start = async (dir: string): Promise<AgentSsh> => {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    // The node's own host key as a file: no ssh-keyscan.
    await writeFile(join(dir, 'host_key.pub'), `${HOST_KEY} root@backup\n`);
    return AgentSsh.start(runner, { dir, node: 'backup1', address: parseSshAddress('root@127.0.0.1:1')!, storages: [], serveScript: '/usr/lib/esnap/esnap-ssh-serve.js' }, log);
  };

  it('a restarted side knows the addresses of the last trust set before any new one arrives', async () => {
    const dir = join(await tempDir('esnap-trust-hosts-'), 'ssh');
    const first = await start(dir);
    expect(first.addressOf('compute1')).toBeNull();
    await first.control({
      kind: 'trust',
      taskId: '',
      payload: {
        backupKeys: [],
        hosts: [
          { node: 'compute1', address: 'esnap@compute1.example:2222', hostKey: HOST_KEY },
          { node: 'bad node', address: 'esnap@x', hostKey: HOST_KEY },
          { node: 'compute2', address: 'not an address!', hostKey: HOST_KEY },
        ],
      },
    });
    expect(first.addressOf('compute1')).toEqual(parseSshAddress('esnap@compute1.example:2222'));
    expect(JSON.parse(await readFile(join(dir, HOSTS_FILE), 'utf8'))).toEqual([{ node: 'compute1', address: 'esnap@compute1.example:2222' }]);

    const again = await start(dir);
    expect(again.addressOf('compute1')).toEqual(parseSshAddress('esnap@compute1.example:2222'));
    expect(again.addressOf('compute2')).toBeNull();

    // The next trust set replaces them.
    await again.control({ kind: 'trust', taskId: '', payload: { backupKeys: [], hosts: [] } });
    expect(again.addressOf('compute1')).toBeNull();
    expect((await start(dir)).addressOf('compute1')).toBeNull();
  });

  it('an unreadable hosts file is no hosts, not a failed start', async () => {
    const dir = join(await tempDir('esnap-trust-hosts-'), 'ssh');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeFile(join(dir, HOSTS_FILE), '{not json');
    expect((await start(dir)).addressOf('compute1')).toBeNull();
    await writeFile(join(dir, HOSTS_FILE), JSON.stringify([{ node: 'compute1' }, 7, null, { node: 'compute3', address: 'root@c3' }]));
    const side = await start(dir);
    expect(side.addressOf('compute1')).toBeNull();
    expect(side.addressOf('compute3')).toEqual(parseSshAddress('root@c3'));
  });
});
