import type { Kysely } from 'kysely';

/*
 * SSH trust between nodes (issue 15, src/transport/): what each agent registers about its node's
 * sshd and itself. `ssh_address` is ESNAP_NODE_ADDRESS (`user@host:port`), `ssh_host_key` the
 * sshd's ed25519 host key that other nodes pin, `ssh_public_key` the agent's own key, which
 * compute nodes authorize (forced command only) when the node is a backup node. Null for nodes
 * whose agent registered before (they send them at their next start).
 */

type AnyDb = Kysely<any>;

export async function up(db: AnyDb): Promise<void> {
  await db.schema.alterTable('node').addColumn('ssh_address', 'text').execute();
  await db.schema.alterTable('node').addColumn('ssh_host_key', 'text').execute();
  await db.schema.alterTable('node').addColumn('ssh_public_key', 'text').execute();
}

export async function down(): Promise<void> {
  throw new Error('esnap migrations only go forward');
}
