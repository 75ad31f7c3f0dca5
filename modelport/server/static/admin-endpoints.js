// The admin dashboard's endpoints: a card per endpoint (its state and the reason, queue,
// workers, the last hour as charts) with its controls (disable with a reason, enable,
// drain), its log lines and its details (revision, metadata, each worker's model). A card
// is kept from one overview to the next and only its figures redrawn, so a reason being
// typed, or the focus, is not lost every 2 s. Everything is set as text.
import { $, el, row } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

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

/** Milliseconds a card keeps the state a control answered, until an overview shows it. */
const HOLD = 5000;

const json = (value) => JSON.stringify(value ?? {}, null, 2);

export class EndpointsPanel {
  /**
   * `act(work)` runs `work(client)` with the dashboard's admin session (signing in again
   * when it expired); `say(text)` announces what happened.
   */
  constructor(act, say) {
    this.act = act;
    this.say = say;
    this.cards = new Map();
    this.gone = new Map();  // endpoint → until when an overview may still list it (drained)
    this.logsOf = null;
    this.logsShown = null;
    this.loadingLogs = false;
    this.logsAgain = false;
    for (const id of ["logs-level", "logs-job", "logs-limit"]) {
      $(id).addEventListener("change", () => this.loadLogs());
    }
    $("logs-close").addEventListener("click", () => {
      const name = this.logsOf;
      this.logsOf = null;
      $("logs").hidden = true;
      this.cards.get(name)?.logs.focus();
    });
  }

  /**
   * Draw an overview: add, update and remove the cards, and refresh the logs shown. An
   * overview made just before a control's change is not let undo it on the page: for a
   * few seconds, until one shows the change, a card keeps the state the control answered.
   */
  draw(view) {
    const charts = $("charts");
    const now = performance.now();
    for (const [name, until] of this.gone) if (until < now) this.gone.delete(name);
    const shown = view.endpoints.filter((e) => !this.gone.has(e.name));
    const names = new Set(shown.map((e) => e.name));
    for (const [name, card] of this.cards) {
      if (!names.has(name)) this.forget(name, card);
    }
    let previous = null;
    for (const endpoint of shown) {
      const card = this.cards.get(endpoint.name) ?? this.make(endpoint.name);
      const expected = previous ? previous.nextElementSibling : charts.firstElementChild;
      if (card.box !== expected) charts.insertBefore(card.box, expected);
      const held = card.held;
      if (held && (held.state === endpoint.state || held.until < now)) card.held = null;
      if (card.held) this.update(card, { ...endpoint, state: held.state, reason: held.reason });
      else this.update(card, endpoint);
      const points = view.series[endpoint.name] ?? [];
      card.figures.replaceChildren(
        chart("Throughput", points, (p) => p.throughput, "jobs/s", view.since, view.step),
        chart("Latency", points, (p) => p.latency, "s", view.since, view.step),
        chart("Queue depth", points, (p) => p.queued, "jobs", view.since, view.step),
      );
      previous = card.box;
    }
    if (this.logsOf !== null && names.has(this.logsOf)) this.loadLogs();
  }

  forget(name, card) {
    card.box.remove();
    this.cards.delete(name);
  }

