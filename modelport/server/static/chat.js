// The chat page of one chat endpoint: each answer streamed with the JavaScript client and
// shown word by word, stopped by cancelling its job, measured (time to first token, tokens
// per second), and kept on the server (/conversations) so a reload shows it again. Every
// message, the model's included, is shown as text: nothing from it is parsed as HTML.
import { $, el, pairSliders } from "./dom.js";
import { InvalidInput, NotFound } from "./modelport.js";
import { client, withSession } from "./session.js";

const endpoint = document.body.dataset.endpoint;
const keys = document.body.dataset.auth === "keys";
const list = $("conversation-list");
const messages = $("messages");
const statusLine = $("status");
const composer = $("composer");
const prompt = $("prompt");
const sendButton = $("send");
const stopButton = $("stop");
const chatError = $("chat-error");
const settingsForm = $("settings");
const remembered = `modelport.chat.${endpoint}`;

let conversation = null;
let running = null;

function say(text) {
  statusLine.textContent = text;
}

function formatMs(ms) {
  return `${Math.round(ms)} ms`;
}

function showStats(stats) {
  $("ttft").textContent = stats?.ttft_ms == null ? "-" : formatMs(stats.ttft_ms);
  $("tps").textContent = stats?.tokens_per_second == null ? "-" : stats.tokens_per_second.toFixed(1);
  $("tokens").textContent = stats?.tokens == null ? "-" : String(stats.tokens);
}

/** Keep the newest words in view (the log scrolls, not the page). */
function stick() {
  messages.scrollTop = messages.scrollHeight;
}

/** One message in the log; its text is set with textContent only. */
function addMessage(message) {
  const item = el("li", { class: `message ${message.role}` });
  item.append(el("span", { class: "role" }, message.role === "user" ? "You" : endpoint));
  const body = el("p", { class: "content" }, message.content);
  item.append(body);
  const meta = el("span", { class: "meta" });
  if (message.status && message.status !== "succeeded") {
    meta.textContent = message.status === "cancelled" ? "stopped" : message.status;
  }
  item.append(meta);
  if (message.job_id) item.dataset.job = message.job_id;
  messages.append(item);
  stick();
  return { item, body, meta };
}

// The credential: under --auth keys a session token for the tab, asked for when needed.
const call = (work) => withSession("client", work, { required: keys });

// ---- conversations ----

async function refreshList() {
  const found = await call((c) => c.conversations({ endpoint }));
  list.replaceChildren();
  for (const info of found) {
    const item = el("li", info.id === conversation?.id ? { "aria-current": "true" } : {});
    const open = el("button", { type: "button", class: "open" }, info.title);
    open.addEventListener("click", () => openConversation(info.id));
    const remove = el("button", { type: "button", class: "delete", "aria-label": `Delete “${info.title}”` }, "✕");
    remove.addEventListener("click", () => deleteConversation(info.id));
    item.append(open, remove);
    list.append(item);
  }
}

function show(found) {
  conversation = found;
  if (found === null) localStorage.removeItem(remembered);
  else localStorage.setItem(remembered, found.id);
  messages.replaceChildren();
  for (const message of found?.messages ?? []) addMessage(message);
  const last = found?.messages.findLast((m) => m.role === "assistant");
  showStats(last?.stats);
  $("chat-title").textContent = found ? found.title : "New conversation";
}

async function openConversation(id) {
  if (running) return;
  try {
    show(await call((c) => c.conversation(id)));
    say(`Opened “${conversation.title}”.`);
  } catch (e) {
    if (!(e instanceof NotFound)) throw e;
    show(null);
  }
  await refreshList();
}

async function deleteConversation(id) {
  if (running && conversation?.id === id) return;
  await call((c) => c.deleteConversation(id));
  if (conversation?.id === id) show(null);
  say("Conversation deleted.");
  await refreshList();
}

// ---- one answer, streamed ----

function settings() {
  const input = {};
  if (!settingsForm) return input;
  for (const field of settingsForm.querySelectorAll(".field")) {
    const name = field.dataset.field;
    const control = $(`in-${name}`);
    const kind = field.dataset.kind;
    if (kind === "boolean") input[name] = control.checked;
    else if (kind === "enum") {
      if (control.value !== "") input[name] = JSON.parse(control.value);
    } else if (control.value.trim() !== "") input[name] = Number(control.value);
  }
  return input;
}

