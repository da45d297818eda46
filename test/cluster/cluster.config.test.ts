/**
 * Cluster-mode configuration: PostgreSQL servers run no local agent unless asked, the heartbeat
 * silence limit, and `esnap agent` refusing anything but PostgreSQL.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { loadConfig } from '../../src/config.js';
import { bossSchemaFor, bossSchemaForUrl, jobIdOf, nodeQueueName } from '../../src/queue/pgboss.queue.js';

describe('cluster configuration', () => {
  it('runs a local agent by default on SQLite only; ESNAP_LOCAL_AGENT=1 asks for one on PostgreSQL', () => {
    expect(loadConfig({ ESNAP_DATA_DIR: '/tmp/x' }).localAgent).toBe(true);
    expect(loadConfig({ ESNAP_DATABASE_URL: 'postgres://esnap@db/esnap' }).localAgent).toBe(false);
    expect(loadConfig({ ESNAP_DATABASE_URL: 'postgres://esnap@db/esnap', ESNAP_LOCAL_AGENT: '1' }).localAgent).toBe(true);
    expect(loadConfig({ ESNAP_LOCAL_AGENT: '0' }).localAgent).toBe(false);
  });

  it('reads ESNAP_NODE_SILENCE_S (default 30) and ESNAP_AGENT_DEADLINE_S (default 120)', () => {
    expect(loadConfig({}).nodeSilenceS).toBe(30);
    expect(loadConfig({}).agentDeadlineS).toBe(120);
    expect(loadConfig({ ESNAP_NODE_SILENCE_S: '4.5', ESNAP_AGENT_DEADLINE_S: '7' })).toMatchObject({ nodeSilenceS: 4.5, agentDeadlineS: 7 });
    expect(() => loadConfig({ ESNAP_NODE_SILENCE_S: '0' })).toThrow(/ESNAP_NODE_SILENCE_S/);
  });

  it('names queues, jobs and the pg-boss schema the same way in every process', () => {
    expect(nodeQueueName('node1.example.com')).toBe('esnap.node.node1.example.com');
    expect(nodeQueueName('a b')).toBe('esnap.node.a_b');
    expect(jobIdOf('1e1d1-6f75849b-aaaa-bbbb-cccc')).toBe(jobIdOf('1e1d1-6f75849b-aaaa-bbbb-cccc'));
    expect(jobIdOf('1e1d1-6f75849b-aaaa-bbbb-cccc')).not.toBe(jobIdOf('1e1d1-6f75849b-aaaa-bbbb-cccd'));
    expect(jobIdOf('x')).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(bossSchemaFor(undefined)).toBe('pgboss');
    expect(bossSchemaFor('esnap')).toBe('esnap_pgboss');
    expect(bossSchemaForUrl('postgres://a@h/db')).toBe('pgboss');
    expect(bossSchemaForUrl('postgres://a@h/db?options=-c%20search_path%3Desnap')).toBe('esnap_pgboss');
  });

  it('esnap agent refuses a SQLite database with a configuration error', () => {
    const r = spawnSync(process.execPath, [join(process.cwd(), 'dist/src/bin/esnap.js'), 'agent'], {
      env: { ...process.env, ESNAP_DATABASE_URL: 'sqlite:/tmp/never.db', ESNAP_NODE: 'n1' },
      encoding: 'utf8',
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toBe('esnap: configuration error: esnap agent runs in cluster mode: ESNAP_DATABASE_URL must be a postgres:// URL\n');
  });
});
