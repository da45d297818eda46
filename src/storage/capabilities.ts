/**
 * What the server needs to know about a driver without talking to it: whether rollback keeps
 * newer snapshots. One table, looked up by the storage's driver name.
 */
const ROLLBACK_KEEPS_NEWER: Readonly<Record<string, boolean>> = {
  file: true,
  qcow2: true,
  btrfs: true,
  zfs: false,
};

export function rollbackKeepsNewer(driver: string): boolean {
  return ROLLBACK_KEEPS_NEWER[driver] ?? true;
}
