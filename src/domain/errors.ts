/**
 * The one registry of API errors: each code maps to its HTTP status and Danube's exact message.
 * Services throw `ApiError`s by code; the HTTP error handler is the only place that renders them.
 */
import type { FieldErrors } from './validate.js';

/** The refusal of a new snapshot of a disk flagged damaged; also the agent's failure message. */
export const DISK_DAMAGED = 'Disk image is damaged';

export const API_ERRORS = {
  authMissing: [403, 'Authentication credentials were not provided.'],
  invalidApiKey: [403, 'Invalid API key'],
  invalidToken: [403, 'Invalid token.'],
  invalidTokenHeader: [403, 'Invalid token header. No credentials provided.'],
  invalidTokenSpaces: [403, 'Invalid token header. Token string should not contain spaces.'],
  userInactive: [403, 'User inactive or deleted.'],
  noApiAccess: [403, 'User account is not allowed to access API'],
  permissionDenied: [403, 'Permission denied'],
  noPermission: [403, 'You do not have permission to perform this action.'],
  notFound: [404, 'Not found'],
  vmNotFound: [404, 'VM not found'],
  snapshotNotFound: [404, 'Snapshot not found'],
  defineNotFound: [404, 'Snapshot definition not found'],
  storageNotFound: [404, 'Storage not found'],
  nodeNotFound: [404, 'Node not found'],
  dcNotFound: [404, 'Datacenter not found'],
  userNotFound: [404, 'User not found'],
  diskNotFound: [404, 'Disk not found'],
  taskNotFound: [404, 'Task does not exist'],
  taskGone: [404, 'Task does not exist (anymore)'],
  snapshotExists: [406, 'Snapshot already exists'],
  defineExists: [406, 'Snapshot definition already exists'],
  vmExists: [406, 'VM already exists'],
  userExists: [406, 'User already exists'],
  dcExists: [406, 'Datacenter already exists'],
  diskExists: [406, 'Disk already exists'],
  taskCannotCancel: [406, 'Task cannot be canceled'],
  vmPendingTasks: [409, 'VM has pending tasks'],
  invalidDiskId: [412, 'Invalid disk_id'],
  invalidSnapshotType: [412, 'Invalid snapshot type'],
  invalidSnapnames: [412, 'Invalid snapnames'],
  snapshotStatusNotOk: [417, 'VM snapshot status is not OK'],
  snapshotLimit: [417, 'VM snapshot limit reached'],
  snapshotSizeLimit: [417, 'VM snapshot size limit reached'],
  dcSizeLimit: [417, 'DC snapshot size limit reached'],
  /** esnap: a storage of the snapshot is below ESNAP_MIN_FREE_PERCENT (src/snapshots/capacity.ts). */
  storageFull: [417, 'Storage free space below the limit'],
  /** esnap: the disk's image is missing or cut off (a crash, or a change behind esnap's back); src/vms/disk.damage.ts. */
  diskDamaged: [417, DISK_DAMAGED],
  moreRecentSnapshots: [417, 'VM has more recent snapshots'],
  targetHasSnapshots: [417, 'Target VM has snapshots'],
  vmHasSnapshots: [417, 'VM has snapshots'],
  snapshotPinned: [417, 'Snapshot is pinned'],
  /** esnap: a libvirt domain's disk that no storage driver of its node owns (src/hypervisor/). */
  diskNotOnStorage: [417, 'Disk is not on an esnap storage'],
  nodeNotOperational: [423, 'Node is not operational'],
  vmNotOperational: [423, 'VM is not operational'],
  vmNotStopped: [423, 'VM is not stopped'],
  vmLocked: [423, 'VM is locked or has slave VMs'],
  vmNotInstalled: [428, 'VM is not installed'],
  diskSizeMismatch: [428, 'Disk size mismatch'],
  otherNodeRestore: [428, 'Restore into a VM on another node is not supported'],
  storageMissingOnNode: [428, 'Storage does not exist on the VM\'s node'],
} as const satisfies Record<string, readonly [number, string]>;

export type ApiErrorCode = keyof typeof API_ERRORS;

/** An error answered bare, as `{"detail": "<message>"}` with its status. */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  readonly status: number;
  readonly detail: string;
  readonly headers: Readonly<Record<string, string>>;
  constructor(status: number, detail: string, headers: Record<string, string> = {}) {
    super(detail);
    this.status = status;
    this.detail = detail;
    this.headers = headers;
  }
}

export function apiError(code: ApiErrorCode): ApiError {
  const [status, detail] = API_ERRORS[code];
  return new ApiError(status, detail);
}

/**
 * A failure answered inside the task envelope: HTTP 400 (unless given), `status: FAILURE` and
 * `result` either field errors or a string such as `Task did not acquire lock`.
 */
export class FailureError extends Error {
  override readonly name = 'FailureError';
  constructor(
    readonly result: FieldErrors | string | Record<string, unknown>,
    readonly status = 400,
  ) {
    super(typeof result === 'string' ? result : 'validation failed');
  }
}

export const LOCK_FAILED = 'Task did not acquire lock';

export function validationFailed(errors: FieldErrors): FailureError {
  return new FailureError(errors);
}
