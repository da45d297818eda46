/**
 * Reading a zfs snapshot's image (ZfsDriver.readSnapshotStream, for type 2 backups): zfs-fuse has
 * no `.zfs/snapshot` folder (not even with snapdir=visible) and no zvols, and `zfs send` gives a
 * send stream, not the image. So the snapshot is cloned to `<storage>/.esnap-read-<12 hex>` (a
 * clone costs no space and is mounted at once), and its `disk.img` is the image: a file that
 * commands (restic, the hasher) open themselves, so the bytes do not pass through this process.
 *
 * The clone lives until release(): it cannot go while a reader has the file open (zfs unmounts
 * it first, and the unmount is refused as busy), and the snapshot cannot be destroyed while its
 * clone exists ("snapshot has dependent clones"). A process killed in between leaves the clone;
 * init() removes every `.esnap-read-` dataset of the storage (repairReadClones): disk paths never
 * start with a dot, so no disk can have that name.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, type ReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { finished } from 'node:stream/promises';
import type { SnapshotReadable } from '../stream.js';
import type { ZfsCommands } from './zfs.commands.js';
import { asStorageError, isMissing, ZfsError } from './zfs.errors.js';

/** The last component of a read clone's name. */
export const READ_CLONE_RE = /^\.esnap-read-[0-9a-f]{12}$/;

/**
 * Clones `<ds>@<id>` below `storageDs` and gives its image. `path` stays readable until
 * release() (which destroys the stream, if it was ever asked for, then the clone); `stream` is
 * made only when first asked for, since an open file of this process would keep the clone busy;
 * done() resolves once the stream was read to its end and the clone is gone.
 */
export async function readThroughClone(cmd: ZfsCommands, storageDs: string, ds: string, id: string, what: string): Promise<SnapshotReadable & { release(): Promise<void> }> {
  await cmd.zfs(['zfs', 'get', '-Hp', '-o', 'value', 'type', `${ds}@${id}`]).catch((err: unknown) => cmd.whichMissing(err, ds));
  const clone = `${storageDs}/.esnap-read-${randomBytes(6).toString('hex')}`;
  await cmd.zfs(['zfs', 'clone', `${ds}@${id}`, clone]);
  const destroyClone = (): Promise<void> =>
    cmd.zfs(['zfs', 'destroy', clone]).then(
      () => undefined,
      (err: unknown) => {
        if (!isMissing(err)) throw asStorageError(err, `cannot remove ${clone}, the clone that read ${what}`);
      },
    );
  let path: string;
  let size: number;
  try {
    path = await cmd.imagePath(clone);
    size = (await stat(path)).size;
  } catch (err) {
    await destroyClone().catch(() => undefined); // else the next init() removes it
    throw asStorageError(err, `cannot read ${what}`);
  }
  let stream: ReadStream | null = null;
  let released: Promise<void> | null = null;
  const release = (): Promise<void> => {
    released ??= (async () => {
      if (stream) {
        stream.destroy();
        const s = stream;
        if (!s.closed) await new Promise<void>((res) => s.once('close', () => res()));
      }
      await destroyClone();
    })();
    return released;
  };
  let ended: Promise<void> | null = null;
  const open = (): ReadStream => {
    if (!stream) {
      const s = createReadStream(path, { highWaterMark: 4 * 1024 * 1024 });
      stream = s;
      ended = finished(s).then(
        () => release(),
        async (err: unknown) => {
          await release().catch(() => undefined);
          throw asStorageError(err, `cannot read ${what}`);
        },
      );
      ended.catch(() => undefined); // observed through done()
    }
    return stream;
  };
  return {
    get stream() {
      return open();
    },
    size,
    path,
    done: () => {
      open();
      return ended!;
    },
    release,
  };
}

/** Removes the read clones a killed process left (ZfsDriver.init). One still open elsewhere stays. */
export async function repairReadClones(cmd: ZfsCommands, storageDs: string): Promise<void> {
  const out = await cmd.zfs(['zfs', 'list', '-H', '-o', 'name', '-r', '-d', '1', '-t', 'filesystem', storageDs]);
  for (const name of out.stdout.split('\n')) {
    if (!READ_CLONE_RE.test(name.slice(storageDs.length + 1)) || !name.startsWith(`${storageDs}/`)) continue;
    // Busy: a reader in another process (the forced command's send) still has it open; it
    // removes the clone itself when done, or the next init() does.
    await cmd.zfs(['zfs', 'destroy', name]).catch((err: unknown) => {
      if (!(err instanceof ZfsError && err.reason === 'busy') && !isMissing(err)) throw err;
    });
  }
}
