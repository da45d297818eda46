/**
 * restic's own locks against a real repository. A restic process killed with SIGKILL (a crashed
 * agent's child, ended by the next agent's start-up) leaves its lock file behind; restic 0.14 never
 * ignores such a lock, so a `forget --prune` (which takes the repository alone) would wait on it for
 * hours. esnap clears stale locks (`restic unlock`, which removes only locks whose process is gone
 * on this host or that are old) and goes on, while a live restic's lock is still waited for.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Restic, RESTIC_DIR } from '../../src/backups/restic.js';
import { NodeCommandRunner } from '../../src/storage/node-runner.js';
import { useTempDirs } from '../helpers/temp-dirs.js';
import { platformUnavailable } from '../platform/require.js';
import { resticUnavailable } from '../platform/restic.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('restic locks', async () => {
  const reason = await resticUnavailable();
  if (reason !== null) return platformUnavailable('restic lock tests need restic', reason);
  const tempDir = useTempDirs();

  async function repo(): Promise<{ restic: Restic; env: NodeJS.ProcessEnv; locks: () => Promise<string[]> }> {
    const dir = await tempDir('esnap-restic-locks-');
    const restic = new Restic({ runner: new NodeCommandRunner(), storageRoot: join(dir, 'storage'), storageName: 'backup', keysDir: join(dir, 'keys') });
    await restic.ensure();
    const env = { ...process.env, RESTIC_REPOSITORY: join(dir, 'storage', RESTIC_DIR), RESTIC_PASSWORD_FILE: join(dir, 'keys', 'backup.restic-password') };
    return { restic, env, locks: () => readdir(join(dir, 'storage', RESTIC_DIR, 'locks')) };
  }
  function snapshotIds(env: NodeJS.ProcessEnv): string[] {
    return (JSON.parse(execFileSync('restic', ['snapshots', '--json', '--no-lock'], { env }).toString() || '[]') as Array<{ id: string }>).map((s) => s.id);
  }
  /** A `restic backup --stdin` that has taken its lock and waits for more input. */
  async function lockHolder(env: NodeJS.ProcessEnv, locks: () => Promise<string[]>): Promise<ChildProcess> {
    const child = spawn('restic', ['backup', '--quiet', '--stdin', '--stdin-filename', 'x'], { env, stdio: ['pipe', 'ignore', 'ignore'] });
    child.stdin!.write(Buffer.alloc(1024, 1));
    for (let i = 0; i < 600 && (await locks()).length === 0; i++) await sleep(50);
    expect(await locks()).toHaveLength(1);
    return child;
  }

  it('first uses at once make one password and one repository that both can read', async () => {
    const dir = await tempDir('esnap-restic-init-');
    const make = () => new Restic({ runner: new NodeCommandRunner(), storageRoot: join(dir, 'storage'), storageName: 'backup', keysDir: join(dir, 'keys') });
    await Promise.all([make().ensure(), make().ensure(), make().ensure()]);
    const env = { ...process.env, RESTIC_REPOSITORY: join(dir, 'storage', RESTIC_DIR), RESTIC_PASSWORD_FILE: join(dir, 'keys', 'backup.restic-password') };
    execFileSync('restic', ['backup', '--quiet', '--stdin', '--stdin-filename', 'a'], { env, input: Buffer.alloc(4096, 7) });
    expect(snapshotIds(env)).toHaveLength(1);
    expect(await readdir(join(dir, 'storage', RESTIC_DIR, 'keys'))).toHaveLength(1);
  }, 60_000);

  it('a forget goes on past the lock of a restic process that was killed', async () => {
    const { restic, env, locks } = await repo();
    execFileSync('restic', ['backup', '--quiet', '--stdin', '--stdin-filename', 'a'], { env, input: Buffer.alloc(4096, 7) });
    const [id] = snapshotIds(env);
    const holder = await lockHolder(env, locks);
    holder.kill('SIGKILL');
    await new Promise((r) => holder.once('exit', r));
    expect(await locks()).toHaveLength(1); // the stale lock stays behind

    await restic.forget([id!]);
    expect(snapshotIds(env)).toEqual([]);
    expect(await locks()).toEqual([]);
  }, 60_000);

  it('a forget still waits for a live restic, and runs once it has ended', async () => {
    const { restic, env, locks } = await repo();
    execFileSync('restic', ['backup', '--quiet', '--stdin', '--stdin-filename', 'a'], { env, input: Buffer.alloc(4096, 7) });
    const [id] = snapshotIds(env);
    const holder = await lockHolder(env, locks);
    let forgotten = false;
    const forget = restic.forget([id!]).then(() => (forgotten = true));
    await sleep(5000); // two of forget's lock retries
    expect(forgotten).toBe(false);
    expect(snapshotIds(env)).toContain(id);
    holder.stdin!.end();
    await new Promise((r) => holder.once('exit', r));
    await forget;
    expect(snapshotIds(env)).not.toContain(id);
  }, 60_000);
});