  make(name) {
    const box = el("div", { class: "card endpoint", id: `chart-${name}` });
    box.dataset.endpoint = name;
    const head = el("h3", {}, `${name} `);
    const state = el("span", { class: "state" });
    head.append(state);
    const reason = el("p", { class: "reason" });
    const meta = el("p", { class: "meta" });
    const controls = el("form", { class: "controls" });
    const id = `reason-${name}`;
    const label = el("label", { for: id }, "Reason");
    label.append(el("span", { class: "visually-hidden" }, ` to disable ${name}`));
    const why = el("input", { type: "text", id, maxlength: "500", placeholder: "shown to callers" });
    const reasonField = el("span", { class: "field" });
    reasonField.append(label, why);
    const disable = el("button", { type: "submit", "aria-label": `Disable ${name}` }, "Disable");
    const enable = el("button", { type: "button", "aria-label": `Enable ${name}` }, "Enable");
    const drain = el("button", { type: "button", "aria-label": `Drain ${name}` }, "Drain…");
    const confirm = el("span", { class: "confirm", hidden: "" });
    const yes = el("button", { type: "button", "aria-label": `Confirm: drain ${name}` }, "Drain");
    const no = el("button", { type: "button" }, "Keep it");
    confirm.append(el("span", {}, `Delete ${name} once its queued and running jobs are done? `), yes, no);
    const logs = el("button", { type: "button", "aria-label": `Logs of ${name}` }, "Logs");
    const details = el("button", { type: "button", "aria-label": `Details of ${name}` }, "Details");
    controls.append(reasonField, disable, enable, drain, confirm, logs, details);
    const error = el("p", { class: "error", role: "alert" });
    const figures = el("div", { class: "figures" });
    box.append(head, reason, meta, controls, error, figures);
    const card = { name, box, state, reason, meta, reasonField, why, disable, enable, drain, confirm, logs, details, error, figures };
    this.cards.set(name, card);

    controls.addEventListener("submit", (event) => {
      event.preventDefault();
      this.disable(card);
    });
    enable.addEventListener("click", () => this.enable(card));
    drain.addEventListener("click", () => {
      drain.hidden = true;
      confirm.hidden = false;
      yes.focus();
    });
    no.addEventListener("click", () => {
      confirm.hidden = true;
      drain.hidden = false;
      drain.focus();
    });
    yes.addEventListener("click", () => this.drainOut(card));
    logs.addEventListener("click", () => this.showLogs(name));
    details.addEventListener("click", () => this.showDetails(name));
    return card;
  }

  /** Show an endpoint's state, reason and queue (from an overview or a control's answer). */
  update(card, endpoint) {
    card.last = endpoint;
    const { state } = endpoint;
    card.state.textContent = state;
    card.state.className = `state state-${state}`;
    const stopped = state === "disabled" || state === "deleting";
    card.reason.textContent = endpoint.reason ?? "";
    card.reason.className = stopped ? "reason stopped" : "reason";
    card.reason.hidden = !endpoint.reason;
    const workers = endpoint.workers_online;
    card.meta.textContent =
      `${endpoint.queue_depth} queued · ${endpoint.running} running · ${workers} worker${workers === 1 ? "" : "s"} online` +
      (endpoint.revision > 1 ? ` · revision ${endpoint.revision}` : "");
    card.reasonField.hidden = card.disable.hidden = stopped;
    card.enable.hidden = state !== "disabled";
    if (state === "deleting") card.confirm.hidden = true;
    card.drain.hidden = state === "deleting" || !card.confirm.hidden;
  }

  /** Run a control of `card`; its buttons wait meanwhile and a refusal is shown on it. */
  async control(card, work) {
    card.error.textContent = "";
    const buttons = [...card.box.querySelectorAll("button")];
    for (const button of buttons) button.disabled = true;
    try {
      const done = await this.act(work);
      card.held = { state: done.state, reason: done.reason ?? null, until: performance.now() + HOLD };
      return done;
    } catch (e) {
      card.error.textContent = e.message || String(e);
      return null;
    } finally {
      for (const button of buttons) button.disabled = false;
    }
  }

  async disable(card) {
    const reason = card.why.value.trim();
    const done = await this.control(card, (c) => c.disableEndpoint(card.name, reason ? { reason } : {}));
    if (done === null) return;
    card.why.value = "";
    this.update(card, done);
    this.say(`${card.name} disabled${reason ? `: ${reason}` : ""}`);
    card.enable.focus();
  }

  async enable(card) {
    const done = await this.control(card, (c) => c.enableEndpoint(card.name));
    if (done === null) return;
    this.update(card, done);
    this.say(`${card.name} enabled`);
    card.why.focus();
  }

  async drainOut(card) {
    const done = await this.control(card, (c) => c.deleteEndpoint(card.name));
    if (done === null) return;
    if (done.state === "deleted") {
      this.gone.set(card.name, performance.now() + HOLD);
      this.forget(card.name, card);
      this.say(`${card.name} deleted`);
      $("endpoints-title").focus();
      return;
    }
    card.confirm.hidden = true;
    this.update(card, { ...card.last, state: "deleting", reason: null });
    this.say(`${card.name} is draining: ${done.queued} queued and ${done.running} running jobs finish first`);
  }

