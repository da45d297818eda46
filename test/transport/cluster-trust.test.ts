/**
 * SSH trust in cluster mode, end to end on PostgreSQL: two agents (a compute node and a backup
 * node) register their SSH identity (keys made by ssh-keygen at their first start, host keys from
 * `<ssh dir>/host_key.pub`); the server records them (node.ssh_*, is_backup) and hands every node
 * the trust set as a control message; the compute node's authorized_keys then holds the backup
 * node's key, restricted to the forced command, and the backup node pins the compute node's host
 * key. A compute node's own key is authorized nowhere.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentRuntime } from '../../src/agent/agent-runtime.js';
import { silentLogger } from '../../src/runtime.js';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import { parseSshAddress } from '../../src/transport/ssh-address.js';
import { newClusterDb, startClusterServer, waitFor, type ClusterDb, type ClusterServer } from '../cluster/cluster.helpers.js';
import { useTempDirs } from '../helpers/temp-dirs.js';

const runner = new NodeCommandRunner();

async function hostKey(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  const r = await runner.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host')]);
  expect(r.code, r.stderr).toBe(0);
  const pub = (await readFile(join(dir, 'host.pub'), 'utf8')).trim().split(' ').slice(0, 2).join(' ');
  return pub;
}

const read = (path: string): Promise<string> => readFile(path, 'utf8').catch(() => '');

describe('cluster: SSH trust handed out by the servers', () => {
  const tempDir = useTempDirs();
  let db: ClusterDb;
  let server: ClusterServer;
  const agents: AgentRuntime[] = [];
  let dirs: { compute: string; backup: string };
  let keys: { compute: string; backup: string };

  beforeAll(async () => {
    db = await newClusterDb();
    server = await startClusterServer(db);
    const root = await tempDir('esnap-trust-');
    dirs = { compute: join(root, 'compute-ssh'), backup: join(root, 'backup-ssh') };
    keys = { compute: await hostKey(join(root, 'k1')), backup: await hostKey(join(root, 'k2')) };
    // The operator's copy of each sshd's host key: no keyscan, nothing crosses a network.
    for (const side of ['compute', 'backup'] as const) {
      await mkdir(dirs[side], { recursive: true, mode: 0o700 });
      await writeFile(join(dirs[side], 'host_key.pub'), `${keys[side]} root@host\n`);
    }
    for (const [node, side, backup, address] of [
      ['compute1', 'compute', false, 'esnap@compute1.example:2222'],
      ['backup1', 'backup', true, 'esnap@backup1.example'],
    ] as const) {
      const storage = join(root, `${side}-storage`);
      await mkdir(storage, { recursive: true });
      agents.push(
        await AgentRuntime.start({
          databaseUrl: db.agentUrl(),
          bossSchema: db.bossSchema,
          node,
          storages: [{ name: 'default', driver: 'file', root: storage }],
          heartbeatS: 1,
          log: silentLogger,
          ssh: { dir: dirs[side], address: parseSshAddress(address)! },
          backupNode: backup,
        }),
      );
    }
  }, 120_000);
  afterAll(async () => {
    for (const a of agents) await a.stop();
    await server?.close();
    await db?.drop();
  });

  it('records each node, authorizes the backup node on the compute node (forced command only) and pins host keys', async () => {
    const [compute, backup] = agents as [AgentRuntime, AgentRuntime];
    const rows = await waitFor('both nodes registered with SSH', async () => {
      const r = await db.query<{ hostname: string; is_backup: number; ssh_address: string | null; ssh_public_key: string | null; ssh_host_key: string | null }>(
        `SELECT hostname, is_backup, ssh_address, ssh_public_key, ssh_host_key FROM ${db.schema}.node ORDER BY hostname`,
      );
      return r.length === 2 && r.every((n) => n.ssh_public_key) ? r : null;
    });
    expect(rows).toEqual([
      { hostname: 'backup1', is_backup: 1, ssh_address: 'esnap@backup1.example:22', ssh_public_key: backup.ssh!.registration.publicKey, ssh_host_key: keys.backup },
      { hostname: 'compute1', is_backup: 0, ssh_address: 'esnap@compute1.example:2222', ssh_public_key: compute.ssh!.registration.publicKey, ssh_host_key: keys.compute },
    ]);

    const authorized = await waitFor('the compute node authorizes the backup node', async () => {
      const text = await read(join(dirs.compute, 'authorized_keys'));
      return text.includes(backup.ssh!.registration.publicKey) ? text : null;
    });
    const lines = authorized.trim().split('\n');
    // One entry: the backup node's key. The compute node's own key is authorized nowhere.
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^restrict,command="\/\S+ \/\S+\/esnap-ssh-serve\.js \S+\/compute-ssh\/serve\.json" ssh-ed25519 \S+ esnap-backup@backup1$/);
    expect(lines[0]).toContain(backup.ssh!.registration.publicKey);
    for (const side of ['compute', 'backup'] as const) expect(await read(join(dirs[side], 'authorized_keys'))).not.toContain(compute.ssh!.registration.publicKey);

    const known = await waitFor('the backup node pins the compute node', async () => {
      const text = await read(join(dirs.backup, 'known_hosts'));
      return text.includes(keys.compute) ? text : null;
    });
    expect(known).toBe(`backup1.example ${keys.backup}\n[compute1.example]:2222 ${keys.compute}\n`);
    expect(backup.ssh!.addressOf('compute1')).toEqual({ user: 'esnap', host: 'compute1.example', port: 2222 });
    // serve.json: what the forced command knows of its node.
    const serve = JSON.parse(await read(join(dirs.compute, 'serve.json'))) as { node: string; storages: Array<{ name: string }> };
    expect(serve.node).toBe('compute1');
    expect(serve.storages.map((s) => s.name)).toEqual(['default']);
  }, 60_000);
});
