/** Sign-in: username and password (a token) beside an API key, both visible, Enter submits either. */
import { useState } from 'preact/hooks';
import { ErrorText } from '../components.js';
import { signInWithKey, signInWithPassword } from '../session.js';
import type { Identity } from '../auth.js';

export function Login({ onSignedIn, notice }: { onSignedIn: (who: Identity) => void; notice: string | null }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [apiKey, setApiKey] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const attempt = async (fn: () => Promise<Identity>): Promise<void> => {
    setBusy(true);
    setError(null);
    try {
      onSignedIn(await fn());
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };

  return (
    <main id="main" class="login">
      <h1>Sign in to esnap</h1>
      {notice ? (
        <p class="notice" role="status">
          {notice}
        </p>
      ) : null}
      <ErrorText error={error} />
      <div class="login-forms">
        <form
          aria-labelledby="login-password-title"
          onSubmit={(e) => {
            e.preventDefault();
            void attempt(() => signInWithPassword(username, password));
          }}
        >
          <h2 id="login-password-title">With username and password</h2>
          <label>
            Username
            <input name="username" autocomplete="username" required value={username} onInput={(e) => setUsername(e.currentTarget.value)} />
          </label>
          <label>
            Password
            <input
              name="password"
              type="password"
              autocomplete="current-password"
              required
              value={password}
              onInput={(e) => setPassword(e.currentTarget.value)}
            />
          </label>
          <button type="submit" disabled={busy}>
            Sign in
          </button>
        </form>
        <form
          aria-labelledby="login-key-title"
          onSubmit={(e) => {
            e.preventDefault();
            void attempt(() => signInWithKey(apiKey.trim()));
          }}
        >
          <h2 id="login-key-title">With an API key</h2>
          <label for="api_key">API key</label>
          <input id="api_key" name="api_key" type="password" autocomplete="off" required value={apiKey} onInput={(e) => setApiKey(e.currentTarget.value)} />
          <button type="submit" disabled={busy}>
            Sign in with API key
          </button>
        </form>
      </div>
    </main>
  );
}
