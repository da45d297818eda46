/**
 * Nodes and their storages, read-only (DC-unbound; any authenticated user). They are registered
 * by agents, never through the API. The two list queries live here because node.repository.ts
 * belongs to the agent side and these are the only readers.
 */
import type { ViewDef, ViewRequest } from '../http/view.js';
import type { NodeRow, NodeStorageRow } from '../db/schema.js';
import { apiError } from '../domain/errors.js';
import { parseBool } from '../domain/validate.js';
import { formatDanubeTime } from '../domain/time.js';
import { findNode, findStorage, listNodes, listStorages } from './node.repository.js';

/** Danube's node status names (spec 2.3): 1 is shown as `maintenance`, only 2 is operational. */
const NODE_STATUS_NAMES: Readonly<Record<number, string>> = { 1: 'maintenance', 2: 'online', 3: 'unreachable', 9: 'unlicensed' };

/** A node: `{hostname, uuid, status, status_display, last_heartbeat}`, in that order. */
export function nodeObject(n: NodeRow): Record<string, unknown> {
  return {
    hostname: n.hostname,
    uuid: n.uuid,
    status: n.status,
    status_display: NODE_STATUS_NAMES[n.status] ?? String(n.status),
    last_heartbeat: n.last_heartbeat === null ? null : formatDanubeTime(new Date(n.last_heartbeat)),
  };
}

/** A storage: `{name, driver, node, size, size_free}`; sizes in bytes (null until the agent reports them). */
export function storageObject(s: NodeStorageRow, node: NodeRow): Record<string, unknown> {
  return { name: s.name, driver: s.driver, node: node.hostname, size: s.size, size_free: s.size_free };
}

async function nodeOf(req: ViewRequest): Promise<NodeRow> {
  const node = await findNode(req.app.db, req.params['hostname'] ?? '');
  if (!node) throw apiError('nodeNotFound');
  return node;
}

const nodeList: ViewDef = {
  path: '/node',
  name: 'node_list',
  description: 'List compute nodes (hostnames; objects with full=true).',
  dcBound: false,
  methods: {
    async GET(req) {
      const nodes = await listNodes(req.app.db);
      const full = parseBool(req.data['full'] ?? false);
      return { type: 'sync', result: full ? nodes.map(nodeObject) : nodes.map((n) => n.hostname) };
    },
  },
};

const nodeDetail: ViewDef = {
  path: '/node/:hostname',
  name: 'node_manage',
  description: 'Show a compute node.',
  dcBound: false,
  methods: {
    async GET(req) {
      return { type: 'sync', result: nodeObject(await nodeOf(req)) };
    },
  },
};

const storageList: ViewDef = {
  path: '/node/:hostname/storage',
  name: 'node_storage_list',
  description: "List a node's storages (names; objects with full=true).",
  dcBound: false,
  methods: {
    async GET(req) {
      const node = await nodeOf(req);
      const rows = await listStorages(req.app.db, node.id);
      const full = parseBool(req.data['full'] ?? false);
      return { type: 'sync', result: full ? rows.map((s) => storageObject(s, node)) : rows.map((s) => s.name) };
    },
  },
};

const storageDetail: ViewDef = {
  path: '/node/:hostname/storage/:zpool',
  name: 'node_storage',
  description: 'Show a node storage.',
  dcBound: false,
  methods: {
    async GET(req) {
      const node = await nodeOf(req);
      const storage = await findStorage(req.app.db, node.id, req.params['zpool'] ?? '');
      if (!storage) throw apiError('storageNotFound');
      return { type: 'sync', result: storageObject(storage, node) };
    },
  },
};

export const nodeViews: ViewDef[] = [nodeList, nodeDetail, storageList, storageDetail];
