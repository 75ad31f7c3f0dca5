// The admin dashboard: signs in with an admin key (traded for an admin session token),
// then follows /admin/events (an SSE stream of overviews) and draws the charts and tables
// from it by hand, as SVG and DOM text. Jobs are opened and cancelled, keys created and
// revoked, through the same public routes (and JS client) as any other client.
import { EndpointsPanel } from "./admin-endpoints.js";
import { $, el, row } from "./dom.js";
import { readEvents, Unauthorized } from "./modelport.js";
import { client, signIn, signOut } from "./session.js";

const board = $("dashboard");
const live = $("live");
let api = client("admin");
let last = null;
let stop = null;

const ago = (t) => {
  const s = Math.max(0, Date.now() / 1000 - t);
  return s < 90 ? `${Math.round(s)} s ago` : `${Math.round(s / 60)} min ago`;
};
const seconds = (s) => (s == null ? "" : s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(2)} s`);

function drawWorkers(view) {
  const body = $("workers").tBodies[0];
  body.replaceChildren(
    ...view.workers.map((w) => {
      const meta = w.metadata ?? {};
      const model = meta.model ?? {};
      const tr = row([
        w.name,
        el("span", { class: `state state-${w.state}` }, w.state),
        meta.host ?? "",
        meta.device ?? "",
        (w.endpoints ?? []).join(", "),
        model.version ?? "",
        String(w.jobs_done),
        ago(w.last_seen),
      ]);
      tr.dataset.worker = w.id;
      return tr;
    }),
  );
}

function drawJobs(view) {
  const endpoints = $("filter-endpoint");
  const known = new Set([...endpoints.options].map((o) => o.value));
  for (const e of view.endpoints) if (!known.has(e.name)) endpoints.append(el("option", { value: e.name }, e.name));
  const wantEndpoint = endpoints.value;
  const wantStatus = $("filter-status").value;
  const seen = new Set();
  const jobs = [...view.running, ...view.queued, ...view.recent].filter((j) => {
    if (seen.has(j.id)) return false;
    seen.add(j.id);
    return (!wantEndpoint || j.endpoint === wantEndpoint) && (!wantStatus || j.status === wantStatus);
  });
  $("jobs").tBodies[0].replaceChildren(
    ...jobs.map((j) => {
      const open = el("button", { type: "button", "data-open": j.id }, j.id);
      const actions = el("span");
      if (j.status === "queued" || j.status === "running") {
        actions.append(el("button", { type: "button", "data-cancel": j.id, "aria-label": `Cancel job ${j.id}` }, "Cancel"));
      }
      const duration = j.duration ?? (j.started_at ? view.time - j.started_at : null);
      const tr = row([
        open,
        j.endpoint,
        j.revision == null ? "" : String(j.revision),
        j.model_version ?? "",
        el("span", { class: `state state-${j.status}` }, j.status),
        seconds(duration),
        j.error ?? "",
        actions,
      ]);
      tr.dataset.job = j.id;
      return tr;
    }),
  );
}

function draw(view) {
  last = view;
  endpoints.draw(view);
  drawWorkers(view);
  drawJobs(view);
  live.textContent = `Live · updated ${new Date(view.time * 1000).toLocaleTimeString()}`;
}

async function reauthenticate() {
  if (stop) stop.abort();
  signOut("admin");
  board.hidden = true;
  api = await signIn("admin");
  board.hidden = false;
}

/**
 * Follow the overviews until a new sign-in stops it; on a broken stream try again
 * (waiting longer each time, at most 10 s).
 */
async function follow() {
  const mine = (stop = new AbortController());
  let failures = 0;
  while (!mine.signal.aborted) {
    try {
      const response = await api._fetch("GET", "/admin/events", { accept: "text/event-stream", signal: mine.signal });
      for await (const message of readEvents(response)) {
        failures = 0;
        if (message.event === "overview") draw(message.data);
      }
    } catch (e) {
      if (mine.signal.aborted) return;
      if (e instanceof Unauthorized) {
        signInAgain();
        return;
      }
      live.textContent = `Disconnected (${e.message}); reconnecting`;
    }
    failures += 1;
    await new Promise((r) => setTimeout(r, Math.min(10_000, 250 * 2 ** failures)));
  }
}

let again = null;

/** Sign in again (the session expired or was revoked, or the user signed out), then follow anew. */
function signInAgain() {
  again ??= (async () => {
    await reauthenticate();
    await loadKeys();
    follow();
  })().finally(() => {
    again = null;
  });
  return again;
}

/** Run `work(client)` with the admin session, signing in again when the server asks to. */
async function act(work) {
  for (;;) {
    try {
      return await work(api);
    } catch (e) {
      if (!(e instanceof Unauthorized)) throw e;
      await signInAgain();
    }
  }
}

const endpoints = new EndpointsPanel(act, (text) => {
  $("endpoints-status").textContent = text;
});

async function openJob(id) {
  const box = $("job");
  box.hidden = false;
  box.replaceChildren(el("p", {}, `Loading job ${id}`));
  try {
    const job = await act((c) => c.job(id));
    const d = job.data;
    const title = el("h3", {}, `Job ${d.id} `);
    title.append(el("span", { class: `state state-${d.status}` }, d.status));
    const facts = el("pre", {}, JSON.stringify(
      {
        endpoint: d.endpoint,
        revision: d.revision,
        model_version: d.model_version,
        attempts: d.attempts,
        worker: d.worker,
        queue_time: d.queue_time,
        compute_time: d.compute_time,
        progress: d.progress && { fraction: d.progress.fraction, message: d.progress.message },
        error: d.error,
      },
      null,
      2,
    ));
    box.replaceChildren(title, facts);
    if (!job.done) {
      const cancel = el("button", { type: "button", "data-cancel": d.id }, "Cancel this job");
      box.append(cancel);
    }
  } catch (e) {
    box.replaceChildren(el("p", { class: "error" }, e.message));
  }
}

async function cancelJob(id) {
  try {
    const job = await act((c) => c.job(id));
    await job.cancel();
    live.textContent = `Job ${id} cancelled`;
  } catch (e) {
    live.textContent = `Could not cancel job ${id}: ${e.message}`;
  }
  if (!$("job").hidden) await openJob(id);
}

async function loadKeys() {
  const keys = await api._json("GET", "/keys");
  $("keys").tBodies[0].replaceChildren(
    ...keys.map((k) => {
      const revoke = el("button", { type: "button", "data-revoke": k.id, "aria-label": `Revoke key ${k.id}` }, "Revoke");
      const tr = row([k.id, k.name, k.scope, k.endpoints ? k.endpoints.join(", ") : "all", k.last_used ? ago(k.last_used) : "never", revoke]);
      tr.dataset.key = k.id;
      return tr;
    }),
  );
}

async function createKey(event) {
  event.preventDefault();
  $("key-error").textContent = "";
  const body = { scope: $("key-scope").value };
  const name = $("key-name").value.trim();
  if (name) body.name = name;
  const endpoints = $("key-endpoints").value.split(",").map((s) => s.trim()).filter(Boolean);
  if (endpoints.length) body.endpoints = endpoints;
  try {
    const created = await api._json("POST", "/keys", { body });
    $("key-created").textContent = `Created ${created.scope} key ${created.id}. Its secret, shown only now: `;
    $("key-created").append(el("code", { id: "key-secret" }, created.key));
    $("new-key").reset();
    await loadKeys();
  } catch (e) {
    $("key-error").textContent = e.errors?.length ? e.errors.map((x) => `${x.field}: ${x.message}`).join("; ") : e.message;
  }
}

document.addEventListener("click", async (event) => {
  const target = event.target.closest("button");
  if (!target) return;
  if (target.dataset.open) await openJob(target.dataset.open);
  else if (target.dataset.cancel) await cancelJob(target.dataset.cancel);
  else if (target.dataset.revoke) {
    try {
      await api._json("DELETE", `/keys/${encodeURIComponent(target.dataset.revoke)}`);
      live.textContent = `Key ${target.dataset.revoke} revoked`;
    } catch (e) {
      $("key-error").textContent = e.message;
    }
    await loadKeys();
  }
});
$("open-job").addEventListener("click", () => {
  const id = $("job-id").value.trim();
  if (id) openJob(id);
});
for (const id of ["filter-endpoint", "filter-status"]) {
  $(id).addEventListener("change", () => last && drawJobs(last));
}
$("new-key").addEventListener("submit", createKey);
$("logout").addEventListener("click", signInAgain);

async function main() {
  if (!api.sessionToken) api = await signIn("admin");
  for (;;) {
    try {
      await loadKeys();
      break;
    } catch (e) {
      if (!(e instanceof Unauthorized)) throw e;
      await reauthenticate();
    }
  }
  board.hidden = false;
  document.body.dataset.ready = "true";
  await follow();
}

main().catch((e) => {
  live.textContent = e.message || String(e);
});
