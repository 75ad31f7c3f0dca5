// The playground of one endpoint: the server-rendered form read back into a job's input,
// submitted with the JavaScript client, its queue position, progress, previews, streamed
// text and output shown as they come. Every value from the model is shown as text (or as
// a media element), never parsed as HTML.
import { $, el, pairSliders } from "./dom.js";
import { InvalidInput, Unauthorized, Unavailable } from "./modelport.js";
import { client, origin, signIn, signOut } from "./session.js";

const endpoint = document.body.dataset.endpoint;
const keys = document.body.dataset.auth === "keys";
const form = $("playground");
const runButton = $("run");
const cancelButton = $("cancel");
const statusLine = $("status");
const bar = $("progress");
const message = $("message");
const preview = $("preview");
const output = $("output");
const formError = $("form-error");

let api = client();
let current = null;
let urls = [];

function objectUrl(blob) {
  const url = URL.createObjectURL(blob);
  urls.push(url);
  return url;
}

// ---- reading the form ----

class FieldProblem extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

function read(field) {
  const name = field.dataset.field;
  const kind = field.dataset.kind;
  const control = $(`in-${name}`);
  const raw = kind === "media" || kind === "boolean" ? null : control.value.trim();
  switch (kind) {
    case "boolean":
      return control.checked;
    case "media":
      return control.files.length ? control.files[0] : undefined;
    case "string":
      return control.value === "" && !control.required ? undefined : control.value;
    case "integer":
    case "number": {
      if (raw === "") return undefined;
      const n = Number(raw);
      if (!Number.isFinite(n)) throw new FieldProblem(name, "enter a number");
      return n;
    }
    case "enum":
      return raw === "" ? undefined : JSON.parse(raw);
    case "list": {
      const items = control.value.split("\n").map((s) => s.trim()).filter((s) => s !== "");
      if (!items.length) return undefined;
      if (control.dataset.items === "string") return items;
      return items.map((s) => {
        const n = Number(s);
        if (!Number.isFinite(n)) throw new FieldProblem(name, `"${s}" is not a number`);
        return n;
      });
    }
    default: {
      if (raw === "") return undefined;
      try {
        return JSON.parse(raw);
      } catch (e) {
        throw new FieldProblem(name, `not valid JSON: ${e.message}`);
      }
    }
  }
}

function collect() {
  const input = {};
  const problems = [];
  for (const field of form.querySelectorAll(".field[data-field]")) {
    try {
      const value = read(field);
      if (value !== undefined) input[field.dataset.field] = value;
    } catch (e) {
      if (!(e instanceof FieldProblem)) throw e;
      problems.push({ field: e.field, message: e.message });
    }
  }
  return { input, problems };
}

function clearErrors() {
  formError.textContent = "";
  for (const field of form.querySelectorAll(".field.invalid")) {
    field.classList.remove("invalid");
    $(`in-${field.dataset.field}`).removeAttribute("aria-invalid");
    $(`err-${field.dataset.field}`).textContent = "";
  }
}