  async showLogs(name) {
    this.logsOf = name;
    this.logsShown = null;
    $("logs").hidden = false;
    $("logs-title").textContent = `Logs of ${name}`;
    $("log-lines").tBodies[0].replaceChildren();
    await this.loadLogs();
    $("logs-level").focus();
  }

  /** Read the shown endpoint's newest lines with the chosen filters (again on each overview). */
  async loadLogs() {
    const name = this.logsOf;
    if (name === null) return;
    if (this.loadingLogs) {
      this.logsAgain = true;  // the filters may have changed meanwhile: read once more after
      return;
    }
    const level = $("logs-level").value;
    const filters = { level, limit: $("logs-limit").value.trim() || undefined };
    const job = $("logs-job").value.trim();
    if (job) filters.job = job;
    const status = $("logs-status");
    const tell = (text) => {
      if (status.textContent !== text) status.textContent = text;
    };
    this.loadingLogs = true;
    try {
      const lines = await this.act((c) => c.endpointLogs(name, filters));
      if (name !== this.logsOf) return;
      const seen = JSON.stringify([name, filters, lines.length, lines.at(-1) ?? null]);
      if (seen === this.logsShown) return;
      this.logsShown = seen;
      $("log-lines").tBodies[0].replaceChildren(
        ...lines.map((line) => {
          const open = el("button", { type: "button", "data-open": line.job_id, "aria-label": `Open job ${line.job_id}` }, line.job_id);
          const tr = row([
            new Date(line.time * 1000).toISOString().replace("T", " ").replace("Z", ""),
            el("span", { class: `level level-${line.level}` }, line.level),
            open,
            line.stream,
            el("pre", { class: "line" }, line.message),
          ]);
          tr.dataset.level = line.level;
          return tr;
        }),
      );
      const of = level === "debug" ? "" : `, ${level} and above`;
      tell(`${lines.length} line${lines.length === 1 ? "" : "s"} of ${name}${of}${job ? ` of job ${job}` : ""}`);
    } catch (e) {
      this.logsShown = null;
      tell(e.message || String(e));
    } finally {
      this.loadingLogs = false;
      if (this.logsAgain) {
        this.logsAgain = false;
        this.loadLogs();
      }
    }
  }

  async showDetails(name) {
    const box = $("endpoint-detail");
    box.hidden = false;
    box.replaceChildren(el("p", {}, `Loading ${name}`));
    try {
      const found = await this.act((c) => c.endpointMetadata(name));
      const title = el("h3", {}, `${found.name} · version ${found.version} · revision ${found.revision}`);
      const parts = [title];
      if (found.description) parts.push(el("p", {}, found.description));
      parts.push(el("h4", {}, "Metadata"), el("pre", { class: "metadata" }, json(found.metadata)));
      parts.push(el("h4", {}, "Workers' models"));
      if (found.workers_differ) {
        parts.push(el("p", { class: "error" }, "The workers describe their models differently."));
      }
      const table = el("table", { class: "worker-models" });
      const head = el("tr");
      for (const heading of ["Worker", "State", "Revision", "Device", "Model"]) head.append(el("th", { scope: "col" }, heading));
      table.append(el("thead"), el("tbody"));
      table.tHead.append(head);
      table.tBodies[0].append(
        ...found.workers.map((w) => row([w.name, w.state, String(w.revision), w.device ?? "", el("pre", {}, json(w.model))])),
      );
      parts.push(found.workers.length ? table : el("p", { class: "hint" }, "No worker serves it now."));
      const close = el("button", { type: "button" }, "Close details");
      close.addEventListener("click", () => {
        box.hidden = true;
        this.cards.get(name)?.details.focus();
      });
      parts.push(close);
      box.replaceChildren(...parts);
    } catch (e) {
      box.replaceChildren(el("p", { class: "error" }, e.message || String(e)));
    }
  }
}
