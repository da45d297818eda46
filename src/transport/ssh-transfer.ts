/**
 * The Transfer (src/backups/transfer.ts) to a disk on another node, over SSH to that node's
 * forced command (ssh-serve.ts): the backup node's agent is the client, with its own key and the
 * other node's pinned host key.
 *
 * - createSnapshot / destroySnapshot: `snapshot` / `release` (is- ids only); `snapshot … freeze
 *   <task id>` has the other node freeze the guest around it, its `esnap: freeze: …` line is the
 *   freeze's failure.
 * - openSnapshotRead: `send image`; the stream is ssh's stdout, `done()` rejects with the remote
 *   side's message when ssh exits non-zero. openImageSource: the same with ssh's stdout handed to
 *   the consumer's stdin (restic), and the SHA-256 and size of the image taken from the send
 *   command's last stderr line (IMAGE_TRAILER_RE), so the bytes never pass through this process.
 * - openDiskWrite: `receive <task id>`; the image goes to ssh's stdin and is followed, only on
 *   commit(), by the line `commit <sha-256 of the image>\n`. The other side switches the new bytes
 *   in only when exactly the disk's size arrived and that line names their SHA-256; abort() (or a
 *   dropped connection) ends the stream without it, and the disk keeps its old bytes. commit()
 *   resolves once the other side has committed (ssh exited 0). A command may write the image
 *   into `pipe` (ssh's stdin) instead of `stream`; commit(sha256) then sends the SHA-256 the
 *   caller expects (the backup's recorded one), and the other side checks the bytes against it.
 */
import { createHash } from 'node:crypto';
import { Writable, type Readable } from 'node:stream';
import { StorageError } from '../storage/driver.js';
import type { CommandRunner, SpawnedCommand } from '../storage/runner.js';
import type { DatasetFeed, DiskWritable, SnapshotReadable } from '../storage/stream.js';
import type { DiskEnd, Transfer } from '../backups/transfer.js';
import { pointOfNoReturnLater } from '../storage/op-scope.js';
import type { SshAddress } from './ssh-address.js';
import { sshArgv, SSH_FAILED } from './ssh-client.js';
import { COMMIT_PREFIX, FREEZE_NOTE_PREFIX, IMAGE_TRAILER_RE } from './serve-request.js';
import type { ImageSource } from '../backups/transfer.js';


function remoteError(node: string, what: string, r: { code: number; stderr: string }): StorageError {
  const text = r.stderr.trim().split('\n').filter(Boolean).slice(-3).join(' / ');
  const why = r.code === SSH_FAILED ? `ssh failed (connection lost or refused): ${text || 'no message'}` : text || `exit ${r.code}`;
  return new StorageError('backend', `${what} on node ${node} failed: ${why}`);
}

export class SshTransfer implements Transfer {
  constructor(
    private readonly runner: CommandRunner,
    private readonly sshDir: string,
    private readonly node: string,
    private readonly address: SshAddress,
  ) {}

