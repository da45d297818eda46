import { describe, expect, it } from 'vitest';
import { FINAL_TASK_STATES, isFinalTaskState } from '../../src/domain/task-state.js';

describe('task states', () => {
  it('calls SUCCESS, FAILURE and REVOKED final, and nothing else', () => {
    expect([...FINAL_TASK_STATES].sort()).toEqual(['FAILURE', 'REVOKED', 'SUCCESS']);
    for (const s of FINAL_TASK_STATES) expect(isFinalTaskState(s)).toBe(true);
    for (const s of ['PENDING', 'STARTED', 'success', '']) expect(isFinalTaskState(s)).toBe(false);
  });
});
