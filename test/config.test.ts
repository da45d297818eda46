import { describe, expect, it } from 'vitest';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir, hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { loadConfig, ConfigError } from '../src/config.js';

describe('configuration', () => {
  it('has the documented defaults', () => {
    const c = loadConfig({});
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 8000 });
    expect(c.dataDir).toBe(resolve('./data'));
    expect(c.databaseUrl).toBe(`sqlite:${join(resolve('./data'), 'esnap.db')}`);
    expect(c.node).toBe(hostname());
    expect(c.storages).toEqual([{ name: 'default', driver: 'file', root: join(resolve('./data'), 'storage') }]);
    expect(c.localAgent).toBe(true);
    expect(c.streamTimeoutS).toBe(3600);
    expect(c.freezeLimitS).toBe(60);
    expect(c.stopGraceS).toBe(30);
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('reads storages from ESNAP_STORAGES and from the ESNAP_CONFIG file, variables winning', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'esnap-config-'));
    const file = join(dir, 'esnap.json');
    await writeFile(file, JSON.stringify({ storages: [{ name: 'fast', driver: 'file', root: '/srv/fast' }], listen: '0.0.0.0:9000', node: 'filenode' }));
    const fromFile = loadConfig({ ESNAP_CONFIG: file });
    expect(fromFile.storages).toEqual([{ name: 'fast', driver: 'file', root: '/srv/fast' }]);
    expect(fromFile.listen).toEqual({ host: '0.0.0.0', port: 9000 });
    expect(fromFile.node).toBe('filenode');
    const both = loadConfig({
      ESNAP_CONFIG: file,
      ESNAP_NODE: 'envnode',
      ESNAP_STORAGES: '[{"name":"default","driver":"file","root":"/srv/esnap"},{"name":"tank","driver":"zfs","dataset":"tank/vms"}]',
    });
    expect(both.node).toBe('envnode');
    expect(both.storages).toEqual([
      { name: 'default', driver: 'file', root: '/srv/esnap' },
      { name: 'tank', driver: 'zfs', dataset: 'tank/vms' },
    ]);
  });

  it('fails loudly on bad values', () => {
    expect(() => loadConfig({ ESNAP_STORAGES: '[{' })).toThrow(ConfigError);
    expect(() => loadConfig({ ESNAP_STORAGES: '[]' })).toThrow(/non-empty/);
    expect(() => loadConfig({ ESNAP_STORAGES: '[{"name":"a b","driver":"file"}]' })).toThrow(/name/);
    expect(() => loadConfig({ ESNAP_STORAGES: '[{"name":"a","driver":"file"},{"name":"a","driver":"file"}]' })).toThrow(/twice/);
    expect(() => loadConfig({ ESNAP_LISTEN: 'nohost' })).toThrow(/ESNAP_LISTEN/);
    expect(() => loadConfig({ ESNAP_DATABASE_URL: 'mysql://x' })).toThrow(/ESNAP_DATABASE_URL/);
    expect(() => loadConfig({ ESNAP_ADMIN_API_KEY: 'short' })).toThrow(/16/);
    expect(() => loadConfig({ ESNAP_LOCAL_AGENT: 'maybe' })).toThrow(/ESNAP_LOCAL_AGENT/);
    expect(() => loadConfig({ ESNAP_NODE: 'bad node' })).toThrow(/ESNAP_NODE/);
    expect(() => loadConfig({ ESNAP_CONFIG: '/nonexistent/esnap.json' })).toThrow(ConfigError);
    expect(() => loadConfig({ ESNAP_FREEZE_LIMIT_S: '0' })).toThrow(/ESNAP_FREEZE_LIMIT_S must be a positive number of seconds/);
    expect(loadConfig({ ESNAP_FREEZE_LIMIT_S: '2.5' }).freezeLimitS).toBe(2.5);
  });
});
