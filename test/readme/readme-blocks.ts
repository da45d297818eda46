/**
 * The shell blocks of the README's first-hour sections, in order: the quick start (the text before
 * the first `## ` heading), "Five minutes with curl" and "The `es` client". Other sections are
 * never run, whatever they hold. A block preceded by `<!-- readme-test: skip (reason) -->` (blank
 * lines between allowed) is left out.
 */
export const RUN_SECTIONS = ['', 'Five minutes with curl', 'The `es` client'] as const;

export interface Block {
  /** The `## ` heading of its section, '' for the quick start. */
  readonly section: string;
  readonly code: string;
}

const SKIP = /^<!--\s*readme-test:\s*skip\b.*-->$/;

export function readmeBlocks(markdown: string): Block[] {
  const sections = new Map<string, string[]>([['', []]]);
  let current = '';
  for (const line of markdown.split('\n')) {
    const h = /^## (.+)$/.exec(line);
    if (h) {
      current = h[1]!.trim();
      sections.set(current, []);
    } else sections.get(current)!.push(line);
  }
  const blocks: Block[] = [];
  for (const section of RUN_SECTIONS) {
    const lines = sections.get(section);
    if (!lines) throw new Error(`README has no section "## ${section}"`);
    let skip = false;
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      if (SKIP.test(line.trim())) {
        skip = true;
        continue;
      }
      const fence = /^```(\w*)\s*$/.exec(line);
      if (!fence) {
        if (line.trim() !== '') skip = false;
        continue;
      }
      const body: string[] = [];
      for (i++; i < lines.length && !/^```\s*$/.test(lines[i]!); i++) body.push(lines[i]!);
      if (fence[1] === 'sh' && !skip) blocks.push({ section, code: body.join('\n') });
      skip = false;
    }
  }
  return blocks;
}
