/**
 * A local stand-in for the download host of better-sqlite3's prebuilt binaries, serving the binary
 * this checkout compiled, for tests that run `npm ci` or `npm install` of esnap (no internet here,
 * and compiling better-sqlite3 again takes minutes). Point an install at it with the returned env:
 * better-sqlite3's install script (prebuild-install) then downloads from it as it would from GitHub.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const SQLITE_DIR = join(import.meta.dirname, '..', '..', 'node_modules', 'better-sqlite3');

export interface PrebuiltMirror {
  /** npm_config_better_sqlite3_binary_host, for the install's environment. */
  readonly env: Record<string, string>;
  /** Paths asked for, in order. */
  readonly requests: string[];
  close(): Promise<void>;
}

export async function startPrebuiltMirror(): Promise<PrebuiltMirror> {
  const version = (JSON.parse(readFileSync(join(SQLITE_DIR, 'package.json'), 'utf8')) as { version: string }).version;
  const dir = mkdtempSync(join(tmpdir(), 'esnap-prebuilt-'));
  // prebuild-install's layout: <host>/v<version>/better-sqlite3-v<version>-node-v<abi>-<platform>-<arch>.tar.gz
  const file = join(dir, `v${version}`, `better-sqlite3-v${version}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`);
  mkdirSync(join(dir, `v${version}`));
  const tar = spawnSync('tar', ['-czf', file, '-C', SQLITE_DIR, 'build/Release/better_sqlite3.node'], { encoding: 'utf8' });
  if (tar.status !== 0) throw new Error(`cannot pack the compiled better-sqlite3: ${tar.stderr}`);
  const requests: string[] = [];
  const server = createServer((req, res) => {
    requests.push(req.url ?? '');
    const path = join(dir, ...(req.url ?? '').split('/').filter((s) => s !== '' && s !== '..'));
    if (!existsSync(path)) return void res.writeHead(404).end();
    res.writeHead(200, { 'Content-Type': 'application/gzip' }).end(readFileSync(path));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    env: { npm_config_better_sqlite3_binary_host: `http://127.0.0.1:${(server.address() as AddressInfo).port}` },
    requests,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
