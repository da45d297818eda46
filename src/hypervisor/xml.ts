/**
 * A small reader for the XML libvirt writes (domain descriptions from `virsh dumpxml`): elements,
 * attributes, text and the five predefined entities plus numeric references. It is not a general
 * XML parser (no DTDs, no namespaces, CDATA kept as text), which is all libvirt's output needs and
 * keeps esnap free of an XML dependency. Malformed input throws, it is never guessed at.
 *
 * Example:
 *   const dom = parseXml("<domain type='qemu'><name>web01</name></domain>");
 *   childText(dom, 'name') === 'web01'; dom.attrs['type'] === 'qemu'
 */
export interface XmlElement {
  readonly name: string;
  readonly attrs: Readonly<Record<string, string>>;
  readonly children: XmlElement[];
  text: string;
}

const ENTITIES: Readonly<Record<string, string>> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

function decode(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);/g, (whole, ref: string) => {
    if (ref.startsWith('#x')) return String.fromCodePoint(parseInt(ref.slice(2), 16));
    if (ref.startsWith('#')) return String.fromCodePoint(parseInt(ref.slice(1), 10));
    const e = ENTITIES[ref];
    if (e === undefined) throw new Error(`XML: unknown entity ${whole}`);
    return e;
  });
}

const TAG = /<(\/?)([A-Za-z_][\w.:-]*)((?:\s+[\w.:-]+\s*=\s*(?:'[^']*'|"[^"]*"))*)\s*(\/?)>/y;
const ATTR = /([\w.:-]+)\s*=\s*(?:'([^']*)'|"([^"]*)")/g;

export function parseXml(text: string): XmlElement {
  const stack: XmlElement[] = [];
  let root: XmlElement | null = null;
  let i = 0;
  while (i < text.length) {
    const lt = text.indexOf('<', i);
    const chunk = text.slice(i, lt < 0 ? text.length : lt);
    if (stack.length > 0) stack[stack.length - 1]!.text += decode(chunk);
    else if (chunk.trim() !== '') throw new Error('XML: text outside the root element');
    if (lt < 0) break;
    if (text.startsWith('<?', lt) || text.startsWith('<!--', lt)) {
      const end = text.startsWith('<?', lt) ? text.indexOf('?>', lt) : text.indexOf('-->', lt);
      if (end < 0) throw new Error('XML: unterminated declaration or comment');
      i = end + (text.startsWith('<?', lt) ? 2 : 3);
      continue;
    }
    TAG.lastIndex = lt;
    const m = TAG.exec(text);
    if (!m) throw new Error(`XML: bad tag at offset ${lt}`);
    i = TAG.lastIndex;
    const [, closing, name, attrText, selfClosing] = m;
    if (closing) {
      const open = stack.pop();
      if (!open || open.name !== name) throw new Error(`XML: </${name}> does not close <${open?.name ?? ''}>`);
      continue;
    }
    const attrs: Record<string, string> = {};
    for (const a of attrText!.matchAll(ATTR)) attrs[a[1]!] = decode(a[2] ?? a[3] ?? '');
    const el: XmlElement = { name: name!, attrs, children: [], text: '' };
    if (stack.length > 0) stack[stack.length - 1]!.children.push(el);
    else if (root) throw new Error('XML: more than one root element');
    else root = el;
    if (!selfClosing) stack.push(el);
  }
  if (!root || stack.length > 0) throw new Error('XML: document is empty or not closed');
  return root;
}

export function child(el: XmlElement, name: string): XmlElement | undefined {
  return el.children.find((c) => c.name === name);
}

export function children(el: XmlElement, name: string): XmlElement[] {
  return el.children.filter((c) => c.name === name);
}

/** Trimmed text of the first child `name`, or null when there is none. */
export function childText(el: XmlElement, name: string): string | null {
  const c = child(el, name);
  return c ? c.text.trim() : null;
}
