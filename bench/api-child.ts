/**
 * An esnap server process that only serves the API, on the database of the scheduler bench
 * (`BENCH_API=child`): no local agent, no scheduler loop, and housekeeping made inert (a task-log
 * retention of 100 years), so that the only work in it is the measured requests.
 * `node dist/bench/api-child.js <databaseUrl> <searchPath> <adminKey>` prints `API <url>` as one line
 * (among its log lines), and closes on SIGTERM.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRuntime } from '../src/runtime.js';
import { createLogger } from '../src/log.js';

const [databaseUrl, searchPath, key] = process.argv.slice(2);
if (!databaseUrl || !searchPath || !key) {
  process.stderr.write('usage: api-child.js <databaseUrl> <searchPath> <adminKey>\n');
  process.exit(2);
}
const dir = await mkdtemp(join(tmpdir(), 'esnap-bench-api-'));
// Warnings and errors go to standard output with the URL line (the bench keeps them in BENCH_API_LOG).
const log = createLogger({ level: 'warn', pretty: false });
process.on('exit', (code) => process.stderr.write(`api child exits with ${code}\n`));
const rt = await createRuntime({
  log,
  databaseUrl, searchPath, adminApiKey: key, node: 'bench-api', localAgent: false, scheduler: false, taskLogDays: 36_500,
  // As the bench's own runtimes: this server's cluster sweep must not fail the tasks of the node whose
  // consumer the bench stops (with the default 120 s it failed 15,282 of a 100,000 slot's tasks).
  agentDeadlineS: 3600,
  storages: [{ name: 'default', driver: 'file', root: join(dir, 'storage') }],
});
const url = await rt.app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`API ${url}\n`);
process.once('SIGTERM', () => {
  process.stderr.write('api child: SIGTERM\n');
  void rt
    .close()
    .then(() => rm(dir, { recursive: true, force: true }))
    .then(() => process.exit(0));
});
