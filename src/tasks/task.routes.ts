/** Task endpoints (spec 7.2): pending tasks, status, done, cancel and the task log. */
import type { ViewDef, ViewRequest } from '../http/view.js';
import { ApiError, apiError } from '../domain/errors.js';
import { parseTaskIdLoose, isDummyTaskId, taskLogType, type TaskIdParts } from '../domain/taskid.js';
import { parseBool, parseIntField } from '../domain/validate.js';
import { formatDanubeTime } from '../domain/time.js';
import type { TaskLogRow } from '../db/schema.js';
import { parseOrderBy } from '../domain/order-by.js';
import { countTaskLog, isDcAdmin, pendingTaskIds, readTaskLog, type TaskLogFilter } from './task.repository.js';

const PAGE_SIZE = 100;
const INVALID_PAGE = 'Invalid page.';

/**
 * An absolute link to another page of this request: ESNAP_PUBLIC_URL, else the request's scheme and
 * Host, then the path and the query with `page` replaced; keys sorted and blank values dropped,
 * as Danube's `replace_query_param` does.
 */
function pageLink(req: ViewRequest, page: number): string {
  const url = new URL(req.http.url, 'http://x');
  const params = [...url.searchParams.entries()].filter(([k, v]) => k !== 'page' && v !== '');
  params.push(['page', String(page)]);
  params.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const base = req.app.settings.publicUrl?.replace(/\/+$/, '') ?? `${req.http.protocol}://${req.http.headers.host ?? req.http.hostname}`;
  return `${base}${url.pathname}?${new URLSearchParams(params).toString()}`;
}

/** Whether the caller is Admin in the DC the task id names (Danube's `is_admin(dc)`; the DC must exist). */
function isAdminOfTaskDc(req: ViewRequest, parsed: TaskIdParts): Promise<boolean> {
  return isDcAdmin(req.app.db, req.caller.user, parsed.dcId);
}

/**
 * UserTask permission: an id Danube's `is_valid_task_id` accepts (group lengths only), and Admin in
 * its DC or its creator or owner; else 403 `Permission denied`.
 */
async function userTask(req: ViewRequest): Promise<string> {
  const id = req.params['task_id'] ?? '';
  const parsed = parseTaskIdLoose(id);
  if (!parsed) throw apiError('permissionDenied');
  const { user } = req.caller;
  if (user.is_super_admin || parsed.userId === user.id || parsed.ownerId === user.id) return id;
  if (await isAdminOfTaskDc(req, parsed)) return id;
  throw apiError('permissionDenied');
}

/** TaskCreator permission: Admin in the id's DC, or the task's creator; else 403 `Permission denied`. */
async function taskCreator(req: ViewRequest): Promise<{ id: string; admin: boolean }> {
  const id = req.params['task_id'] ?? '';
  const parsed = parseTaskIdLoose(id);
  if (!parsed) throw apiError('permissionDenied');
  const admin = await isAdminOfTaskDc(req, parsed);
  if (admin || parsed.userId === req.caller.user.id) return { id, admin };
  throw apiError('permissionDenied');
}

/** The pending task's apiview with Danube's key order (`task_id` first), then any other keys. */
const DETAIL_ORDER = ['task_id', 'hostname', 'snapname', 'disk_id', 'time', 'method', 'view'];
function pendingDetails(apiview: Record<string, unknown>, taskId: string): Record<string, unknown> {
  const all: Record<string, unknown> = { ...apiview, task_id: taskId };
  const out: Record<string, unknown> = {};
  for (const k of DETAIL_ORDER) if (k in all) out[k] = all[k];
  return Object.assign(out, all);
}

const taskList: ViewDef = {
  path: '/task',
  name: 'task_list',
  description: 'List ids of pending tasks in the current datacenter.',
  dcBound: true,
  methods: {
    async GET(req) {
      const ids = await pendingTaskIds(req.app.db, req.caller.dc.id, req.caller.isAdmin ? null : req.caller.user.id);
      return { type: 'raw', status: 200, body: ids };
    },
  },
};

const taskDetail: ViewDef = {
  path: '/task/:task_id',
  name: 'task_details',
  description: 'Show a pending task.',
  dcBound: true,
  methods: {
    async GET(req) {
      const id = await userTask(req);
      const task = await req.app.tasks.get(id);
      if (!task || !['PENDING', 'STARTED'].includes(task.state) || task.dc_id !== req.caller.dc.id) {
        throw apiError('taskNotFound');
      }
      return { type: 'raw', status: 200, body: pendingDetails(JSON.parse(task.apiview) as Record<string, unknown>, task.id) };
    },
  },
};

async function statusView(req: ViewRequest) {
  const id = await userTask(req);
  const st = await req.app.tasks.statusOf(id);
  if (!st.found) throw apiError('taskGone');
  return st;
}

