// Fault injection for agent child processes (node --import): storage that is slow, so a test can
// kill the agent while a task is running. Every storage operation resolves its paths first
// (realpath) and deletes with unlink: both wait ESNAP_TEST_SLOW_STORAGE_MS first. Test code only.
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';

const ms = Number(process.env.ESNAP_TEST_SLOW_STORAGE_MS ?? '0');
const delay = () => new Promise((r) => setTimeout(r, ms));
for (const name of ['realpath', 'unlink']) {
  const orig = fs.promises[name];
  fs.promises[name] = async (...args) => {
    await delay();
    return orig(...args);
  };
}
syncBuiltinESMExports();
