// The page's credential: a session token for this tab (never an API key), traded for a key
// the user types into the sign-in form, kept in sessionStorage, sent as a Bearer header.
import { Client, Unauthorized } from "./modelport.js";

const data = document.body.dataset;
export const root = data.root || "";
export const origin = location.origin + root;
const slot = (scope) => `modelport.session.${scope}`;

/** A client for this page's calls, with the tab's session token of `scope` if there is one. */
export function client(scope = "client") {
  const token = sessionStorage.getItem(slot(scope));
  return new Client(origin, token ? { sessionToken: token } : {});
}

export function signOut(scope) {
  sessionStorage.removeItem(slot(scope));
}

/**
 * Show the sign-in form until a key is traded for a session of `scope` ("client" or
 * "admin"); resolve with a client holding the session token. The key is cleared from the
 * field at once and kept nowhere.
 */
const pending = {};

export function signIn(scope = "client") {
  pending[scope] ??= showSignIn(scope).finally(() => delete pending[scope]);
  return pending[scope];
}

function showSignIn(scope) {
  const section = document.getElementById("login");
  const form = document.getElementById("login-form");
  const field = document.getElementById("login-key");
  const error = document.getElementById("login-error");
  section.hidden = false;
  field.focus();
  return new Promise((resolve) => {
    const onSubmit = async (event) => {
      event.preventDefault();
      const key = field.value.trim();
      field.value = "";
      error.textContent = "";
      if (!key) {
        error.textContent = "Enter an API key.";
        return;
      }
      try {
        const keyed = new Client(origin, { apiKey: key });
        const session =
          scope === "admin"
            ? await keyed._json("POST", "/sessions", { body: { scope: "admin" } })
            : await keyed.createSession();
        sessionStorage.setItem(slot(scope), session.token);
        form.removeEventListener("submit", onSubmit);
        section.hidden = true;
        resolve(new Client(origin, { sessionToken: session.token }));
      } catch (e) {
        error.textContent = e.message || String(e);
        field.focus();
      }
    };
    form.addEventListener("submit", onSubmit);
  });
}

/**
 * Run `work(client)`; when the server answers 401 (no credential, or one expired or
 * revoked), forget the token, sign in and run it again.
 */
export async function withSession(scope, work, { required = false } = {}) {
  let current = client(scope);
  if (required && !current.sessionToken) current = await signIn(scope);
  for (;;) {
    try {
      return await work(current);
    } catch (e) {
      if (!(e instanceof Unauthorized)) throw e;
      signOut(scope);
      current = await signIn(scope);
    }
  }
}