async function send(text) {
  chatError.textContent = "";
  const user = { role: "user", content: text };
  const created = conversation === null;
  conversation = created
    ? await call((c) => c.createConversation(endpoint, { messages: [user] }))
    : await call((c) => c.addMessages(conversation.id, [user]));
  localStorage.setItem(remembered, conversation.id);
  if (created) await refreshList();
  $("chat-title").textContent = conversation.title;
  addMessage(user);
  const history = conversation.messages
    .filter((m) => m.content !== "")
    .map((m) => ({ role: m.role, content: m.content }));
  const answer = addMessage({ role: "assistant", content: "" });
  answer.item.setAttribute("aria-busy", "true");
  const started = performance.now();
  let first = null;
  let latest = null;
  let tokens = 0;
  const stats = () => {
    const out = { tokens };
    if (first !== null) out.ttft_ms = first - started;
    if (tokens > 1 && latest > first) out.tokens_per_second = (tokens - 1) / ((latest - first) / 1000);
    return out;
  };
  const stream = client().stream(endpoint, { ...settings(), messages: history });
  running = stream;
  stopButton.disabled = false;
  sendButton.disabled = true;
  say("Answering…");
  showStats(null);
  let status = "failed";
  let error = null;
  try {
    for await (const event of stream) {
      if (event.event === "started" && stream.jobId) answer.item.dataset.job = stream.jobId;
      if (event.event === "output") {
        const now = performance.now();
        if (first === null) first = now;
        latest = now;
        tokens += 1;
        answer.body.append(typeof event.data === "string" ? event.data : JSON.stringify(event.data));
        stick();
        showStats(stats());
      } else if (["succeeded", "failed", "cancelled", "expired"].includes(event.event)) {
        status = event.event;
        error = event.data.error ?? null;
        if (tokens === 0 && typeof event.data.output === "string") {
          answer.body.append(event.data.output);  // a model that returned its text whole
        }
      }
    }
  } catch (e) {
    if (e.name === "AbortError") status = "cancelled";  // stopped before the server answered
    else {
      error = e.message || String(e);
      if (e instanceof InvalidInput) chatError.textContent = e.message;
    }
  } finally {
    running = null;
    stopButton.disabled = true;
    sendButton.disabled = false;
    answer.item.removeAttribute("aria-busy");
  }
  if (stream.jobId) answer.item.dataset.job = stream.jobId;
  answer.item.dataset.status = status;
  const measured = stats();
  showStats(measured);
  if (status === "cancelled") answer.meta.textContent = "stopped";
  else if (status !== "succeeded") answer.meta.textContent = status;
  const reply = { role: "assistant", content: answer.body.textContent, status, stats: measured };
  if (stream.jobId) reply.job_id = stream.jobId;
  conversation = await call((c) => c.addMessages(conversation.id, [reply]));
  await refreshList();
  // Said once the answer is saved, so what the status says is what a reload shows.
  if (status === "succeeded") {
    const first = measured.ttft_ms == null ? "" : `, first after ${formatMs(measured.ttft_ms)}`;
    say(`Answered: ${tokens} tokens${first}.`);
  } else if (status === "cancelled") say(`Stopped after ${tokens} tokens.`);
  else say(`The answer ${status}${error ? `: ${error}` : ""}.`);
}

composer.addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = prompt.value.trim();
  if (!text) {
    chatError.textContent = "Write a message first.";
    prompt.focus();
    return;
  }
  if (running) return;
  prompt.value = "";
  try {
    await send(text);
  } catch (e) {
    chatError.textContent = e.message || String(e);
    say("Something went wrong.");
  }
  prompt.focus();
});

prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    composer.requestSubmit();
  }
});

stopButton.addEventListener("click", async () => {
  if (!running) return;
  stopButton.disabled = true;
  say("Stopping…");
  try {
    await running.cancel();
  } catch (e) {
    say(`Could not stop: ${e.message || e}`);
  }
});

$("new-chat").addEventListener("click", async () => {
  if (running) return;
  show(null);
  say("New conversation.");
  await refreshList();
  prompt.focus();
});

pairSliders(document);

async function start() {
  const id = localStorage.getItem(remembered);
  if (id) await openConversation(id);
  else {
    show(null);
    await refreshList();
  }
  document.body.dataset.ready = "true";
}

start().catch((e) => {
  chatError.textContent = e.message || String(e);
  document.body.dataset.ready = "error";
});
