/**
 * Task-log details as labelled fields: Danube writes them as `key=value` pairs joined by ", "
 * (strings in single quotes, `None`, `true`/`false`). A detail that is not such a list (a failure's
 * message) is returned whole as `null` fields. Pure.
 */
export function parseDetail(detail: string): [string, string][] | null {
  const text = detail.trim();
  if (text === '') return [];
  const out: [string, string][] = [];
  const re = /([A-Za-z_][A-Za-z0-9_]*)=('(?:[^']|'')*'|\[[^\]]*\]|[^,]*)(?:, ?|$)/y;
  let at = 0;
  while (at < text.length) {
    re.lastIndex = at;
    const m = re.exec(text);
    if (!m || m[0] === '') return null;
    const raw = m[2]!.trim();
    out.push([m[1]!, raw.startsWith("'") && raw.endsWith("'") && raw.length >= 2 ? raw.slice(1, -1) : raw]);
    at = re.lastIndex;
  }
  return out;
}
