/** History-API routing: `/`, `/vm/<hostname>`, `/backups`, `/backups/<hostname>`, `/tasks`. The server answers index.html for these. */
import { useEffect, useState } from 'preact/hooks';

export type Route =
  | { readonly page: 'overview' }
  | { readonly page: 'vm'; readonly hostname: string }
  | { readonly page: 'backups'; readonly hostname: string | null }
  | { readonly page: 'tasks' }
  | { readonly page: 'missing' };

export function parseRoute(pathname: string): Route {
  if (pathname === '/' || pathname === '/index.html') return { page: 'overview' };
  if (pathname === '/tasks' || pathname === '/tasks/') return { page: 'tasks' };
  if (pathname === '/backups' || pathname === '/backups/') return { page: 'backups', hostname: null };
  const m = /^\/(vm|backups)\/([^/]+)\/?$/.exec(pathname);
  if (m) {
    try {
      const hostname = decodeURIComponent(m[2]!);
      return m[1] === 'vm' ? { page: 'vm', hostname } : { page: 'backups', hostname };
    } catch {
      return { page: 'missing' };
    }
  }
  return { page: 'missing' };
}

/** The backups page of one VM, or of all VMs. */
export function backupsPath(hostname: string | null): string {
  return hostname === null ? '/backups' : `/backups/${encodeURIComponent(hostname)}`;
}

export function vmPath(hostname: string): string {
  return `/vm/${encodeURIComponent(hostname)}`;
}

const subscribers = new Set<() => void>();
window.addEventListener('popstate', () => subscribers.forEach((f) => f()));

export function navigate(path: string): void {
  if (path === location.pathname + location.search) return;
  history.pushState(null, '', path);
  subscribers.forEach((f) => f());
  window.scrollTo(0, 0);
}

export function useRoute(): Route {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const f = (): void => setPath(location.pathname);
    subscribers.add(f);
    return () => void subscribers.delete(f);
  }, []);
  return parseRoute(path);
}

/** Left clicks without modifiers stay in the app; others (new tab) keep the browser's way. */
export function onLinkClick(e: MouseEvent, href: string): void {
  if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  navigate(href);
}
