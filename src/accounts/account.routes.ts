import type { ViewDef } from '../http/view.js';

export const accountViews: ViewDef[] = [];