/** Put each error on its field (the first part of its path); the rest above the buttons. */
function showErrors(errors, fallback) {
  const loose = [];
  let first = null;
  for (const { field, message: text } of errors) {
    const name = String(field ?? "").replace(/^input\./, "").split(/[.[]/)[0];
    const slot = $(`err-${name}`);
    if (!slot || !form.querySelector(`.field[data-field="${CSS.escape(name)}"]`)) {
      loose.push(field ? `${field}: ${text}` : text);
      continue;
    }
    const path = String(field).replace(/^input\./, "");
    slot.textContent = path === name ? text : `${path}: ${text}`;
    slot.closest(".field").classList.add("invalid");
    const control = $(`in-${name}`);
    control.setAttribute("aria-invalid", "true");
    first = first ?? control;
  }
  formError.textContent = loose.join("; ") || (first ? "" : fallback || "");
  if (first) first.focus();
}

// ---- the same request as code ----

function shown(input) {
  const out = {};
  for (const [k, v] of Object.entries(input)) out[k] = v instanceof Blob ? `<file ${v.name || k}>` : v;
  return out;
}

function snippets(input) {
  const files = Object.entries(input).filter(([, v]) => v instanceof Blob);
  const plain = Object.fromEntries(Object.entries(input).filter(([, v]) => !(v instanceof Blob)));
  const url = `${origin}/endpoints/${endpoint}/jobs`;
  const auth = keys ? ' \\\n  -H "Authorization: Bearer $MODELPORT_API_KEY"' : "";
  let curl;
  if (files.length) {
    const parts = Object.entries(plain).map(
      ([k, v]) => ` \\\n  -F ${quote(`${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)}`,
    );
    const uploads = files.map(([k, v]) => ` \\\n  -F ${quote(`${k}=@${v.name || k}`)}`);
    curl = `curl ${url}${auth}${parts.join("")}${uploads.join("")}`;
  } else {
    curl = `curl ${url}${auth} \\\n  -H 'content-type: application/json' \\\n  -d ${quote(JSON.stringify({ input }))}`;
  }
  const pyValue = (v) => JSON.stringify(v, null, 4).replace(/\btrue\b/g, "True").replace(/\bfalse\b/g, "False").replace(/\bnull\b/g, "None");
  const pyInput = { ...plain };
  const pyFiles = files.map(([k, v]) => `    ${JSON.stringify(k)}: open(${JSON.stringify(v.name || k)}, "rb"),`);
  let python = `from modelport import Client\n\nclient = Client(${JSON.stringify(origin)})\n`;
  python += pyFiles.length
    ? `inputs = ${pyValue(pyInput).replace(/\n}$/, ",\n" + pyFiles.join("\n") + "\n}")}\n`
    : `inputs = ${pyValue(pyInput)}\n`;
  python += `print(client.predict(${JSON.stringify(endpoint)}, inputs))\n`;
  const jsFiles = files.map(([k]) => `// ${k}: a File, Blob or Uint8Array`);
  let js = `import { Client } from "modelport";\n\n`;
  js += `const client = new Client(${JSON.stringify(origin)}${keys ? ", { apiKey: process.env.MODELPORT_API_KEY }" : ""});\n`;
  if (jsFiles.length) js += jsFiles.join("\n") + "\n";
  js += `const output = await client.predict(${JSON.stringify(endpoint)}, ${JSON.stringify(shown(input), null, 2)});\n`;
  js += "console.log(output);\n";
  return { curl, python, js };
}

function quote(text) {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

function updateCode() {
  let input;
  try {
    input = collect().input;
  } catch {
    return;
  }
  const code = snippets(input);
  $("code-curl").firstElementChild.textContent = code.curl;
  $("code-python").firstElementChild.textContent = code.python;
  $("code-js").firstElementChild.textContent = code.js;
}

function selectTab(tab) {
  for (const other of document.querySelectorAll('[role="tab"]')) {
    const on = other === tab;
    other.setAttribute("aria-selected", String(on));
    other.tabIndex = on ? 0 : -1;
    $(other.getAttribute("aria-controls")).hidden = !on;
  }
}

// ---- showing a job ----

function setStatus(text) {
  statusLine.textContent = text;
}

function mediaKind(value, schema) {
  const declared = schema && typeof schema.contentMediaType === "string" ? schema.contentMediaType : "";
  const match = /^data:([a-z]+)\//.exec(value);
  const kind = (match ? match[1] : declared.split("/")[0]) || "";
  if (!match && !declared) return null;
  return ["image", "audio", "video"].includes(kind) ? kind : "file";
}

async function media(value, kind, name) {
  // A data URL is shown as it is; a file URL of the job is fetched with this page's token.
  const src = value.startsWith("data:") ? value : objectUrl(await api.blob(value));
  const box = el("figure");
  if (kind === "image") box.append(el("img", { src, alt: `${name} (output image)` }));
  else if (kind === "audio") box.append(el("audio", { src, controls: "", "aria-label": `${name} (output audio)` }));
  else if (kind === "video") box.append(el("video", { src, controls: "", "aria-label": `${name} (output video)` }));
  const link = el("a", { href: src, download: name }, `Download ${name}`);
  box.append(el("figcaption", {}, "")), box.lastChild.append(link);
  return box;
}

async function render(value, schema, name) {
  if (typeof value === "string") {
    const kind = mediaKind(value, schema);
    if (kind && (value.startsWith("data:") || value.startsWith("/") || value.startsWith("http"))) {
      return media(value, kind, name);
    }
    return el("pre", { class: "text" }, value);
  }
  if (Array.isArray(value) && value.every((v) => typeof v === "string")) {
    const list = el("div");
    for (const [i, item] of value.entries()) {
      list.append(await render(item, schema?.items ?? schema?.anyOf?.find((s) => s.items)?.items, `${name}-${i}`));
    }
    return list;
  }
  const isObject = value && typeof value === "object" && !Array.isArray(value);
  if (isObject && (schema?.properties || Object.values(value).every((v) => typeof v === "string"))) {
    const box = el("div");
    for (const [k, v] of Object.entries(value)) {
      box.append(el("h3", {}, k));
      box.append(await render(v, schema?.properties?.[k], k));
    }
    return box;
  }
  return el("pre", {}, JSON.stringify(value, null, 2));
}

async function showPreview(value) {
  preview.replaceChildren();
  if (typeof value !== "string") return;
  const src = value.startsWith("data:") ? value : objectUrl(await api.blob(value));
  preview.append(el("img", { src, alt: "Preview of the output so far" }));
}

async function follow(job, outputSchema) {
  let streamed = null;
  let position = null;
  const poll = setInterval(async () => {
    if (job.status !== "queued") return;
    try {
      await job.refresh();
      if (job.status === "queued" && job.data.queue_position != null) {
        setStatus(`Queued: position ${job.data.queue_position + 1}`);
      }
    } catch {
      /* the events show what happens next */
    }
  }, 1000);
  try {
    for await (const event of job.events()) {
      const data = event.data;
      switch (event.event) {
        case "queued":
          position = data.queue_position;
          setStatus(position == null ? "Queued" : `Queued: position ${position + 1}`);
          break;
        case "started":
          job.data.status = "running";
          setStatus("Running");
          break;
        case "progress": {
          job.data.status = "running";
          const fraction = data.fraction;
          bar.hidden = false;
          if (typeof fraction === "number") {
            bar.value = fraction;
            setStatus(`Running: ${Math.round(fraction * 100)}%`);
          }
          message.textContent = data.message ?? "";
          const extra = data.data ?? {};
          if (extra.preview !== undefined) await showPreview(extra.preview);
          break;
        }
        case "output": {
          job.data.status = "running";
          if (streamed === null) {
            streamed = el("div", { class: "stream", "aria-live": "polite" });
            output.replaceChildren(streamed);
            setStatus("Streaming");
          }
          const chunk = data && typeof data === "object" && "chunk" in data ? data.chunk : data;
          streamed.textContent += typeof chunk === "string" ? chunk : JSON.stringify(chunk);
          break;
        }
        case "succeeded":
          bar.value = 1;
          if (data.progress?.message && data.progress.message !== message.textContent) {
            message.textContent = data.progress.message;
          }
          setStatus(`Succeeded in ${(data.compute_time ?? 0).toFixed(2)} s`);
          if (streamed === null || typeof data.output !== "string") {
            output.replaceChildren(await render(data.output, outputSchema, "output"));
          }
          break;
        case "failed":
        case "expired":
          setStatus(`${event.event === "failed" ? "Failed" : "Expired"}: ${data.error ?? ""}`);
          output.replaceChildren(el("p", { class: "error" }, data.error ?? event.event));
          break;
        case "cancelled":
          setStatus("Cancelled");
          break;
      }
    }
  } finally {
    clearInterval(poll);
  }
}

let outputSchema = null;

async function run(event) {
  event.preventDefault();
  clearErrors();
  const { input, problems } = collect();
  if (problems.length) {
    showErrors(problems);
    return;
  }
  for (const url of urls) URL.revokeObjectURL(url);
  urls = [];
  runButton.disabled = true;
  bar.hidden = true;
  bar.value = 0;
  message.textContent = "";
  preview.replaceChildren();
  output.replaceChildren();
  if (keys && !api.sessionToken) {
    setStatus("Sign in, then run again");
    runButton.disabled = false;
    api = await signIn();
    return;
  }
  setStatus("Submitting");
  try {
    current = await api.submit(endpoint, input);
    cancelButton.disabled = false;
    await follow(current, outputSchema);
  } catch (e) {
    if (e instanceof InvalidInput) {
      setStatus("The input was refused");
      showErrors(e.errors ?? [], e.message);
    } else if (e instanceof Unauthorized) {
      signOut("client");
      setStatus("Sign in, then run again");
      api = await signIn();
    } else if (e instanceof Unavailable) {
      // disabled or being deleted (with the admin's reason), or its model cannot run
      setStatus("Not taking jobs now");
      formError.textContent = e.message;
      await describe().catch(() => {});
    } else {
      setStatus("Error");
      formError.textContent = e.message || String(e);
    }
  } finally {
    runButton.disabled = false;
    cancelButton.disabled = true;
    current = null;
  }
}

async function cancel() {
  if (current === null) return;
  cancelButton.disabled = true;
  setStatus("Cancelling");
  try {
    await current.cancel();
  } catch (e) {
    formError.textContent = e.message || String(e);
  }
}

async function describe() {
  for (;;) {
    try {
      const info = await api.endpoint(endpoint);
      outputSchema = info.output_schema;
      const state = $("state");
      state.textContent = info.state;
      state.className = `state state-${info.state}`;
      const workers = info.workers_online;
      const stopped = info.state === "disabled" || info.state === "deleting";
      $("state-detail").textContent =
        `${workers} worker${workers === 1 ? "" : "s"} online · ${info.queue_depth} queued · ${info.running} running` +
        (stopped && info.reason ? ` · ${info.reason}` : "");
      return;
    } catch (e) {
      if (!(e instanceof Unauthorized)) throw e;
      signOut("client");
      api = await signIn();
    }
  }
}

pairSliders(form, updateCode);
for (const field of form.querySelectorAll('.field[data-kind="media"]')) {
  const name = field.dataset.field;
  const picker = $(`in-${name}`);
  picker.addEventListener("change", () => {
    const box = $(`preview-${name}`);
    box.replaceChildren();
    const file = picker.files[0];
    if (!file) return;
    const kind = file.type.split("/")[0];
    const src = objectUrl(file);
    if (kind === "image") box.append(el("img", { src, alt: `${name} (chosen file)` }));
    else if (kind === "audio" || kind === "video") box.append(el(kind, { src, controls: "", "aria-label": `${name} (chosen file)` }));
    else box.append(el("span", {}, file.name));
  });
}
for (const tab of document.querySelectorAll('[role="tab"]')) {
  tab.addEventListener("click", () => selectTab(tab));
  tab.addEventListener("keydown", (e) => {
    if (e.key !== "ArrowRight" && e.key !== "ArrowLeft") return;
    const tabs = [...document.querySelectorAll('[role="tab"]')];
    const next = tabs[(tabs.indexOf(tab) + (e.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length];
    selectTab(next);
    next.focus();
  });
}
$("copy").addEventListener("click", async () => {
  const panel = document.querySelector('[role="tabpanel"]:not([hidden])');
  try {
    await navigator.clipboard.writeText(panel.textContent);
    $("copied").textContent = "Copied";
  } catch {
    $("copied").textContent = "Select the text and copy it";
  }
});
form.addEventListener("input", updateCode);
form.addEventListener("change", updateCode);
form.addEventListener("submit", run);
cancelButton.addEventListener("click", cancel);
updateCode();
document.body.dataset.ready = "loading";
describe().then(
  () => (document.body.dataset.ready = "true"),
  (e) => {
    formError.textContent = e.message || String(e);
    document.body.dataset.ready = "true";
  },
);
