/** The shell: sign-in gate, header with navigation and sign-out, the page of the current route. */
import { useEffect, useState } from 'preact/hooks';
import { loadCredentials, loadIdentity, type Identity } from './auth.js';
import { on } from './events.js';
import { navigate, onLinkClick, useRoute } from './router.js';
import { signOut } from './session.js';
import { Login } from './pages/login.js';
import { Overview } from './pages/overview.js';
import { VmPage } from './pages/vm.js';
import { TasksPage, TrackedList } from './pages/tasks.js';
import { BackupsPage } from './pages/backups.js';

export function App() {
  const [who, setWho] = useState<Identity | null>(() => (loadCredentials() ? loadIdentity() : null));
  const [notice, setNotice] = useState<string | null>(null);
  const route = useRoute();

  useEffect(
    () =>
      on('signed-out', ({ message }) => {
        setWho(null);
        setNotice(message ? `Signed out: ${message}` : null);
      }),
    [],
  );
  useEffect(() => {
    if (route.page === 'overview') document.title = 'Overview · esnap';
  }, [route.page]);

  if (!who) {
    return (
      <Login
        notice={notice}
        onSignedIn={(w) => {
          setNotice(null);
          setWho(w);
        }}
      />
    );
  }

  const link = (href: string, label: string, current: boolean) => (
    <a href={href} aria-current={current ? 'page' : undefined} onClick={(e) => onLinkClick(e, href)}>
      {label}
    </a>
  );
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <span class="brand">esnap</span>
        <nav aria-label="Main">
          {link('/', 'Overview', route.page === 'overview')}
          {link('/backups', 'Backups', route.page === 'backups')}
          {link('/tasks', 'Tasks', route.page === 'tasks')}
        </nav>
        <span class="who">
          {who.username} in DC {who.dc}
        </span>
        <button
          type="button"
          onClick={() => {
            void signOut().finally(() => {
              setWho(null);
              setNotice('You are signed out.');
              navigate('/');
            });
          }}
        >
          Sign out
        </button>
      </header>
      <div class="activity" role="region" aria-label="Recent tasks">
        <TrackedList compact />
      </div>
      {route.page === 'overview' ? <Overview /> : null}
      {route.page === 'vm' ? <VmPage key={route.hostname} hostname={route.hostname} who={who} /> : null}
      {route.page === 'backups' ? <BackupsPage key={route.hostname ?? ''} hostname={route.hostname} who={who} /> : null}
      {route.page === 'tasks' ? <TasksPage /> : null}
      {route.page === 'missing' ? (
        <main id="main">
          <h1>Not found</h1>
          <p>{link('/', 'Back to the overview', false)}</p>
        </main>
      ) : null}
    </>
  );
}
