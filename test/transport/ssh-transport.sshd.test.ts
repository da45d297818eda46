/**
 * The SSH transport between two nodes for real: a private sshd on a loopback port with its own
 * host key reads the source agent's authorized_keys (`Match User`, as the README tells a host's
 * sshd); the source and backup agents' SSH sides (keys made by ssh-keygen, the host key read by
 * ssh-keyscan, trust applied from a trust set as the servers send it); the forced command is the
 * built `esnap ssh-serve`.
 *
 * - Security: a shell, other commands, paths outside the node's storages, a receive no restore task
 *   announced, and a key the node never authorized are all refused.
 * - Type 1 on zfs-fuse and on btrfs: a full backup, then an incremental one after a change, over
 *   SSH; the received images' SHA-256 equal the source snapshots'. A rollback that destroyed the
 *   base makes the next backup full, and says so; so does a chain that no longer holds the base.
 * - Restore of a dataset backup over SSH into a disk of the same driver (`receive dataset`, the
 *   disk's dataset or subvolume replaced by the native stream): refused unannounced; a stream cut off mid-way, and the backup
 *   node's agent (a stand-in process that pipes the stream through itself) SIGKILLed mid-stream,
 *   leave the old bytes and snapshots and nothing aside; a whole one gives the backup's bytes (zfs:
 *   no snapshots left, they were in the old dataset; btrfs: the disk's snapshots stay).
 * - sshd stopped mid-transfer: the pull fails with a clear error and nothing half-received is listed.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readdir, stat, writeFile } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import type { StorageConfig } from '../../src/storage/drivers.js';
import { ZfsDriver } from '../../src/storage/zfs/zfs.driver.js';
import { BtrfsDriver } from '../../src/storage/btrfs/btrfs.driver.js';
import type { StorageDriver } from '../../src/storage/driver.js';
import { AgentSsh } from '../../src/transport/agent-ssh.js';
import { parseSshAddress, type SshAddress } from '../../src/transport/ssh-address.js';
import { sshArgv } from '../../src/transport/ssh-client.js';
import { chainSendArgv, imageChecksum, pullDataset, TransferError, type PullRequest } from '../../src/transport/dataset-backup.js';
import { SshTransfer } from '../../src/transport/ssh-transfer.js';
import { nativeSnapshot } from '../../src/transport/native-streams.js';
import type { TrustSet } from '../../src/transport/trust-files.js';
import { announce } from '../../src/transport/announcements.js';
import { OpScope, runInScope } from '../../src/storage/op-scope.js';

import { useTempDirs } from '../helpers/temp-dirs.js';
import { platformUnavailable } from '../platform/require.js';
import { startSshd, sshdUnavailable, waitForProcessesGone, type PrivateSshd } from '../platform/sshd.js';
import { makeZfsPool, zfsUnavailable, type ZfsPool } from '../platform/zfs.js';
import { loopFsUnavailable, makeLoopFs, type LoopFs } from '../platform/loopfs.js';

const MiB = 1024 * 1024;
const runner = new NodeCommandRunner();
const log = createLogger({ level: 'silent' });
const TASK = '1e1u1-6f75849b-1a2b-3c4d-5e6f';
/** The forced command's entry as built by tsc. */
const SSH_SERVE_BIN = join(process.cwd(), 'dist/src/bin/esnap-ssh-serve.js');

interface Pair {
  sshd: PrivateSshd;
  source: AgentSsh;
  backup: AgentSsh;
  address: SshAddress;
}

