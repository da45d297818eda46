/**
 * A scripted QEMU guest agent on a real unix socket: one JSON line per command, a frozen flag and a
 * log of the commands it got. By default it answers as a healthy qemu-ga (sync echoes its id,
 * freeze returns 2 and freezes, thaw returns 2 when frozen); a script replaces answers to produce
 * the failures a real qemu-ga cannot be made to (a freeze that hangs, junk on the line, …).
 *
 * Example:
 *   const guest = await FakeGuestAgent.start(join(dir, 'qga.sock'), { freeze: () => 'silence' });
 *   …
 *   await guest.stop();
 */
import { createServer, type Server, type Socket } from 'node:net';

export type GuestReply = { return: unknown } | { error: { class: string; desc: string } } | 'silence' | 'hangup';

export interface GuestScript {
  /** Answer to guest-sync number n (1-based, over all connections); default: the id. */
  sync?: (n: number, id: number) => GuestReply;
  freeze?: () => GuestReply | Promise<GuestReply>;
  thaw?: () => GuestReply;
  /** Lines written before each reply (stale answers, junk). */
  noise?: string[];
}

/** A scripted guest agent: one JSON line per command, a frozen flag, a log of what it got. */
export class FakeGuestAgent {
  readonly events: string[] = [];
  frozen = false;
  /** Set when a freeze arrived while already frozen: two freezes overlapped. */
  overlapped = false;
  syncs = 0;
  private readonly conns = new Set<Socket>();
  private constructor(
    private readonly server: Server,
    readonly path: string,
    public script: GuestScript,
  ) {}

  static async start(path: string, script: GuestScript = {}): Promise<FakeGuestAgent> {
    const server = createServer();
    const agent = new FakeGuestAgent(server, path, script);
    server.on('connection', (s) => agent.serve(s));
    await new Promise<void>((resolve) => server.listen(path, resolve));
    return agent;
  }

  private serve(s: Socket): void {
    this.conns.add(s);
    s.on('close', () => this.conns.delete(s));
    s.on('error', () => undefined);
    let buf = '';
    s.on('data', (chunk: Buffer) => {
      buf += chunk.toString('latin1');
      for (let nl = buf.indexOf('\n'); nl !== -1; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl).replace(/^\xff+/, '');
        buf = buf.slice(nl + 1);
        void this.handle(s, line);
      }
    });
  }

  private async handle(s: Socket, line: string): Promise<void> {
    const req = JSON.parse(line) as { execute: string; arguments?: { id?: number } };
    this.events.push(req.execute);
    let reply: GuestReply;
    switch (req.execute) {
      case 'guest-sync': {
        this.syncs++;
        const id = req.arguments?.id ?? 0;
        reply = this.script.sync?.(this.syncs, id) ?? { return: id };
        break;
      }
      case 'guest-fsfreeze-freeze':
        if (this.frozen) this.overlapped = true;
        reply = (await this.script.freeze?.()) ?? { return: 2 };
        if (typeof reply === 'object' && 'return' in reply && (reply.return as number) > 0) this.frozen = true;
        break;
      case 'guest-fsfreeze-thaw':
        reply = this.script.thaw?.() ?? { return: this.frozen ? 2 : 0 };
        if (typeof reply === 'object' && 'return' in reply) this.frozen = false;
        break;
      case 'guest-fsfreeze-status':
        reply = { return: this.frozen ? 'frozen' : 'thawed' };
        break;
      default:
        reply = { error: { class: 'CommandNotFound', desc: `The command ${req.execute} has not been found` } };
    }
    if (reply === 'silence') return;
    if (reply === 'hangup') {
      s.destroy();
      return;
    }
    for (const n of this.script.noise ?? []) s.write(`${n}\n`);
    s.write(`${JSON.stringify(reply)}\n`);
  }

  async stop(): Promise<void> {
    for (const c of this.conns) c.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
