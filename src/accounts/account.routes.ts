/**
 * HTTP of accounts: login/logout, users, DCs with their settings and admins. All DC-unbound.
 *
 * The `/dc/:dc…` views share `/api/dc/<x>/` with the `/api/dc/:dcPrefix/<view>` mounting of
 * DC-bound views; the router tells them apart by their static segments (`settings`, `admin` here,
 * `vm`, `task`, … there), so no DC-bound view may use those segment names at its top.
 */
import type { Handler, ViewDef, ViewRequest, ViewResult } from '../http/view.js';
import { isDcAdmin, requireSuperAdmin } from './caller.js';
import { apiError, FailureError } from '../domain/errors.js';
import { msg } from '../domain/messages.js';
import { parseBool } from '../domain/validate.js';
import * as loginSvc from './login.service.js';
import * as userSvc from './user.service.js';
import * as dcSvc from './dc.service.js';
import * as dcAdminSvc from './dc-admin.service.js';

function body(req: ViewRequest): Record<string, unknown> {
  if (req.invalidBody) throw new FailureError({ non_field_errors: [msg.invalidData] });
  return req.data as Record<string, unknown>;
}

const ok = (result: unknown, status?: number): ViewResult => ({ type: 'sync', result, ...(status ? { status } : {}) });

/** A handler for super admins only (403 `Permission denied`, checked before anything else). */
function superAdmin(h: Handler): Handler {
  return async (req) => {
    requireSuperAdmin(req.caller);
    return h(req);
  };
}

const param = (req: ViewRequest, name: string): string => req.params[name] ?? '';

const login: ViewDef = {
  path: '/accounts/login',
  name: 'Login',
  description: 'Log in with username and password; answers a token for `Authorization: Token <token>`, valid for one hour.',
  dcBound: false,
  public: true,
  methods: {
    POST: async (req) => {
      if (req.invalidBody) return { type: 'raw', status: 400, body: { detail: msg.invalidData } };
      const outcome = await loginSvc.login(req.app, req.data as Record<string, unknown>, req.http.ip);
      return outcome.ok ? { type: 'raw', status: 200, body: outcome.body } : { type: 'raw', status: 400, body: { detail: outcome.detail } };
    },
  },
};

const logout: ViewDef = {
  path: '/accounts/logout',
  name: 'Logout',
  description: 'Log out: deletes the caller\'s token.',
  dcBound: false,
  methods: {
    GET: async (req) => {
      await loginSvc.logout(req.app, req.caller.user);
      return { type: 'raw', status: 200, body: { detail: 'Bye.' } };
    },
  },
};

const userList: ViewDef = {
  path: '/accounts/user',
  name: 'User list',
  description: 'List of usernames, or user objects with `full` (super admin).',
  dcBound: false,
  methods: {
    GET: superAdmin(async (req) => ok(await userSvc.listUsers(req.app, parseBool(req.data['full'])))),
  },
};

const user: ViewDef = {
  path: '/accounts/user/:username',
  name: 'User',
  description:
    'Show, create, update or delete a user (super admin; a user may show and update their own password, api_key, email and current_dc). ' +
    'Fields: password and api_key (write-only), email, is_super_admin, api_access, is_active, current_dc.',
  dcBound: false,
  methods: {
    GET: async (req) => ok(await userSvc.userObject(req.app, await userSvc.userForCaller(req.app, req.caller, param(req, 'username')))),
    POST: superAdmin(async (req) => ok(await userSvc.createUser(req.app, req.caller, param(req, 'username'), body(req)), 201)),
    PUT: async (req) => {
      const target = await userSvc.userForCaller(req.app, req.caller, param(req, 'username'));
      return ok(await userSvc.updateUser(req.app, req.caller, target, body(req)));
    },
    DELETE: superAdmin(async (req) => {
      const target = await userSvc.userForCaller(req.app, req.caller, param(req, 'username'));
      await userSvc.deleteUser(req.app, req.caller, target);
      return ok(null);
    }),
  },
};

