#!/usr/bin/env node
/**
 * `esnap` — the composition root: reads the configuration, wires the runtime, listens and
 * handles signals. `esnap serve` starts the API server (with its local agent by default on
 * SQLite); `esnap agent` runs the agent of one node in cluster mode (PostgreSQL).
 */
import { loadConfig, loadServeConfig, ConfigError } from '../config.js';
import { createRuntime } from '../runtime.js';
import { AgentRuntime } from '../agent/agent-runtime.js';
import { bossSchemaForUrl } from '../queue/pgboss.queue.js';
import type { FastifyInstance } from 'fastify';
import { createLogger } from '../log.js';
import { onStopSignals } from './graceful-stop.js';
import { join } from 'node:path';
import { CHILDREN_SUBDIR } from '../storage/agent-runner.js';
import { BACKUP_KEYS_SUBDIR } from '../backups/backup-node.js';
import { Restic } from '../backups/restic.js';
import { backupDatabase, BackupError, restoreInstructions } from '../db/backup.js';
import { NewerSchemaError } from '../db/migrate.js';
import { DatabaseConnectError, explainConnectError } from '../db/connect-error.js';
import { runSshServe } from '../transport/ssh-serve.js';

const USAGE = `usage: esnap <command>

commands:
  serve     start the API server (and its local agent) — configured by ESNAP_* variables
  agent     run this node's agent in cluster mode (ESNAP_DATABASE_URL=postgres://…, ESNAP_NODE,
            ESNAP_STORAGES); it needs only the pg-boss schema in the database
  ssh-serve <serve.json>
            the forced command of backup nodes' SSH keys (written by the agent into
            ESNAP_SSH_DIR/authorized_keys; runs SSH_ORIGINAL_COMMAND's send or receive only)
  db backup <file>
            copy the SQLite database to <file> while the server runs (same settings as serve;
            PostgreSQL: use pg_dump)
  backup export-key <storage>
            print the restic password of the backups on <storage> of this node (keep it elsewhere:
            without it the backups cannot be read once this node is lost)
  help      show this text
`;

function boundPort(app: FastifyInstance): number {
  const a = app.server.address();
  return typeof a === 'object' && a ? a.port : 0;
}

async function serve(): Promise<void> {
  // Includes the refusal of plain HTTP on a non-loopback address, before anything starts.
  const config = loadServeConfig();
  const log = createLogger({ level: config.logLevel });
  const runtime = await createRuntime({
    databaseUrl: config.databaseUrl,
    adminApiKey: config.adminApiKey,
    node: config.node,
    storages: config.storages,
    localAgent: config.localAgent,
    streamTimeoutS: config.streamTimeoutS,
    scheduleRetryS: config.scheduleRetryS,
    alertWebhook: config.alertWebhook,
    metricsPublic: config.metricsPublic,
    freezeLimitS: config.freezeLimitS,
    hypervisor: config.hypervisor,
    minFreePercent: config.minFreePercent,
    taskLogDays: config.taskLogDays,
    publicUrl: config.publicUrl,
    agentDeadlineS: config.agentDeadlineS,
    nodeSilenceS: config.nodeSilenceS,
    https: config.https,
    childRecordsDir: join(config.dataDir, CHILDREN_SUBDIR),
    backupKeysDir: join(config.dataDir, BACKUP_KEYS_SUBDIR),
    backupNode: config.backupNode,
    log,
    httpLogger: log,
  }).catch((err: unknown) => {
    throw explainConnectError(err, config.databaseUrl);
  });
  // ESNAP_LISTEN's port may be 0 (any free port): the key's example and the start-up line give the bound one.
  const address = await runtime.app.listen({ host: config.listen.host, port: config.listen.port });
  if (runtime.printedKey) {
    const scheme = config.https ? 'https' : 'http';
    const host = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host;
    process.stdout.write(
      `\nBootstrap admin created. API key for user "admin" (shown once, store it now):\n\n  ${runtime.printedKey}\n\n` +
        `Use it as:  curl -H 'ES-API-KEY: ${runtime.printedKey}' ${scheme}://${host}:${boundPort(runtime.app)}/api/vm/\n\n`,
    );
  }
  log.info({ address, node: config.node, database: config.databaseUrl.replace(/\/\/[^@]*@/, '//***@') }, 'esnap listening');
  onStopSignals(runtime, { graceS: config.stopGraceS, log });
}

