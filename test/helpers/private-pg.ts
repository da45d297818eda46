/**
 * A private PostgreSQL cluster for tests that must stop, restart or reconfigure the database
 * (initdb in a temp folder, its own port and socket folder, run as the postgres user). Optionally
 * TLS only: ssl=on with a given server certificate, and a pg_hba.conf that refuses unencrypted TCP.
 *
 * Needs the PostgreSQL server binaries (/usr/lib/postgresql/<v>/bin) and root (runuser).
 *
 * Example:
 *   if (privatePgUnavailable()) return platformUnavailable('…', privatePgUnavailable()!);
 *   const pgs = await PrivatePostgres.create({ tls: { certFile, keyFile } });
 *   const url = pgs.url('sslmode=verify-full&sslrootcert=…');
 *   …
 *   await pgs.destroy();
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chmod, chown, copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './esnap-process.js';

/** The newest installed PostgreSQL's bin folder, or null. */
function pgBinDir(): string | null {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return null;
  const versions = readdirSync(base).filter((v) => existsSync(join(base, v, 'bin', 'initdb'))).sort((x, y) => Number(y) - Number(x));
  return versions[0] ? join(base, versions[0], 'bin') : null;
}

const BIN_DIR = pgBinDir();

/** Why a private PostgreSQL cannot run here, or null when it can. */
export function privatePgUnavailable(): string | null {
  return BIN_DIR !== null && process.getuid?.() === 0 ? null : 'needs root, runuser and the PostgreSQL server binaries (initdb, pg_ctl)';
}

export interface PrivatePgOptions {
  /** Serve TLS with this certificate and key, and refuse unencrypted TCP connections. */
  tls?: { certFile: string; keyFile: string };
}

export class PrivatePostgres {
  private constructor(
    readonly dir: string,
    readonly port: number,
    private readonly tls: boolean,
  ) {}

  /** A URL on this server as user postgres; `query` is appended as is (sslmode, sslrootcert, …). */
  url(query = ''): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres${query ? `?${query}` : ''}`;
  }

  /** initdb, then start. */
  static async create(opts: PrivatePgOptions = {}): Promise<PrivatePostgres> {
    if (BIN_DIR === null) throw new Error(privatePgUnavailable()!);
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString());
    const dir = await mkdtemp(join(tmpdir(), 'esnap-pg-'));
    await chown(dir, uid, gid);
    const data = join(dir, 'data');
    runAsPostgres('initdb', '-D', data, '-A', 'trust', '-U', 'postgres');
    if (opts.tls) {
      // PostgreSQL refuses a key file readable by others, and one it does not own.
      for (const [src, dst] of [[opts.tls.certFile, 'server.pem'], [opts.tls.keyFile, 'server.key']] as const) {
        await copyFile(src, join(dir, dst));
        await chown(join(dir, dst), uid, gid);
        await chmod(join(dir, dst), 0o600);
      }
      // Unencrypted TCP is refused, so every connection that works went through TLS.
      await writeFile(join(data, 'pg_hba.conf'), 'local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n');
    }
    const pgs = new PrivatePostgres(dir, await freePort(), opts.tls !== undefined);
    pgs.start();
    return pgs;
  }

  start(): void {
    const opts = [`-p ${this.port}`, `-k ${this.dir}`, '-c listen_addresses=127.0.0.1'];
    if (this.tls) opts.push('-c ssl=on', `-c ssl_cert_file=${join(this.dir, 'server.pem')}`, `-c ssl_key_file=${join(this.dir, 'server.key')}`);
    this.#ctl('-o', opts.join(' '), '-l', join(this.dir, 'log'), '-w', 'start');
  }

  stop(): void {
    this.#ctl('-m', 'fast', '-w', 'stop');
  }

  /** Stops the server if it runs and removes its folder. */
  async destroy(): Promise<void> {
    try {
      this.stop();
    } catch {
      // already stopped
    }
    await rm(this.dir, { recursive: true, force: true });
  }

  #ctl(...args: string[]): void {
    runAsPostgres('pg_ctl', '-D', join(this.dir, 'data'), ...args);
  }
}

function runAsPostgres(tool: string, ...args: string[]): void {
  execFileSync('runuser', ['-u', 'postgres', '--', join(BIN_DIR!, tool), ...args], { stdio: 'pipe' });
}
