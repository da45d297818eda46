/**
 * A value already serialised as JSON (by the database, for the snapshot list): the envelope
 * splices its text in as it is; anywhere else `JSON.stringify` sees the parsed value (`toJSON`),
 * so indentation and every other consumer work unchanged.
 */
export class JsonText {
  constructor(readonly text: string) {}

  toJSON(): unknown {
    return JSON.parse(this.text);
  }
}
