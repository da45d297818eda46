/**
 * Reading the definition preview (`GET …/define/snapshot/<def>/preview/`): the next runs in UTC
 * and in the definition's zone, and the snapshots retention would destroy now. The reader accepts
 * the plausible spellings of those two lists, so a renamed key shows as "no data", not as a crash.
 */
export interface PreviewRun {
  readonly utc: string;
  readonly local: string | null;
}

export interface Preview {
  readonly runs: PreviewRun[] | null;
  readonly prune: string[] | null;
  readonly tz: string | null;
  /** Pruning is stopped (the definition's last run failed). */
  readonly stopped: boolean;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function pick(o: Obj, keys: readonly string[]): unknown {
  for (const k of keys) if (o[k] !== undefined) return o[k];
  return undefined;
}

function runOf(v: unknown): PreviewRun | null {
  if (typeof v === 'string') return { utc: v, local: null };
  if (!isObj(v)) return null;
  const utc = pick(v, ['utc', 'time', 'at', 'run', 'when']);
  const local = pick(v, ['local', 'tz', 'in_tz', 'zone', 'local_time']);
  return typeof utc === 'string' ? { utc, local: typeof local === 'string' ? local : null } : null;
}

function nameOf(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (isObj(v) && typeof v['name'] === 'string') return v['name'];
  return null;
}

export function parsePreview(result: unknown): Preview {
  if (!isObj(result)) return { runs: null, prune: null, tz: null, stopped: false };
  let runs: PreviewRun[] | null = null;
  const rawRuns = pick(result, ['next_runs', 'runs', 'next', 'schedule']);
  if (Array.isArray(rawRuns)) runs = rawRuns.map(runOf).filter((r): r is PreviewRun => r !== null);
  else if (isObj(rawRuns)) {
    const utc = pick(rawRuns, ['utc', 'UTC']);
    const local = pick(rawRuns, ['local', 'tz']);
    if (Array.isArray(utc)) runs = utc.map((u, i) => ({ utc: String(u), local: Array.isArray(local) && typeof local[i] === 'string' ? (local[i] as string) : null }));
  }
  const utcList = pick(result, ['next_runs_utc', 'runs_utc']);
  const localList = pick(result, ['next_runs_tz', 'next_runs_local', 'runs_tz', 'runs_local']);
  if (!runs && Array.isArray(utcList)) {
    runs = utcList.map((u, i) => ({ utc: String(u), local: Array.isArray(localList) && typeof localList[i] === 'string' ? (localList[i] as string) : null }));
  }
  let prune: string[] | null = null;
  let rawPrune = pick(result, ['retention_delete', 'prune', 'would_delete', 'to_delete', 'destroy', 'delete', 'pruned', 'retention']);
  if (isObj(rawPrune)) rawPrune = pick(rawPrune, ['destroy', 'delete', 'names', 'snapshots', 'snapnames']);
  if (Array.isArray(rawPrune)) prune = rawPrune.map(nameOf).filter((n): n is string => n !== null);
  const tz = typeof result['tz'] === 'string' ? result['tz'] : null;
  return { runs, prune, tz, stopped: result['retention_stopped'] === true };
}
