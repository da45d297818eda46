/**
 * A task's states as Danube names them. PENDING and STARTED are in flight; the other three are
 * final: a task in one of them never changes again (completion, cancel, the deadline sweep and
 * housekeeping all rely on that).
 */
export type TaskState = 'PENDING' | 'STARTED' | 'SUCCESS' | 'FAILURE' | 'REVOKED';

export type FinalTaskState = 'SUCCESS' | 'FAILURE' | 'REVOKED';

export const FINAL_TASK_STATES: readonly FinalTaskState[] = ['SUCCESS', 'FAILURE', 'REVOKED'];

const FINAL: ReadonlySet<string> = new Set(FINAL_TASK_STATES);

/** True for SUCCESS, FAILURE and REVOKED; the state comes from a row, hence `string`. */
export function isFinalTaskState(state: string): state is FinalTaskState {
  return FINAL.has(state);
}
