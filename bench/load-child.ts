/**
 * The API benchmark's load generator as a process of its own, so it never shares an event loop
 * with the servers it measures: `node dist/bench/load-child.js <url> <seconds> <concurrency> [headers JSON]`
 * prints one LoadResult as JSON. `loadInChild` (lib.ts) runs it.
 */
import { load } from './lib.js';

const [url, seconds, concurrency, headers] = process.argv.slice(2);
if (!url || !seconds || !concurrency) {
  process.stderr.write('usage: load-child.js <url> <seconds> <concurrency> [headers JSON]\n');
  process.exit(2);
}
const result = await load(url, JSON.parse(headers ?? '{}') as Record<string, string>, Number(seconds), Number(concurrency));
process.stdout.write(`${JSON.stringify(result)}\n`);