const dcList: ViewDef = {
  path: '/dc',
  name: 'Datacenter list',
  description: 'Names of the datacenters the caller can access, or objects with `full`.',
  dcBound: false,
  methods: {
    GET: async (req) => ok(await dcSvc.listDcs(req.app, req.caller, parseBool(req.data['full']))),
  },
};

const dc: ViewDef = {
  path: '/dc/:dc',
  name: 'Datacenter',
  description: 'Show a datacenter; create, update (alias, access 1 public / 3 private, owner) or delete it (super admin).',
  dcBound: false,
  methods: {
    GET: async (req) => ok(await dcSvc.dcObject(req.app, await dcSvc.accessibleDc(req.app, req.caller, param(req, 'dc')))),
    POST: superAdmin(async (req) => ok(await dcSvc.createDc(req.app, req.caller, param(req, 'dc'), body(req)), 201)),
    PUT: superAdmin(async (req) => {
      const target = await dcSvc.accessibleDc(req.app, req.caller, param(req, 'dc'));
      return ok(await dcSvc.updateDc(req.app, req.caller, target, body(req)));
    }),
    DELETE: superAdmin(async (req) => {
      await dcSvc.deleteDc(req.app, req.caller, await dcSvc.accessibleDc(req.app, req.caller, param(req, 'dc')));
      return ok(null);
    }),
  },
};

const dcSettings: ViewDef = {
  path: '/dc/:dc/settings',
  name: 'Datacenter settings',
  description: 'The VMS_VM_SNAPSHOT_* settings of a datacenter (read: its admins; update: super admin).',
  dcBound: false,
  methods: {
    GET: async (req) => {
      const target = await dcSvc.accessibleDc(req.app, req.caller, param(req, 'dc'));
      if (!(await isDcAdmin(req.app, req.caller.user, target))) throw apiError('permissionDenied');
      return ok(dcSvc.settingsObject(target));
    },
    PUT: superAdmin(async (req) => {
      const target = await dcSvc.accessibleDc(req.app, req.caller, param(req, 'dc'));
      return ok(await dcSvc.updateSettings(req.app, req.caller, target, body(req)));
    }),
  },
};

const dcAdminList: ViewDef = {
  path: '/dc/:dc/admin',
  name: 'Datacenter admin list',
  description: 'Usernames of the datacenter\'s admins (super admin).',
  dcBound: false,
  methods: {
    GET: superAdmin(async (req) => {
      const target = await dcSvc.accessibleDc(req.app, req.caller, param(req, 'dc'));
      return ok(await dcAdminSvc.dcAdminUsernames(req.app, target));
    }),
  },
};

const dcAdmin: ViewDef = {
  path: '/dc/:dc/admin/:username',
  name: 'Datacenter admin',
  description: 'Show, grant (POST) or revoke (DELETE) the admin role of a user in a datacenter (super admin).',
  dcBound: false,
  methods: {
    GET: superAdmin(async (req) => {
      const target = await dcSvc.accessibleDc(req.app, req.caller, param(req, 'dc'));
      return ok(await dcAdminSvc.getDcAdmin(req.app, target, param(req, 'username')));
    }),
    POST: superAdmin(async (req) => {
      const target = await dcSvc.accessibleDc(req.app, req.caller, param(req, 'dc'));
      return ok(await dcAdminSvc.addDcAdmin(req.app, req.caller, target, param(req, 'username')), 201);
    }),
    DELETE: superAdmin(async (req) => {
      const target = await dcSvc.accessibleDc(req.app, req.caller, param(req, 'dc'));
      await dcAdminSvc.removeDcAdmin(req.app, req.caller, target, param(req, 'username'));
      return ok(null);
    }),
  },
};

export const accountViews: ViewDef[] = [login, logout, userList, user, dcList, dc, dcSettings, dcAdminList, dcAdmin];
