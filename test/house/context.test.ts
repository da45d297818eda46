// What a service needs travels on the AppContext, with no look-up that falls back to a default: a
// context built without the automation services or the free-space floor must not type-check
// (`npm run typecheck` fails if the @ts-expect-error lines below stop being errors).
import { describe, expect, it } from 'vitest';
import type { AppContext } from '../../src/app-context.js';

describe('AppContext', () => {
  it('cannot be built without its automation services or its free-space floor', () => {
    const partial = {} as Omit<AppContext, 'automation' | 'capacity'>;
    // @ts-expect-error automation (alerts, metrics, lock waits) is required
    const noAutomation: AppContext = { ...partial, capacity: { minFreePercent: 5 } };
    // @ts-expect-error capacity (ESNAP_MIN_FREE_PERCENT) is required
    const noCapacity: AppContext = { ...partial, automation: {} as AppContext['automation'] };
    expect([noAutomation, noCapacity]).toHaveLength(2);
  });
});
