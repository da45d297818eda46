/**
 * Reading an `ES-STREAM: es` answer (spec 12.3): whitespace bytes are keep-alives; the first other
 * byte starts the end, which is `<final status>\n<JSON>`. Without a status line (a Danube server
 * that timed out, or another ES-STREAM value) the status becomes `<http status>?`, as in Danube.
 *
 *   const r = new StreamReader();
 *   r.push(Buffer.from('  200\n{"status": "SUCCESS"}'), { keepAlive, end });   // 2 keepAlive, 1 end
 *   r.result(201)  →  { status: 200, text: '{"status": "SUCCESS"}' }
 */

// Python's bytes.isspace(): space, \t, \n, \v, \f, \r.
const isSpace = (b: number): boolean => b === 0x20 || (b >= 0x09 && b <= 0x0d);

export interface StreamEvents {
  keepAlive(): void;
  /** The first non-space byte arrived: the wait is over. */
  end(): void;
}

export class StreamReader {
  private readonly chunks: Buffer[] = [];
  private ended = false;

  /** True once the final part has started. */
  get finished(): boolean {
    return this.ended;
  }

  push(chunk: Buffer, events: StreamEvents): void {
    if (this.ended) {
      this.chunks.push(chunk);
      return;
    }
    for (let i = 0; i < chunk.length; i++) {
      if (isSpace(chunk[i]!)) {
        events.keepAlive();
        continue;
      }
      this.ended = true;
      events.end();
      this.chunks.push(chunk.subarray(i));
      return;
    }
  }

  /** The final status and body text; `<httpStatus>?` when no status line came. */
  result(httpStatus: number): { status: number | string; text: string } {
    if (!this.ended) return { status: `${httpStatus}?`, text: '' };
    const all = new TextDecoder().decode(Buffer.concat(this.chunks)).replace(/^[ \t\n\v\f\r]+|[ \t\n\v\f\r]+$/g, '');
    const nl = all.indexOf('\n');
    if (nl < 0) return { status: `${httpStatus}?`, text: all };
    const line = all.slice(0, nl).trim();
    // Python's int(): optional sign, digits (underscores between them), surrounding whitespace.
    const status = /^[-+]?\d+(_\d+)*$/.test(line) ? Number(line.replace(/_/g, '')) : `${httpStatus}?`;
    return { status, text: all.slice(nl + 1) };
  }
}
