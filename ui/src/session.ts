/** Signing in and out, and learning who the credentials belong to (all through the public API). */
import { ApiFailure, request, seg } from './api.js';
import { saveCredentials, saveIdentity, loadCredentials, type Credentials, type Identity } from './auth.js';

/**
 * Any authenticated answer names the user and DC in its `es_username` / `es_dc` headers; the user
 * object says super admin; the DC object names its owner. A DC admin by role is not visible to a
 * non-super-admin, so `admin` may be false for one: the API still decides every write.
 */
async function identify(): Promise<Identity> {
  const probe = await request('GET', 'vm', { signingIn: true });
  const username = probe.headers.get('es_username') ?? '';
  const dc = probe.headers.get('es_dc') ?? 'main';
  if (username === '') throw new ApiFailure(0, 'The server did not say who is signed in.', null);
  const user = await request<{ result: { is_super_admin: boolean } }>('GET', `accounts/user/${seg(username)}`);
  const dcObj = await request<{ result: { owner: string | null } }>('GET', `dc/${seg(dc)}`);
  const superAdmin = user.body.result.is_super_admin === true;
  return { username, dc, superAdmin, admin: superAdmin || dcObj.body.result.owner === username };
}

async function establish(c: Credentials): Promise<Identity> {
  saveCredentials(c);
  try {
    const who = await identify();
    saveIdentity(who);
    return who;
  } catch (err) {
    saveCredentials(null);
    throw err;
  }
}

export async function signInWithKey(key: string): Promise<Identity> {
  return establish({ kind: 'key', key });
}

export async function signInWithPassword(username: string, password: string): Promise<Identity> {
  const r = await request<{ token: string; expires?: string }>('POST', 'accounts/login', { body: { username, password }, anonymous: true });
  return establish({ kind: 'token', token: r.body.token, expires: r.body.expires ?? null });
}

/** Token sessions are ended at the server too; an API key simply leaves this tab. */
export async function signOut(): Promise<void> {
  const c = loadCredentials();
  try {
    if (c?.kind === 'token') await request('GET', 'accounts/logout');
  } finally {
    saveCredentials(null);
  }
}
