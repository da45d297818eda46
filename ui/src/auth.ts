/**
 * Credentials live in sessionStorage only (gone when the tab closes) and travel only in headers:
 * `ES-API-KEY: <key>` or `Authorization: Token <token>`, never in a URL.
 */
export type Credentials =
  | { readonly kind: 'key'; readonly key: string }
  | { readonly kind: 'token'; readonly token: string; readonly expires: string | null };

/** Who is signed in, learned from the API after sign-in. */
export interface Identity {
  readonly username: string;
  readonly dc: string;
  readonly superAdmin: boolean;
  /** Super admin or owner of the current DC; DC admins by role are not visible to them, the API decides. */
  readonly admin: boolean;
}

const KEY = 'esnap.credentials';
const WHO = 'esnap.identity';

/** What was saved under `key`, or null when nothing (or nothing readable) is there. */
function load<T>(key: string): T | null {
  try {
    const raw = sessionStorage.getItem(key);
    return raw ? (JSON.parse(raw) as T) : null;
  } catch {
    return null;
  }
}

export function loadCredentials(): Credentials | null {
  return load<Credentials>(KEY);
}

export function saveCredentials(c: Credentials | null): void {
  if (c) sessionStorage.setItem(KEY, JSON.stringify(c));
  else {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(WHO);
  }
}

export function loadIdentity(): Identity | null {
  return load<Identity>(WHO);
}

export function saveIdentity(who: Identity): void {
  sessionStorage.setItem(WHO, JSON.stringify(who));
}

export function authHeaders(c: Credentials | null): Record<string, string> {
  if (!c) return {};
  return c.kind === 'key' ? { 'ES-API-KEY': c.key } : { Authorization: `Token ${c.token}` };
}
