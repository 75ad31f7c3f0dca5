// The admin dashboard: signs in with an admin key (traded for an admin session token),
// then follows /admin/events (an SSE stream of overviews) and draws the charts and tables
// from it by hand, as SVG and DOM text. Jobs are opened and cancelled, keys created and
// revoked, through the same public routes (and JS client) as any other client.
import { Unauthorized } from "./modelport.js";
import { client, signIn, signOut } from "./session.js";

const $ = (id) => document.getElementById(id);
const board = $("dashboard");
const live = $("live");
let api = client("admin");
let last = null;
let stop = null;

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

const ago = (t) => {
  const s = Math.max(0, Date.now() / 1000 - t);
  return s < 90 ? `${Math.round(s)} s ago` : `${Math.round(s / 60)} min ago`;
};
const seconds = (s) => (s == null ? "" : s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(2)} s`);

/** One bar chart of `values` (one per minute of the last hour), as SVG with a text label. */
function chart(title, points, pick, unit, since, step) {
  const box = el("figure", { class: "chart" });
  const values = points.map((p) => [p.t, pick(p)]).filter(([, v]) => v != null);
  const latest = values.length ? values[values.length - 1][1] : null;
  const top = Math.max(1e-9, ...values.map(([, v]) => v));
  const width = 600;
  const height = 100;
  const x = (t) => ((t - since) / (step * 60)) * width;
  const y = (v) => height - 4 - (v / top) * (height - 8);
  const label = `${title}: ${latest == null ? "no data" : `${+latest.toFixed(3)} ${unit}`} (peak ${+top.toFixed(3)})`;
  const drawing = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label, preserveAspectRatio: "none" });
  const name = svg("title");
  name.textContent = label;
  drawing.append(name);
  const bar = width / 60;
  for (const [t, v] of values) {
    const top = y(v);
    drawing.append(svg("rect", { x: x(t).toFixed(1), y: top.toFixed(1), width: (bar - 1).toFixed(1), height: (height - top).toFixed(1) }));
  }
  box.append(drawing, el("figcaption", { class: "hint" }, label));
  return box;
}

function drawCharts(view) {
  const charts = $("charts");
  charts.replaceChildren();
  for (const endpoint of view.endpoints) {
    const points = view.series[endpoint.name] ?? [];
    const card = el("div", { class: "card", id: `chart-${endpoint.name}` });
    const head = el("h3", {}, `${endpoint.name} `);
    head.append(el("span", { class: `state state-${endpoint.state}` }, endpoint.state));
    card.append(head);
    card.append(
      el(
        "p",
        { class: "meta" },
        `${endpoint.queue_depth} queued · ${endpoint.running} running · ${endpoint.workers_online} workers online`,
      ),
    );
    card.append(chart("Throughput", points, (p) => p.throughput, "jobs/s", view.since, view.step));
    card.append(chart("Latency", points, (p) => p.latency, "s", view.since, view.step));
    card.append(chart("Queue depth", points, (p) => p.queued, "jobs", view.since, view.step));
    charts.append(card);
  }
}

function row(cells) {
  const tr = el("tr");
  for (const cell of cells) {
    const td = el("td");
    if (cell instanceof Node) td.append(cell);
    else td.textContent = cell ?? "";
    tr.append(td);
  }
  return tr;
}

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
      const tr = row([open, j.endpoint, el("span", { class: `state state-${j.status}` }, j.status), seconds(duration), j.error ?? "", actions]);
      tr.dataset.job = j.id;
      return tr;
    }),
  );
}

function draw(view) {
  last = view;
  drawCharts(view);
  drawWorkers(view);
  drawJobs(view);
  live.textContent = `Live · updated ${new Date(view.time * 1000).toLocaleTimeString()}`;
}

async function* sse(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data.push(line.slice(6));
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
    }
  }
}

async function reauthenticate() {
  if (stop) stop.abort();
  signOut("admin");
  board.hidden = true;
  api = await signIn("admin");
  board.hidden = false;
}

/** Follow the overviews; on a broken stream try again (waiting longer each time, at most 10 s). */
async function follow() {
  let failures = 0;
  for (;;) {
    stop = new AbortController();
    try {
      const response = await api._fetch("GET", "/admin/events", { accept: "text/event-stream", signal: stop.signal });
      for await (const message of sse(response)) {
        failures = 0;
        if (message.event === "overview") draw(message.data);
      }
    } catch (e) {
      if (e instanceof Unauthorized) {
        await reauthenticate();
        await loadKeys();
        continue;
      }
      if (stop.signal.aborted) return;
      live.textContent = `Disconnected (${e.message}); reconnecting`;
    }
    failures += 1;
    await new Promise((r) => setTimeout(r, Math.min(10_000, 250 * 2 ** failures)));
  }
}

async function openJob(id) {
  const box = $("job");
  box.hidden = false;
  box.replaceChildren(el("p", {}, `Loading job ${id}`));
  try {
    const job = await api.job(id);
    const d = job.data;
    const title = el("h3", {}, `Job ${d.id} `);
    title.append(el("span", { class: `state state-${d.status}` }, d.status));
    const facts = el("pre", {}, JSON.stringify(
      {
        endpoint: d.endpoint,
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
    const job = await api.job(id);
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
$("logout").addEventListener("click", async () => {
  await reauthenticate();
  await loadKeys();
  follow();
});

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
