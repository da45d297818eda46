/** Names in the cluster queue: queue names, job ids derived from task ids, pg-boss's schema. */
import { createHash } from 'node:crypto';

export const RESULTS_QUEUE = 'esnap.results';
export const REGISTER_QUEUE = 'esnap.register';

/** `esnap.node.<hostname>`; characters pg-boss or PostgreSQL would not like become `_`. */
export function nodeQueueName(node: string): string {
  return `esnap.node.${node.replace(/[^A-Za-z0-9._-]/g, '_')}`;
}

/** A stable job id (a UUID) for a task id: the same task sent twice is one job. */
export function jobIdOf(taskId: string): string {
  const h = createHash('sha1').update(`esnap-task:${taskId}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${((parseInt(h.slice(16, 18), 16) & 0x3f) | 0x80).toString(16)}${h.slice(18, 20)}-${h.slice(20, 32)}`;
}

/** pg-boss's schema for an esnap schema: `<schema>_pgboss`, or `pgboss` for the default schema. */
export function bossSchemaFor(esnapSchema: string | undefined | null): string {
  return esnapSchema ? `${esnapSchema}_pgboss`.slice(0, 50) : 'pgboss';
}

/**
 * pg-boss's schema for a database URL: an agent is given the URL with esnap's schema in
 * `?options=-c search_path=<schema>` exactly as servers are, and so finds the same pg-boss schema.
 */
export function bossSchemaForUrl(url: string): string {
  let schema: string | undefined;
  try {
    const options = new URL(url).searchParams.get('options') ?? '';
    schema = /(?:^|\s)-c\s*search_path=([A-Za-z_][A-Za-z0-9_]*)/.exec(options)?.[1];
  } catch {
    schema = undefined;
  }
  return bossSchemaFor(schema);
}