/** A source node (behind the private sshd) and a backup node, trusting each other as the servers would make them. */
async function makePair(dir: string, storages: readonly StorageConfig[]): Promise<Pair> {
  const srcDir = join(dir, 'source-ssh');
  const sshd = await startSshd({ dir: join(dir, 'sshd'), authorizedKeysFile: join(srcDir, 'authorized_keys') });
  const address = parseSshAddress(`${sshd.user}@127.0.0.1:${sshd.port}`)!;
  // A receive nobody announced is refused after a short wait here (the default waits 30 s for a late announcement).
  const source = await AgentSsh.start(runner, { dir: srcDir, node: 'source', address, storages, serveScript: SSH_SERVE_BIN, announceWaitMs: 300 }, log);
  // The backup node's own sshd is not part of this test: its host key is given as a file.
  const bkpDir = join(dir, 'backup-ssh');
  const backup = await AgentSsh.start(runner, { dir: bkpDir, node: 'backup', address: parseSshAddress('root@127.0.0.1:1')!, storages: [], serveScript: SSH_SERVE_BIN }, log);
  // ssh-keyscan of ESNAP_NODE_ADDRESS found the private sshd's own host key.
  expect(source.registration.hostKey).toBe(sshd.hostKey);
  const trust: TrustSet = {
    backupKeys: [{ node: 'backup', publicKey: backup.registration.publicKey }],
    hosts: [{ node: 'source', address: source.registration.address, hostKey: source.registration.hostKey! }],
  };
  for (const side of [source, backup]) await side.control({ kind: 'trust', taskId: '', payload: trust });
  expect(backup.addressOf('source')).toEqual(address);
  return { sshd, source, backup, address };
}

/** Runs `command` (raw, as a client could send anything) with the backup node's key; null: no command (a shell). */
async function sshRaw(p: Pair, command: string | null, sshDir = p.backup.dir) {
  const argv = sshArgv(sshDir, p.address, ['snapshot', 'x', 'x', 'is-1']);
  argv.pop();
  if (command !== null) argv.push(command);
  return runner.run(argv, { timeoutMs: 60_000 });
}

async function sha256(path: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(path), h);
  return h.digest('hex');
}