const taskStatus: ViewDef = {
  path: '/task/:task_id/status',
  name: 'task_status',
  description: 'Show the status and result of a task.',
  dcBound: false,
  methods: {
    async GET(req) {
      const st = await statusView(req);
      return { type: 'raw', status: st.httpStatus, body: st.body, headers: { es_task_response: 'true' } };
    },
  },
};

const taskState: ViewDef = { ...taskStatus, path: '/task/:task_id/state' };

const taskDone: ViewDef = {
  path: '/task/:task_id/done',
  name: 'task_done',
  description: 'Tell whether a task has finished.',
  dcBound: false,
  methods: {
    async GET(req) {
      const st = await statusView(req);
      return { type: 'raw', status: st.httpStatus, body: { done: st.done, task_id: st.body.task_id } };
    },
  },
};

const taskCancel: ViewDef = {
  path: '/task/:task_id/cancel',
  name: 'task_cancel',
  description: 'Cancel a task: a pending one is revoked, a running one stopped and undone (406 past its point of no return).',
  dcBound: false,
  methods: {
    async PUT(req) {
      const { id, admin } = await taskCreator(req);
      // Danube: only a task in the caller's pending list (admins: every pending task of the DC).
      const task = isDummyTaskId(id) ? undefined : await req.app.tasks.get(id);
      const listed = task && (task.state === 'PENDING' || task.state === 'STARTED') && (admin || task.owner_id === req.caller.user.id);
      if (!listed) throw apiError('taskCannotCancel');
      if (!(await req.app.tasks.cancel(id))) throw apiError('taskCannotCancel');
      const st = await req.app.tasks.statusOf(id);
      return { type: 'raw', status: st.httpStatus, body: st.body };
    },
  },
};

function logEntry(e: TaskLogRow, cached: boolean): Record<string, unknown> {
  const time = formatDanubeTime(new Date(e.time));
  return {
    time: cached ? time.replace(/Z$/, '+00:00') : time,
    task: e.task_id,
    status: e.status,
    username: e.username,
    msg: e.msg,
    detail: e.detail,
    object_name: e.object_name,
    object_alias: e.object_alias,
    object_type: e.object_type,
    flag: e.flag,
    ...(cached ? { task_type: taskLogType(e.task_id) ?? 0 } : {}),
  };
}

const taskLog: ViewDef = {
  path: '/task/log',
  name: 'task_log',
  description: 'Show the task log of the current datacenter.',
  dcBound: true,
  methods: {
    async GET(req) {
      const d = req.data;
      const text = (key: string): string | undefined => (typeof d[key] === 'string' && d[key] !== '' ? d[key] : undefined);
      const time = (key: 'date_from' | 'date_to'): string | undefined => {
        const v = d[key];
        if (v === undefined || v === '') return undefined;
        const t = new Date(String(v));
        if (Number.isNaN(t.getTime())) throw new ApiError(400, `Invalid ${key}`);
        return t.toISOString();
      };
      const filter: TaskLogFilter = {
        dcId: req.caller.dc.id,
        userId: req.caller.isAdmin ? null : req.caller.user.id,
        status: text('status'),
        objectType: text('object_type'),
        objectName: text('object_name'),
        // Tasks still pending or running (Danube: in the pending list), by their PENDING row.
        runningOnly: d['show_running'] !== undefined && parseBool(d['show_running']),
        hideAuto: d['hide_auto'] !== undefined && parseBool(d['hide_auto']),
        from: time('date_from'),
        to: time('date_to'),
        // Danube's order_by (only `time`; `-time`/`+time` descending, empty the default `-time`).
        ascending: !parseOrderBy(d['order_by'], ['time'] as const, '-time')[0]!.desc,
      };
      // Danube pages only for a non-empty `page`; anything Django's paginator refuses is 404 `Invalid page.`.
      if (d['page'] === undefined || d['page'] === '') {
        const rows = await readTaskLog(req.app.db, filter, 10);
        return { type: 'raw', status: 200, body: { results: rows.map((r) => logEntry(r, true)) } };
      }
      const page = parseIntField(d['page']);
      if (page === null || page < 1) throw new ApiError(404, INVALID_PAGE);
      const count = await countTaskLog(req.app.db, filter);
      if (page > 1 && (page - 1) * PAGE_SIZE >= count) throw new ApiError(404, INVALID_PAGE);
      const rows = await readTaskLog(req.app.db, filter, PAGE_SIZE, (page - 1) * PAGE_SIZE);
      return {
        type: 'raw',
        status: 200,
        body: {
          count,
          next: page * PAGE_SIZE < count ? pageLink(req, page + 1) : null,
          // Danube's paginator quirk, kept: no link back to page 1 (page 2's `previous` is null).
          previous: page > 2 ? pageLink(req, page - 1) : null,
          results: rows.map((r) => logEntry(r, false)),
        },
      };
    },
  },
};

export const taskViews: ViewDef[] = [taskList, taskLog, taskDetail, taskStatus, taskState, taskDone, taskCancel];
