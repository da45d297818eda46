import type { AppContext } from '../app-context.js';
import type { ViewDef } from '../http/view.js';

export const vmViews: ViewDef[] = [];

export function registerVmKinds(_ctx: AppContext): void {}