/** Writes `bytes` of random data at each offset (MiB) into the image. */
async function scribble(image: string, offsetsMb: readonly number[], bytes = MiB): Promise<void> {
  const fh = await open(image, 'r+');
  try {
    for (const o of offsetsMb) await fh.write(randomBytes(bytes), 0, bytes, o * MiB);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

interface Backend {
  readonly name: string;
  unavailable(): Promise<string | null>;
  /** Source and backup storages on one real filesystem/pool. */
  make(dir: string): Promise<{
    source: StorageConfig;
    target: StorageConfig;
    driver: StorageDriver;
    /** Text in the command line of every process that uses this storage (its pool, its mountpoint). */
    marker: string;
    image(disk: string): Promise<string>;
    listed(chain: string): Promise<string[]>;
    cleanup(): Promise<void>;
  }>;
}

const zfsBackend: Backend = {
  name: 'zfs-fuse dataset',
  async unavailable() {
    return (await sshdUnavailable()) ?? (await zfsUnavailable());
  },
  async make() {
    const pool: ZfsPool = await makeZfsPool(640);
    for (const ds of ['src', 'bkp']) await runner.run(['zfs', 'create', `${pool.name}/${ds}`]);
    const driver = new ZfsDriver({ dataset: `${pool.name}/src`, runner });
    await driver.init();
    return {
      source: { name: 'tank', driver: 'zfs', dataset: `${pool.name}/src` },
      target: { name: 'backups', driver: 'zfs', dataset: `${pool.name}/bkp` },
      driver,
      marker: pool.name,
      image: (disk) => driver.imagePathOf({ path: disk }),
      async listed(chain) {
        const r = await runner.run(['zfs', 'list', '-H', '-r', '-t', 'snapshot', '-o', 'name', `${pool.name}/bkp`]);
        return r.stdout.split('\n').filter((l) => l.includes(`/${chain}@`)).map((l) => l.split('@')[1]!);
      },
      async cleanup() {
        // zfs-fuse may still be winding down the receive that a stopped sshd cut (its daemon, not a
        // process of ours): "pool is busy" for a while. The datasets go first, retried, then the pool.
        for (const ds of ['bkp', 'src']) {
          for (let i = 0; i < 120; i++) {
            const r = await runner.run(['zfs', 'destroy', '-r', `${pool.name}/${ds}`]);
            if (r.code === 0 || /does not exist/.test(r.stderr)) break;
            await new Promise((res) => setTimeout(res, 500));
          }
        }
        await pool.cleanup();
      },
    };
  },
};

const btrfsBackend: Backend = {
  name: 'btrfs subvolume',
  async unavailable() {
    return (await sshdUnavailable()) ?? (await loopFsUnavailable('btrfs'));
  },
  async make() {
    const fs: LoopFs = await makeLoopFs('btrfs', 700);
    const driver = new BtrfsDriver({ root: join(fs.mountpoint, 'src'), runner });
    await driver.init();
    return {
      source: { name: 'tank', driver: 'btrfs', root: join(fs.mountpoint, 'src') },
      target: { name: 'backups', driver: 'btrfs', root: join(fs.mountpoint, 'bkp') },
      driver,
      marker: fs.mountpoint,
      image: async (disk) => join(fs.mountpoint, 'src', disk, 'disk.img'),
      listed: async (chain) => (await readdir(join(fs.mountpoint, 'bkp', chain)).catch(() => [])).sort(),
      cleanup: () => fs.cleanup(),
    };
  },
};

for (const backend of [zfsBackend, btrfsBackend]) {
  describe(`SSH transport, type 1 on a ${backend.name}`, async () => {
    const reason = await backend.unavailable();
    if (reason !== null) return platformUnavailable(`SSH transport on ${backend.name}`, reason);
    const tempDir = useTempDirs();
    let pair: Pair;
    let env: Awaited<ReturnType<Backend['make']>>;
    const disk = 'vm1-disk0';

    beforeAll(async () => {
      env = await backend.make(await tempDir('esnap-transport-'));
      pair = await makePair(await tempDir('esnap-transport-ssh-'), [env.source]);
      await env.driver.createDisk({ path: disk, sizeBytes: 160 * MiB });
    }, 120_000);
    afterAll(async () => {
      await pair?.sshd.stop();
      // The forced command of a cut transfer may still be ending; the pool cannot go while it reads.
      if (env) await waitForProcessesGone([env.marker, ...(pair ? [pair.source.dir] : [])]);
      await env?.cleanup();
    });

    const pull = (over: Partial<PullRequest>): Promise<Awaited<ReturnType<typeof pullDataset>>> =>
      pullDataset(runner, {
        source: { kind: 'ssh', address: pair.address, sshDir: pair.backup.dir, storage: 'tank' },
        disk,
        snapshot: 'is-1',
        base: null,
        target: env.target,
        chain: null,
        newChain: 'vm1-0-1',
        ...over,
      });

    it('refuses a shell, other commands, paths outside the storages and an unannounced receive', async () => {
      const shell = await sshRaw(pair, null);
      expect(shell.code, shell.stderr + pair.sshd.log()).toBe(2);
      expect(shell.stderr).toMatch(/esnap: refused: this key runs esnap's send and receive only, not a shell/);
      for (const [command, says] of [
        ['bash -i', /"bash" is not a command of this key/],
        ['zfs destroy -r tank', /not a command of this key/],
        ['send image tank vm1-disk0 es-1; cat /etc/shadow', /characters esnap never sends/],
        ['send image tank ../../../etc/shadow es-1', /not a disk path inside a storage/],
        ['send dataset elsewhere vm1-disk0 es-1', /no storage "elsewhere" on this node/],
        [`receive ${TASK} tank ${disk}`, /no restore task .* was announced to this node/],
      ] as const) {
        const r = await sshRaw(pair, command);
        expect(r.code, command).toBe(2);
        expect(r.stderr, command).toMatch(says);
      }
      // An announced restore of another disk does not open this one.
      await announce(pair.source.serveConfig.announcedDir, { taskId: TASK, storage: 'tank', disk: 'other-disk', sizeBytes: MiB, until: new Date(Date.now() + 3600_000).toISOString() });
      expect((await sshRaw(pair, `receive ${TASK} tank ${disk}`)).code).toBe(2);
      // A bound, not a timing: eight logins, each starting Node (~1 s apiece on a loaded CI machine).
    }, 120_000);

    it('refuses a key the node never authorized', async () => {
      const stranger = await AgentSsh.start(runner, { dir: await tempDir('esnap-stranger-'), node: 'stranger', address: parseSshAddress('root@127.0.0.1:1')!, storages: [], serveScript: SSH_SERVE_BIN }, log);
      await stranger.control({ kind: 'trust', taskId: '', payload: { backupKeys: [], hosts: [{ node: 'source', address: pair.source.registration.address, hostKey: pair.sshd.hostKey }] } });
      const r = await sshRaw(pair, 'send image tank vm1-disk0 es-1', stranger.dir);
      expect(r.code).toBe(255);
      expect(r.stderr).toMatch(/Permission denied/);
    });

    it('backs up full, then incremental after a change; checksums equal; a rollback that destroyed the base makes the next one full', async () => {
      const image = await env.image(disk);
      await scribble(image, [0, 20, 40, 60, 80, 100, 120, 140]);
      await env.driver.create({ path: disk }, 'es-5', { name: 'before' });
      // The backup's source snapshot, taken through the forced command (is- ids only).
      expect((await sshRaw(pair, `snapshot tank ${disk} is-1`)).code).toBe(0);
      const first = await pull({});
      expect(first).toMatchObject({ full: true, detail: '', chain: 'vm1-0-1' });
      expect(first.checksum).toBe(await sha256(image));
      expect(first.bytes).toBeGreaterThan(8 * MiB);

      await scribble(image, [10], MiB);
      expect((await sshRaw(pair, `snapshot tank ${disk} is-2`)).code).toBe(0);
      const second = await pull({ snapshot: 'is-2', base: 'is-1', chain: 'vm1-0-1', newChain: 'vm1-0-2' });
      expect(second).toMatchObject({ full: false, chain: 'vm1-0-1' });
      expect(second.checksum).toBe(await sha256(image));
      expect(second.bytes).toBeLessThan(first.bytes / 4);
      expect(await env.listed('vm1-0-1')).toEqual(['is-1', 'is-2']);
      // The older base is released on the source; the newest stays for the next incremental.
      expect((await sshRaw(pair, `release tank ${disk} is-1`)).code).toBe(0);
      expect((await env.driver.list({ path: disk })).map((s) => s.id).sort()).toEqual(['es-5', 'is-2']);

      // A rollback to es-5: on zfs it destroys is-2 (rollback -r); on btrfs the base survives a rollback, so it is removed by hand.
      await env.driver.rollback({ path: disk }, 'es-5');
      if (backend === btrfsBackend) await runner.run(['btrfs', 'subvolume', 'delete', nativeSnapshot(env.source, disk, 'is-2')]);
      expect((await env.driver.list({ path: disk })).map((s) => s.id)).toEqual(['es-5']);
      expect((await sshRaw(pair, `snapshot tank ${disk} is-3`)).code).toBe(0);
      const third = await pull({ snapshot: 'is-3', base: 'is-2', chain: 'vm1-0-1', newChain: 'vm1-0-3' });
      expect(third).toMatchObject({ full: true, chain: 'vm1-0-3' });
      expect(third.detail).toMatch(/base is-2 is no longer on the source disk \(a rollback destroyed it\): full backup/);
      expect(third.checksum).toBe(await sha256(image));

      // A chain that does not hold the base (its backup deleted by hand): the incremental is refused by the
      // receive (zfs: only then is the chain looked at), and a full stream goes into a new chain; the chain is untouched.
      expect((await sshRaw(pair, `snapshot tank ${disk} is-6`)).code).toBe(0);
      const fourth = await pull({ snapshot: 'is-6', base: 'is-3', chain: 'vm1-0-1', newChain: 'vm1-0-6' });
      expect(fourth).toMatchObject({ full: true, chain: 'vm1-0-6', detail: 'base is-3 is not in the backup storage: full backup' });
      expect(fourth.checksum).toBe(await sha256(image));
      expect(await env.listed('vm1-0-1')).toEqual(['is-1', 'is-2']);
    }, 300_000);

    it('restores a dataset backup over SSH by a native stream: unannounced refused, cut off keeps the old disk, whole replaces it', async () => {
      const transfer = new SshTransfer(runner, pair.backup.dir, 'source', pair.address);
      const dst = { path: 'vm2-disk0', sizeBytes: 160 * MiB };
      await env.driver.createDisk(dst);
      const dstImage = await env.image(dst.path);
      await scribble(dstImage, [1, 30, 90]);
      await env.driver.create({ path: dst.path }, 'es-7', { name: 'mine' });
      const old = await sha256(dstImage);
      const backupSum = await imageChecksum(runner, env.target, 'vm1-0-3', 'is-3');
      const end = { node: 'source', storage: 'tank', disk: dst };
      const send = chainSendArgv(env.target, 'vm1-0-3', 'is-3');
      // `onSent`: what runs once the whole stream is sent, after the transfer's own onStreamSent.
      const feed = (producer: readonly string[], onSent?: () => void) => async (consumer: readonly string[], opts?: { readonly onStreamSent?: () => void }) => {
        const onProducerDone = onSent
          ? (): void => {
              opts?.onStreamSent?.();
              onSent();
            }
          : undefined;
        const r = await runner.pipe!(producer, consumer, { timeoutMs: 300_000, onProducerDone });
        if (r.producer.code !== 0 || r.consumer.code !== 0) throw new Error(`exit ${r.producer.code}/${r.consumer.code}: ${r.consumer.stderr.trim()}`);
      };
      const unchanged = async (): Promise<void> => {
        expect(await sha256(dstImage)).toBe(old);
        expect((await env.driver.list({ path: dst.path })).map((x) => x.id)).toEqual(['es-7']);
        expect(await leftovers()).toEqual([]);
      };
      // What a replacement leaves aside while it runs: zfs's renamed dataset, btrfs's swap and receive folders.
      const leftovers = async (): Promise<string[]> => {
        if (backend === zfsBackend) return (await runner.run(['zfs', 'list', '-H', '-r', '-o', 'name', env.source.dataset!])).stdout.split('\n').filter((n) => /-esnap-restore-/.test(n));
        const root = env.source.root!;
        return [...(await readdir(root)).filter((n) => /\.esnap-(new|old)$/.test(n)), ...(await readdir(join(root, '.esnap-receive')).catch(() => []))];
      };

      const unannounced = await transfer.receiveDataset(end, TASK, 'is-3', feed(send)).catch((err: unknown) => err as Error);
      expect(unannounced).toBeInstanceOf(Error);
      expect((unannounced as Error).message).toMatch(/no restore task .* was announced to this node/);
      await unchanged();

      await announce(pair.source.serveConfig.announcedDir, { taskId: TASK, storage: 'tank', disk: dst.path, sizeBytes: dst.sizeBytes, until: new Date(Date.now() + 3600_000).toISOString() });
      // The stream cut off after its first half: zfs recv refuses it, the old dataset comes back.
      const stream = join(await tempDir('esnap-stream-'), 'backup.zstream');
      const out = await open(stream, 'w');
      const saved = await runner.spawn!(send, { stdoutTo: out.fd, timeoutMs: 300_000 }).done;
      await out.close();
      expect(saved.code, saved.stderr).toBe(0);
      const half = Math.floor((await stat(stream)).size / 2);
      const cut = await transfer.receiveDataset(end, TASK, 'is-3', feed(['head', '-c', String(half), stream])).catch((err: unknown) => err as Error);
      expect(cut).toBeInstanceOf(Error);
      await unchanged();

      // The backup node's agent killed mid-stream: a process that pipes `zfs send` into ssh (as the agent
      // does, the bytes through it, slowly here so that the kill lands mid-way) is SIGKILLed; its commands
      // run on (as an agent's do, in groups of their own), but ssh's stdin ends: the receive sees a cut
      // stream and puts the old dataset back.
      const agentScript = join(await tempDir('esnap-agent-'), 'agent.mjs');
      await writeFile(
        agentScript,
        [
          "import { spawn } from 'node:child_process';",
          'const [send, consumer] = JSON.parse(process.argv[2]);',
          "const p = spawn(send[0], send.slice(1), { stdio: ['ignore', 'pipe', 'ignore'], detached: true });",
          "const c = spawn(consumer[0], consumer.slice(1), { stdio: ['pipe', 'ignore', 'ignore'], detached: true });",
          'let n = 0;',
          "p.stdout.on('data', (chunk) => {",
          '  p.stdout.pause();',
          '  c.stdin.write(chunk);',
          "  if ((n += chunk.length) > 2 * 1024 * 1024) process.stdout.write('flowing\\n');",
          '  setTimeout(() => p.stdout.resume(), 100);',
          '});',
        ].join('\n'),
      );
      const agent = spawn(process.execPath, [agentScript, JSON.stringify([send, transfer.receiveDatasetArgv(end, TASK, 'is-3')])], { stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((res, rej) => {
        agent.stdout.on('data', () => res());
        agent.on('exit', (code) => rej(new Error(`the stand-in agent ended (${code}) before the stream flowed`)));
      });
      agent.kill('SIGKILL');
      await waitForProcessesGone([pair.source.dir, pair.backup.dir, agentScript], 120_000);
      await unchanged();

      // The whole stream, in a task's scope: a cancel once all of it is sent (the node still receiving and
      // replacing the disk, out of this side's reach) answers 'committed', and the restore runs to its end.
      const scope = new OpScope();
      let answer: string | null = null;
      await runInScope(scope, () =>
        transfer.receiveDataset(
          end,
          TASK,
          'is-3',
          feed(send, () => {
            answer = scope.cancel();
          }),
        ),
      );
      expect(answer).toBe('committed');
      expect(await sha256(dstImage)).toBe(backupSum);
      // zfs: the snapshots went with the old dataset; btrfs: they are subvolumes of their own and stay.
      expect((await env.driver.list({ path: dst.path })).map((x) => x.id)).toEqual(backend === zfsBackend ? [] : ['es-7']);
      expect(await leftovers()).toEqual([]);
    }, 300_000);

    it('sshd stopped mid-transfer: a clear error, nothing half-received listed', async () => {
      const image = await env.image(disk);
      await scribble(image, Array.from({ length: 150 }, (_, i) => i), MiB);
      expect((await sshRaw(pair, `snapshot tank ${disk} is-4`)).code).toBe(0);
      let stopping: Promise<void> | null = null;
      const failed = await pull({
        snapshot: 'is-4',
        newChain: 'vm1-0-4',
        onProgress: (bytes) => {
          if (bytes > 4 * MiB) stopping ??= pair.sshd.stop();
        },
      }).catch((err: unknown) => err);
      await stopping;
      expect(stopping).not.toBeNull();
      expect(failed).toBeInstanceOf(TransferError);
      expect((failed as Error).message).toMatch(/Transfer of is-4 of disk vm1-disk0 from 127\.0\.0\.1:\d+ failed: ssh to 127\.0\.0\.1:\d+ failed \(connection lost or refused\)/);
      expect(await env.listed('vm1-0-4')).toEqual([]);
    }, 300_000);
  });
}