async function agent(): Promise<void> {
  const config = loadConfig();
  const log = createLogger({ level: config.logLevel });
  if (!/^postgres(ql)?:\/\//.test(config.databaseUrl)) {
    throw new ConfigError('esnap agent runs in cluster mode: ESNAP_DATABASE_URL must be a postgres:// URL');
  }
  const runtime = await AgentRuntime.start({
    databaseUrl: config.databaseUrl,
    bossSchema: bossSchemaForUrl(config.databaseUrl),
    node: config.node,
    storages: config.storages,
    heartbeatS: config.nodeSilenceS / 3,
    freezeLimitS: config.freezeLimitS,
    healthListen: config.agentHealthListen,
    childRecordsDir: join(config.dataDir, CHILDREN_SUBDIR),
    backupKeysDir: join(config.dataDir, BACKUP_KEYS_SUBDIR),
    hypervisor: config.hypervisor,
    ssh: { dir: config.sshDir, address: config.nodeAddress },
    backupNode: config.backupNode,
    log,
  }).catch((err: unknown) => {
    throw explainConnectError(err, config.databaseUrl);
  });
  if (runtime.health) log.info({ address: runtime.health.address }, 'agent health checks listening');
  onStopSignals({ runningTasks: () => runtime.runningTasks(), close: () => runtime.stop() }, { graceS: config.stopGraceS, log });
}

/** `esnap db backup <file>` (src/db/backup.ts). */
async function db(args: readonly string[]): Promise<number> {
  if (args[0] !== 'backup' || args.length !== 2 || !args[1]) {
    process.stderr.write(USAGE);
    return 1;
  }
  const report = await backupDatabase(loadConfig().databaseUrl, args[1]);
  process.stdout.write(restoreInstructions(report));
  return 0;
}

/** `esnap backup export-key <storage>`: the restic password of that backup storage's repository. */
async function backup(args: readonly string[]): Promise<number> {
  if (args[0] !== 'export-key' || args.length !== 2 || !args[1]) {
    process.stderr.write(USAGE);
    return 1;
  }
  const config = loadConfig();
  try {
    process.stdout.write(`${await Restic.exportKey(join(config.dataDir, BACKUP_KEYS_SUBDIR), args[1])}\n`);
    return 0;
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no repository has been made on it yet' : err instanceof Error ? err.message : String(err);
    process.stderr.write(`esnap: no restic password for storage ${JSON.stringify(args[1])}: ${why}\n`);
    return 1;
  }
}

async function main(argv: readonly string[]): Promise<number> {
  const cmd = argv[0];
  switch (cmd) {
    case 'serve':
      await serve();
      return -1; // keeps running
    case 'agent':
      await agent();
      return -1;
    case 'db':
      return db(argv.slice(1));
    case 'ssh-serve':
      return runSshServe(argv.slice(1));
    case 'backup':
      return backup(argv.slice(1));
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return cmd === undefined ? 1 : 0;
    default:
      process.stderr.write(`esnap: unknown command ${JSON.stringify(cmd)}\n${USAGE}`);
      return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof ConfigError) process.stderr.write(`esnap: configuration error: ${err.message}\n`);
    else if (err instanceof BackupError || err instanceof NewerSchemaError) process.stderr.write(`esnap: ${err.message}\n`);
    else if (err instanceof DatabaseConnectError) process.stderr.write(`esnap: ${err.message}\n`);
    else process.stderr.write(`esnap: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
