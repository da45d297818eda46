/**
 * GET (and HEAD) /healthz and /readyz, outside /api and without a trailing slash, like /metrics
 * (the router's ignoreTrailingSlash answers `/readyz/` the same way). No authentication: load
 * balancers and orchestrators probe them without credentials, and they say nothing about VMs,
 * users or snapshots.
 *
 * - /healthz: the process is up and its HTTP server answers: 200 `{"status":"ok"}`.
 * - /readyz: this server can do its work (see src/health/health.checks.ts for the answer's shape):
 *   `database` answers a trivial query; `migrations`: its newest applied migration is the newest
 *   this build knows (an older esnap left running after a newer one migrated is not ready); and
 *   storage work is possible: `agent` (this process runs the node's agent: its node is
 *   registered, which start-up does before the server listens) or, in cluster mode without a
 *   local agent, `nodes` (at least one node is online). Where this process applies libvirt
 *   inventories, `libvirt` (always ok) counts the domains skipped for a conflict or a bad name, by
 *   reason, until resolved; the names are in the log only (this endpoint names no VM).
 */
import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import type { AppContext } from '../app-context.js';
import { knownMigrations } from '../db/migrate.js';
import { dialectOf } from '../db/capabilities.js';
import { NODE_ONLINE } from '../nodes/node.repository.js';
import { libvirtSkipSummary } from '../hypervisor/libvirt.rows.js';
import { HEALTHY_BODY, runChecks, type HealthCheck, type Readiness } from '../health/health.checks.js';

const NEWEST_MIGRATION = knownMigrations.at(-1)!;

function serverChecks(ctx: AppContext): HealthCheck[] {
  const checks: HealthCheck[] = [
    {
      name: 'database',
      probe: async () => {
        await sql`SELECT 1`.execute(ctx.db);
        return { kind: dialectOf(ctx.db) };
      },
    },
    {
      name: 'migrations',
      needs: 'database',
      probe: async () => {
        // The migrator's own table is not part of the Database type (src/db/migrate.ts).
        const { rows } = await sql<{ name: string }>`SELECT name FROM esnap_migration ORDER BY name DESC LIMIT 1`.execute(ctx.db);
        const latest = rows[0]?.name ?? null;
        if (latest === NEWEST_MIGRATION) return { latest };
        if (latest !== null && !knownMigrations.includes(latest)) {
          throw new Error(`the database has migration ${latest}, newer than this build's ${NEWEST_MIGRATION}`);
        }
        throw new Error(`the database's latest migration is ${latest ?? 'none'}, this build needs ${NEWEST_MIGRATION}`);
      },
    },
  ];
  const localNode = ctx.settings.localNode;
  if (localNode !== null) {
    checks.push({
      name: 'agent',
      needs: 'database',
      probe: async () => {
        const node = await ctx.db.selectFrom('node').select('id').where('hostname', '=', localNode).executeTakeFirst();
        if (!node) throw new Error(`the local agent's node ${localNode} is not registered`);
        return { node: localNode };
      },
    });
  } else {
    checks.push({
      name: 'nodes',
      needs: 'database',
      probe: async () => {
        const rows = await ctx.db.selectFrom('node').select(['status']).execute();
        const online = rows.filter((n) => n.status === NODE_ONLINE).length;
        if (online === 0) throw new Error(`no node is online (${rows.length} registered); start an agent (esnap agent)`);
        return { online, registered: rows.length };
      },
    });
  }
  const skipped = libvirtSkipSummary();
  if (skipped !== null) checks.push({ name: 'libvirt', probe: async () => skipped });
  return checks;
}

export function serverReadiness(ctx: AppContext): Promise<Readiness> {
  return runChecks(serverChecks(ctx));
}

export function healthRoutes(app: FastifyInstance, ctx: AppContext): void {
  app.get('/healthz', async (_request, reply) => reply.code(200).type('application/json').header('cache-control', 'no-store').send(HEALTHY_BODY));
  app.get('/readyz', async (_request, reply) => {
    const r = await serverReadiness(ctx);
    return reply.code(r.status).type('application/json').header('cache-control', 'no-store').send(JSON.stringify(r.body));
  });
}
