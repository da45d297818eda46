import type { ViewDef } from '../http/view.js';

export const nodeViews: ViewDef[] = [];
