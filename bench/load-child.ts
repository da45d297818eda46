/**
 * The API benchmark's load generator as a process of its own, so it never shares an event loop
 * with the servers it measures: `node dist/bench/load-child.js <url> <seconds> <concurrency> [headers JSON]`
 * prints one LoadResult as JSON (seconds 0: runs until SIGTERM). `loadInChild` and `startLoadInChild` (lib.ts) run it.
 */
import { load } from './lib.js';

const [url, seconds, concurrency, headers] = process.argv.slice(2);
if (!url || !seconds || !concurrency) {
  process.stderr.write('usage: load-child.js <url> <seconds> <concurrency> [headers JSON]\n');
  process.exit(2);
}
// seconds 0: until SIGTERM (startLoadInChild), then the result of the whole window.
const stop = new AbortController();
process.on('SIGTERM', () => stop.abort());
const result = await load(url, JSON.parse(headers ?? '{}') as Record<string, string>, Number(seconds), Number(concurrency), stop.signal);
process.stdout.write(`${JSON.stringify(result)}\n`);
