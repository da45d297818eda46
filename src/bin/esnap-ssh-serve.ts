#!/usr/bin/env node
/**
 * The forced command of backup nodes' SSH keys: `esnap-ssh-serve <serve.json>`, what the agent
 * writes into ESNAP_SSH_DIR/authorized_keys (src/transport/trust-files.ts). `esnap ssh-serve` does
 * the same; this entry exists because sshd starts it for every transfer and it imports only the
 * transport and the storage drivers, not the server (a fraction of `esnap`'s start-up time).
 */
import { runSshServe } from '../transport/ssh-serve.js';

runSshServe(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`esnap: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
