/**
 * A restic killed with SIGKILL (its agent's process group killed mid-backup) leaves its lock file in
 * the repository. restic never ignores such a lock by itself, so a `forget --prune` (which takes the
 * repository alone) waited behind it for ever, and every backup of that storage behind the prune
 * (found by the chaos run with backups: a backup delete and a backup STARTED for minutes after an
 * agent kill). esnap now removes stale locks (`restic unlock`: only locks of processes on this
 * host that are gone, or older than 30 minutes) when it finds the repository locked.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { passwordFile, Restic } from '../../src/backups/restic.js';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import { sleep } from '../helpers/esnap-process.js';
import { platformUnavailable } from '../platform/require.js';
import { resticUnavailable } from '../platform/restic.js';

describe('restic: a stale lock of a killed restic', async () => {
  const reason = await resticUnavailable();
  if (reason !== null) return platformUnavailable('restic stale lock', reason);
  const dir = await mkdtemp(join(tmpdir(), 'esnap-restic-lock-'));
  afterAll(() => rm(dir, { recursive: true, force: true }));
  const keysDir = join(dir, 'keys');
  const restic = new Restic({ runner: new NodeCommandRunner(), storageRoot: join(dir, 'storage'), storageName: 'backup', keysDir });
  const env = { ...process.env, RESTIC_REPOSITORY: restic.repo, RESTIC_PASSWORD_FILE: passwordFile(keysDir, 'backup') };

  /** `restic backup --stdin` of `data`; with `hold`, stdin stays open (restic holds its lock) until killed. */
  const resticBackup = (data: string | null): { id: Promise<string>; kill: () => Promise<void> } => {
    const p = spawn('restic', ['backup', '--stdin', '--stdin-filename', 'x.img', '--json', '--quiet'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (b: Buffer) => (out += b.toString()));
    const closed = new Promise<number | null>((r) => p.on('close', r));
    if (data !== null) p.stdin.end(data);
    return {
      id: closed.then((code) => {
        const m = /"snapshot_id":"([0-9a-f]+)"/.exec(out);
        if (code !== 0 || !m) throw new Error(`restic backup exit ${code}: ${out}`);
        return m[1]!;
      }),
      kill: async () => {
        p.kill('SIGKILL');
        await closed;
      },
    };
  };

  it('a prune behind the lock of a SIGKILLed restic goes through', async () => {
    await restic.ensure();
    const id = await resticBackup('some bytes').id;
    // A backup that holds its (shared) lock, killed as a process group kill would.
    const held = resticBackup(null);
    held.id.catch(() => undefined);
    for (let i = 0; i < 300 && (await readdir(join(restic.repo, 'locks'))).length === 0; i++) await sleep(50);
    expect((await readdir(join(restic.repo, 'locks'))).length).toBe(1);
    await held.kill();
    // Before the fix this waited (the repository "locked") for up to 6 hours.
    await restic.forget([id]);
    expect((await restic.snapshots()).map((s) => s.id)).not.toContain(id);
    expect(await readdir(join(restic.repo, 'locks'))).toEqual([]);
  }, 60_000);
});
