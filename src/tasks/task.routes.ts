/** Task endpoints (spec 7.2): pending tasks, status, done, cancel and the task log. */
import type { ViewDef, ViewRequest } from '../http/view.js';
import { ApiError, apiError } from '../domain/errors.js';
import { parseTaskId, isDummyTaskId } from '../domain/taskid.js';
import { parseBool, parseIntField } from '../domain/validate.js';
import { formatDanubeTime } from '../domain/time.js';
import type { TaskLogRow } from '../db/schema.js';

const PAGE_SIZE = 100;

/** UserTask permission: a well-formed id, and Admin in its DC or its creator or owner. */
async function userTask(req: ViewRequest): Promise<string> {
  const id = req.params['task_id'] ?? '';
  const parsed = parseTaskId(id);
  if (!parsed) throw apiError('permissionDenied');
  const { user } = req.caller;
  if (user.is_super_admin || parsed.userId === user.id || parsed.ownerId === user.id) return id;
  const dc = await req.app.db.selectFrom('dc').selectAll().where('id', '=', parsed.dcId).executeTakeFirst();
  if (dc && (dc.owner_id === user.id || (await isAdminIn(req, dc.id)))) return id;
  throw apiError('permissionDenied');
}

async function isAdminIn(req: ViewRequest, dcId: number): Promise<boolean> {
  const row = await req.app.db
    .selectFrom('dc_admin')
    .select('user_id')
    .where('dc_id', '=', dcId)
    .where('user_id', '=', req.caller.user.id)
    .executeTakeFirst();
  return row !== undefined;
}

const taskList: ViewDef = {
  path: '/task',
  name: 'task_list',
  description: 'List ids of pending tasks in the current datacenter.',
  dcBound: true,
  methods: {
    async GET(req) {
      let q = req.app.db
        .selectFrom('task')
        .select('id')
        .where('dc_id', '=', req.caller.dc.id)
        .where('state', 'in', ['PENDING', 'STARTED'])
        .orderBy('created');
      if (!req.caller.isAdmin) q = q.where('owner_id', '=', req.caller.user.id);
      const rows = await q.execute();
      return { type: 'raw', status: 200, body: rows.map((r) => r.id) };
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
      return { type: 'raw', status: 200, body: { ...(JSON.parse(task.apiview) as object), task_id: task.id } };
    },
  },
};

async function statusView(req: ViewRequest) {
  const id = await userTask(req);
  const st = await req.app.tasks.statusOf(id);
  if (st.httpStatus === 404) throw apiError('taskGone');
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
      return { type: 'raw', status: st.httpStatus, body: { task_id: st.body.task_id, done: st.done } };
    },
  },
};

const taskCancel: ViewDef = {
  path: '/task/:task_id/cancel',
  name: 'task_cancel',
  description: 'Cancel a task that has not started yet.',
  dcBound: false,
  methods: {
    async PUT(req) {
      const id = req.params['task_id'] ?? '';
      const parsed = parseTaskId(id);
      // TaskCreator: only whoever created the task (or a super admin) may cancel it.
      if (!parsed || isDummyTaskId(id)) throw apiError('taskCannotCancel');
      if (parsed.userId !== req.caller.user.id && !req.caller.isSuperAdmin) throw apiError('taskCannotCancel');
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
    ...(cached ? { task_type: e.task_type } : {}),
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
      let q = req.app.db.selectFrom('task_log').selectAll().where('dc_id', '=', req.caller.dc.id);
      if (!req.caller.isAdmin) {
        const uid = req.caller.user.id;
        q = q.where((eb) => eb.or([eb('owner_id', '=', uid), eb('user_id', '=', uid)]));
      }
      if (typeof d['status'] === 'string' && d['status'] !== '') q = q.where('status', '=', d['status']);
      if (typeof d['object_type'] === 'string' && d['object_type'] !== '') q = q.where('object_type', '=', d['object_type']);
      if (typeof d['object_name'] === 'string' && d['object_name'] !== '') q = q.where('object_name', '=', d['object_name']);
      if (d['show_running'] !== undefined && parseBool(d['show_running'])) q = q.where('status', '=', 'PENDING');
      if (d['hide_auto'] !== undefined && parseBool(d['hide_auto'])) q = q.where('task_type', '!=', 'a');
      for (const [key, op] of [['date_from', '>='], ['date_to', '<=']] as const) {
        const v = d[key];
        if (v === undefined || v === '') continue;
        const t = new Date(String(v));
        if (Number.isNaN(t.getTime())) throw new ApiError(400, `Invalid ${key}`);
        q = q.where('time', op, t.toISOString());
      }
      const asc = d['order_by'] === 'time';
      if (d['order_by'] !== undefined && d['order_by'] !== 'time' && d['order_by'] !== '-time') {
        throw new ApiError(412, 'Invalid order_by; Possible sort fields are: time');
      }
      q = q.orderBy('time', asc ? 'asc' : 'desc').orderBy('id', asc ? 'asc' : 'desc');
      if (d['page'] === undefined) {
        const rows = await q.limit(10).execute();
        return { type: 'raw', status: 200, body: { results: rows.map((r) => logEntry(r, true)) } };
      }
      const page = parseIntField(d['page']);
      if (page === null || page < 1) throw apiError('notFound');
      const countRow = await q
        .clearSelect()
        .clearOrderBy()
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .executeTakeFirstOrThrow();
      const count = Number(countRow.n);
      if (page > 1 && (page - 1) * PAGE_SIZE >= count) throw apiError('notFound');
      const rows = await q.limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE).execute();
      const base = `/api/task/log/?page=`;
      return {
        type: 'raw',
        status: 200,
        body: {
          count,
          next: page * PAGE_SIZE < count ? `${base}${page + 1}` : null,
          previous: page > 1 ? `${base}${page - 1}` : null,
          results: rows.map((r) => logEntry(r, false)),
        },
      };
    },
  },
};

export const taskViews: ViewDef[] = [taskList, taskLog, taskDetail, taskStatus, taskState, taskDone, taskCancel];