  #argv(request: string[]): string[] {
    return sshArgv(this.sshDir, this.address, request);
  }

  async #run(request: string[], what: string): Promise<string> {
    const r = await this.runner.run(this.#argv(request), { timeoutMs: 10 * 60_000 });
    if (r.code !== 0) throw remoteError(this.node, what, r);
    return r.stderr;
  }

  #spawn(request: string[], opts: { stdin?: 'pipe'; stdout?: 'stream'; stdoutTo?: NodeJS.WritableStream }): SpawnedCommand {
    if (!this.runner.spawn) throw new StorageError('backend', 'The command runner cannot stream');
    return this.runner.spawn(this.#argv(request), { ...opts, timeoutMs: 7 * 24 * 3600_000 });
  }

  async createSnapshot(end: DiskEnd, snapshot: string, freezeTask?: string): Promise<{ freezeError: string | null }> {
    const stderr = await this.#run(['snapshot', end.storage, end.disk.path, snapshot, ...(freezeTask ? ['freeze', freezeTask] : [])], `snapshot ${snapshot} of disk ${end.disk.path}`);
    const notes = stderr.split('\n').filter((l) => l.startsWith(FREEZE_NOTE_PREFIX)).map((l) => l.slice(FREEZE_NOTE_PREFIX.length).trim());
    return { freezeError: notes.length > 0 ? notes.join(' / ') : null };
  }

  async destroySnapshot(end: DiskEnd, snapshot: string): Promise<void> {
    await this.#run(['release', end.storage, end.disk.path, snapshot], `release of snapshot ${snapshot} of disk ${end.disk.path}`);
  }

  async openSnapshotRead(end: DiskEnd, snapshot: string): Promise<SnapshotReadable> {
    const child = this.#spawn(['send', 'image', end.storage, end.disk.path, snapshot], { stdout: 'stream' });
    const done = child.done.then((r) => {
      if (r.code !== 0) throw remoteError(this.node, `reading snapshot ${snapshot} of disk ${end.disk.path}`, r);
    });
    done.catch(() => undefined); // observed by done() callers; never an unhandled rejection
    return { stream: child.stdout as Readable, size: null, done: () => done };
  }

  async openImageSource(end: DiskEnd, snapshot: string): Promise<ImageSource> {
    return {
      kind: 'command',
      start: (stdoutTo) => {
        const child = this.#spawn(['send', 'image', end.storage, end.disk.path, snapshot], { stdoutTo });
        const done = child.done.then((r) => {
          if (r.code !== 0) throw remoteError(this.node, `reading snapshot ${snapshot} of disk ${end.disk.path}`, r);
          const m = IMAGE_TRAILER_RE.exec(r.stderr.trim().split('\n').pop() ?? '');
          if (!m) throw new StorageError('backend', `reading snapshot ${snapshot} of disk ${end.disk.path} on node ${this.node}: its send command gave no checksum (an older esnap there?)`);
          return { bytes: Number(m[1]), sha256: m[2]! };
        });
        done.catch(() => undefined);
        return { done, kill: (err) => child.kill(err) };
      },
    };
  }

  async openDiskWrite(end: DiskEnd, taskId: string): Promise<DiskWritable> {
    const child = this.#spawn(['receive', taskId, end.storage, end.disk.path], { stdin: 'pipe' });
    const stdin = child.stdin as NodeJS.WritableStream & { destroyed?: boolean };
    const hash = createHash('sha256');
    let failed: StorageError | null = null;
    const exited = child.done.then(
      (r) => {
        if (r.code !== 0) failed = remoteError(this.node, `writing disk ${end.disk.path}`, r);
        return r;
      },
      (err: unknown) => {
        failed = new StorageError('backend', `writing disk ${end.disk.path} on node ${this.node} failed: ${(err as Error).message}`);
        return null;
      },
    );
    // Our end of the image: ssh's stdin, without its end (that is commit's or abort's).
    const stream = new Writable({
      write(chunk: Buffer, _enc, cb) {
        if (failed) return cb(failed);
        hash.update(chunk);
        if (stdin.write(chunk)) cb();
        else stdin.once('drain', () => cb());
      },
      final(cb) {
        cb(failed);
      },
    });
    let settled = false;
    return {
      stream,
      pipe: stdin,
      commit: async (sha256?: string) => {
        if (settled) throw new StorageError('backend', 'receive already ended');
        settled = true;
        stdin.end(`${COMMIT_PREFIX}${sha256 ?? hash.digest('hex')}\n`);
        await exited;
        if (failed) throw failed;
      },
      abort: async () => {
        if (settled) return;
        settled = true;
        // No commit line: the other side drops what it wrote aside.
        child.kill(new Error('restore aborted'));
        await exited;
      },
    };
  }

  /**
   * The node's receive marks its own point of no return, out of this agent's reach: once the whole
   * stream is sent this task's is passed too, so that a cancel from then on answers 406 and waits
   * for the receive, instead of killing ssh while the node, which has all of the stream, replaces
   * the disk (the task would end REVOKED with the disk replaced). A cancel before it cuts the
   * stream, and the node keeps the old disk.
   */
  receiveDataset(end: DiskEnd, taskId: string, received: string, feed: DatasetFeed): Promise<void> {
    return feed(this.receiveDatasetArgv(end, taskId, received), { onStreamSent: pointOfNoReturnLater() });
  }

  /** `ssh … receive dataset <task> <storage> <disk> <snapshot>`: the consumer receiveDataset hands its feed. */
  receiveDatasetArgv(end: DiskEnd, taskId: string, received: string): string[] {
    return this.#argv(['receive', 'dataset', taskId, end.storage, end.disk.path, received]);
  }
}
