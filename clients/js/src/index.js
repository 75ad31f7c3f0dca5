// modelport: the JavaScript client of a modelport server, for browsers and Node >= 18.
//
//   import { Client } from "modelport";
//   const c = new Client("http://127.0.0.1:8000", { apiKey });
//   const output = await c.predict("iris", { sepal_length: 5.1, ... });
//   for await (const event of c.stream("textgen", { messages })) { ... }
//
// No dependencies: fetch, ReadableStream, Blob, FormData and TextDecoder are all there is.
// The errors mirror the Python client's (modelport/errors.py): the same names, the same
// mapping from a problem+json document's `type`.

const PROBLEM_PREFIX = "urn:modelport:problem:";
const LONG_POLL = 30;
const FINAL = new Set(["succeeded", "failed", "cancelled", "expired"]);
const RESUME_TRIES = 5;

/** The root of every error modelport raises. */
export class ModelportError extends Error {
  static status = 500;
  static kind = "internal";
  static title = "Internal error";

  constructor(message = "", { status, errors, retryAfter, problem, job, cause } = {}) {
    const title = new.target.title;
    super(message || title, cause === undefined ? undefined : { cause });
    this.name = new.target.name;
    this.status = status ?? new.target.status;
    this.kind = new.target.kind;
    this.title = title;
    this.errors = errors ?? [];
    this.problem = problem ?? null;
    if (retryAfter !== undefined) this.retryAfter = retryAfter;
    if (job !== undefined) this.job = job;
  }
}

function errorClass(name, parent, status, kind, title) {
  const cls = { [name]: class extends parent {} }[name];
  Object.assign(cls, { status, kind, title });
  return cls;
}

export const SpecError = errorClass("SpecError", ModelportError, 422, "spec", "Invalid endpoint spec");
export const InvalidRequest = errorClass("InvalidRequest", ModelportError, 400, "invalid-request", "Invalid request");
export const BadRequest = errorClass("BadRequest", InvalidRequest, 400, "bad-request", "Bad request");
export const InvalidInput = errorClass("InvalidInput", InvalidRequest, 422, "validation", "Invalid input");
export const NotFound = errorClass("NotFound", InvalidRequest, 404, "not-found", "Not found");
export const Conflict = errorClass("Conflict", InvalidRequest, 409, "conflict", "Conflict");
export const PayloadTooLarge = errorClass("PayloadTooLarge", InvalidRequest, 413, "payload-too-large", "Payload too large");
export const Unauthorized = errorClass("Unauthorized", ModelportError, 401, "unauthorized", "Unauthorized");
export const Forbidden = errorClass("Forbidden", ModelportError, 403, "forbidden", "Forbidden");
export const Overloaded = errorClass("Overloaded", ModelportError, 429, "overloaded", "Too many queued jobs");
export const RateLimited = errorClass("RateLimited", Overloaded, 429, "rate-limited", "Rate limit exceeded");
export const Unavailable = errorClass("Unavailable", ModelportError, 503, "unavailable", "Service unavailable");
export const JobFailed = errorClass("JobFailed", ModelportError, 500, "job-failed", "Job failed");
export const TimedOut = errorClass("TimedOut", ModelportError, 504, "timeout", "Timed out");
export const Unreachable = errorClass("Unreachable", ModelportError, 502, "unreachable", "Server unreachable");

const BY_KIND = new Map(
  [
    ModelportError, SpecError, InvalidRequest, BadRequest, InvalidInput, NotFound, Conflict,
    PayloadTooLarge, Unauthorized, Forbidden, Overloaded, RateLimited, Unavailable, JobFailed,
    TimedOut, Unreachable,
  ].map((cls) => [cls.kind, cls]),
);
const RETRY_LATER = new Set([Overloaded, RateLimited, Unavailable]);

/** Rebuild the error a server described in a problem document (and its headers). */
export function fromProblem(status, problem, headers) {
  const uri = String(problem?.type ?? "");
  const kind = uri.startsWith(PROBLEM_PREFIX) ? uri.slice(PROBLEM_PREFIX.length) : "";
  let cls = BY_KIND.get(kind);
  if (cls === undefined) cls = status >= 400 && status < 500 ? InvalidRequest : ModelportError;
  const detail = String(problem?.detail || problem?.title || `HTTP ${status}`);
  const errors = (Array.isArray(problem?.errors) ? problem.errors : []).filter(
    (e) => e !== null && typeof e === "object",
  );
  const options = { status, errors, problem };
  if (RETRY_LATER.has(cls)) options.retryAfter = retryAfter(problem, headers);
  return new cls(detail, options);
}

function retryAfter(problem, headers) {
  const header = headers && typeof headers.get === "function" ? headers.get("retry-after") : undefined;
  for (const raw of [problem?.retry_after, header]) {
    const n = Number.parseInt(raw, 10);
    if (Number.isFinite(n)) return Math.max(0, n);
  }
  return 1;
}

/** Whether a value is a file to upload: a Blob (or File), a Uint8Array or an ArrayBuffer. */
export function isFile(value) {
  return (
    (typeof Blob !== "undefined" && value instanceof Blob) ||
    value instanceof Uint8Array ||
    value instanceof ArrayBuffer
  );
}

function hasFiles(input) {
  return Object.values(input ?? {}).some(
    (v) => isFile(v) || (Array.isArray(v) && v.some(isFile)),
  );
}

function asBlob(value) {
  return value instanceof Blob ? value : new Blob([value]);
}

/** The inputs as a multipart form: files for media, text (JSON for lists and objects) for the rest. */
function formOf(input) {
  const form = new FormData();
  for (const [name, value] of Object.entries(input)) {
    const items = Array.isArray(value) && value.some(isFile) ? value : [value];
    for (const item of items) {
      if (isFile(item)) {
        form.append(name, asBlob(item), typeof File !== "undefined" && item instanceof File ? item.name : name);
      } else if (value === null || value === undefined) {
        continue;
      } else if (typeof item === "string") {
        form.append(name, item);
      } else {
        form.append(name, JSON.stringify(item));
      }
    }
  }
  return form;
}

/** A data URL's bytes as a Blob of its media type. */
export function dataUrlToBlob(url) {
  const match = /^data:([^,]*?)(;base64)?,(.*)$/s.exec(url);
  if (match === null) throw new TypeError("not a data URL");
  const type = match[1].split(";")[0] || "application/octet-stream";
  if (!match[2]) return new Blob([decodeURIComponent(match[3])], { type });
  const text = atob(match[3]);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return new Blob([bytes], { type });
}

/**
 * The Server-Sent Events of a fetch Response as they arrive, each `{event, type, data, id}`
 * (`data` parsed as JSON; `id` null when the server sent none, as for a job's state events).
 */
export async function* readEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let name = "message";
  let data = [];
  let id = null;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      const lines = buffer.split("\n");
      buffer = done ? "" : lines.pop();
      for (const raw of lines) {
        const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
        if (line === "") {
          if (data.length > 0) {
            const payload = JSON.parse(data.join("\n"));
            yield { event: name, type: name, data: payload, id };
          }
          name = "message";
          data = [];
          id = null;
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? "" : line.slice(colon + 1);
        if (text.startsWith(" ")) text = text.slice(1);
        if (field === "event") name = text;
        else if (field === "data") data.push(text);
        else if (field === "id") id = Number.parseInt(text, 10);
      }
      if (done) return;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}

/** A submitted job: refresh, wait for, cancel it, and read its events and files. */
export class Job {
  constructor(client, data) {
    this.client = client;
    this.data = data;
  }

  get id() {
    return String(this.data.id);
  }

  get status() {
    return String(this.data.status);
  }

  get done() {
    return FINAL.has(this.status);
  }

  get output() {
    return this.data.output;
  }

  get error() {
    return this.data.error ?? null;
  }

  get progress() {
    return this.data.progress ?? null;
  }

  /** Fetch the job's current state. */
  async refresh({ signal } = {}) {
    this.data = await this.client._getJob(this.id, 0, signal);
    return this;
  }

  /**
   * Wait until the job is final; throw TimedOut after `timeout` seconds. With
   * `onProgress`, follow the job's events and call it with each progress.
   */
  async wait({ timeout, onProgress, signal } = {}) {
    const deadline = timeout === undefined ? null : Date.now() + timeout * 1000;
    if (onProgress !== undefined && !this.done) {
      const stop = deadline === null ? signal : anySignal(signal, AbortSignal.timeout(timeout * 1000));
      try {
        for await (const event of this.events({ signal: stop })) {
          if (event.event === "progress") onProgress(event.data, this);
        }
      } catch (e) {
        if (deadline !== null && Date.now() >= deadline && !signal?.aborted) {
          throw new TimedOut(`job ${this.id} is still ${this.status} after ${timeout} s`, { cause: e });
        }
        throw e;
      }
    }
    while (!this.done) {
      const remaining = deadline === null ? LONG_POLL : Math.min(LONG_POLL, (deadline - Date.now()) / 1000);
      if (remaining <= 0) throw new TimedOut(`job ${this.id} is still ${this.status} after ${timeout} s`);
      this.data = await this.client._getJob(this.id, remaining, signal);
    }
    return this;
  }

  /** Wait, then return the output, or throw JobFailed. */
  async result(options = {}) {
    await this.wait(options);
    return outputOf(this.data);
  }

  /** Cancel the job (a running job's worker is told); Conflict if it already ended. */
  async cancel({ signal } = {}) {
    this.data = await this.client._json("POST", `/jobs/${encodeURIComponent(this.id)}/cancel`, { signal });
    return this;
  }

  /**
   * The job's events as they happen, to the final one (which also updates `data`).
   * `after` starts after the stored event with that id; a dropped connection is
   * resumed with `Last-Event-ID`, so no event is missed or repeated.
   */
  async *events({ after, signal } = {}) {
    let last = after ?? null;
    let failures = 0;
    for (;;) {
      let response;
      try {
        response = await this.client._fetch("GET", `/jobs/${encodeURIComponent(this.id)}/events`, {
          accept: "text/event-stream",
          headers: last === null ? {} : { "last-event-id": String(last) },
          signal,
        });
      } catch (e) {
        if (!(e instanceof Unreachable) || ++failures > RESUME_TRIES) throw e;
        await sleep(Math.min(2000, 100 * 2 ** failures), signal);
        continue;
      }
      let got = false;
      let broke = null;
      try {
        for await (const event of readEvents(response)) {
          got = true;
          failures = 0;
          if (event.id !== null) last = event.id;
          if (FINAL.has(event.event)) {
            this.data = event.data;
            yield event;
            return;
          }
          yield event;
        }
      } catch (e) {
        if (signal?.aborted || e instanceof SyntaxError) throw e;
        broke = e;
      }
      // A connection that ends (or breaks) before any event counts as a failure, so a
      // server that keeps hanging up is given up on after RESUME_TRIES tries.
      if (!got && ++failures > RESUME_TRIES) {
        throw new Unreachable(`the events of job ${this.id} broke off: ${broke ?? "no events"}`, { cause: broke ?? undefined });
      }
      // The stream ended early: resume after the last stored event (0: after none, so
      // the state events already seen are not sent again).
      last = last ?? 0;
      await sleep(Math.min(2000, 50 * 2 ** failures), signal);
    }
  }

  /** What the job's model printed and logged: `[{time, level, job_id, stream, message}]`. */
  logs({ level, since, limit, signal } = {}) {
    const query = logQuery({ level, since, limit });
    return this.client._json("GET", `/jobs/${encodeURIComponent(this.id)}/logs${query}`, { signal });
  }

  /**
   * A media output as a Blob: the whole output (`name` undefined), the output field `name`,
   * or item `index` of a list; a data URL is decoded here, a large one fetched from
   * /jobs/{id}/files/{name}.
   */
  async outputBlob(name, index, { signal } = {}) {
    let value = name === undefined ? this.output : (this.output ?? {})[name];
    if (index !== undefined) value = value[index];
    if (typeof value !== "string") throw new TypeError(`not a media output: ${typeof value}`);
    return this.client.blob(value, { signal });
  }
}

/** The query of a logs route: only the filters given. */
function logQuery(filters) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(filters)) {
    if (value !== undefined && value !== null) query.set(name, String(value));
  }
  const text = query.toString();
  return text ? `?${text}` : "";
}

function outputOf(data) {
  if (data.status === "succeeded") return data.output;
  throw new JobFailed(`job ${data.id} ${data.status}: ${data.error}`, { job: data });
}

function anySignal(...signals) {
  const given = signals.filter(Boolean);
  if (given.length === 1) return given[0];
  if (typeof AbortSignal.any === "function") return AbortSignal.any(given);
  const controller = new AbortController();
  for (const s of given) {
    if (s.aborted) controller.abort(s.reason);
    else s.addEventListener("abort", () => controller.abort(s.reason), { once: true });
  }
  return controller.signal;
}

/**
 * A streaming run of one job: iterate it for its events (`output` chunks, `progress`,
 * then the final one); `job` resolves once the server accepted it; `cancel()` stops it.
 */
export class Stream {
  constructor(client, endpoint, input, { signal, onProgress, idempotencyKey } = {}) {
    this.client = client;
    this.endpoint = endpoint;
    this.input = input;
    this.onProgress = onProgress;
    this.idempotencyKey = idempotencyKey;
    this._abort = new AbortController();
    this.signal = signal === undefined ? this._abort.signal : anySignal(signal, this._abort.signal);
    this.jobId = null;
    this.final = null;
    this._started = null;
    let resolve;
    let reject;
    this.job = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.job.catch(() => {});
    this._resolveJob = resolve;
    this._rejectJob = reject;
  }

  async *[Symbol.asyncIterator]() {
    if (this._started !== null) throw new TypeError("a Stream can be read only once");
    this._started = true;
    let response;
    try {
      const headers = this.idempotencyKey === undefined ? {} : { "idempotency-key": this.idempotencyKey };
      response = await this.client._fetch("POST", `/endpoints/${encodeURIComponent(this.endpoint)}/jobs`, {
        accept: "text/event-stream",
        input: this.input,
        headers,
        signal: this.signal,
      });
    } catch (e) {
      this._rejectJob(e);
      throw e;
    }
    this.jobId = response.headers.get("x-job-id");
    this._resolveJob(new Job(this.client, { id: this.jobId, status: "queued" }));
    for await (const event of readEvents(response)) {
      if (event.event === "progress" && this.onProgress !== undefined) this.onProgress(event.data);
      if (FINAL.has(event.event)) this.final = event.data;
      yield event;
    }
  }

  /** Cancel the job: the stream then ends with its `cancelled` event. Before the server
   * answered, hang up instead (which cancels it too). */
  async cancel() {
    if (this.jobId === null) {
      this._abort.abort(new DOMException("cancelled", "AbortError"));
      return null;
    }
    const job = new Job(this.client, { id: this.jobId, status: "running" });
    return job.cancel();
  }

  /** Read the whole stream; resolve to the output chunks joined (text models), or throw JobFailed. */
  async text() {
    const chunks = [];
    for await (const event of this) {
      if (event.event === "output") chunks.push(typeof event.data === "string" ? event.data : JSON.stringify(event.data));
    }
    if (this.final === null) throw new Unreachable("the stream ended before the job did");
    const output = outputOf(this.final);
    if (chunks.length === 0 && typeof output === "string") return output;  // returned whole
    return chunks.join("");
  }
}

/** A client of one modelport server. */
export class Client {
  /**
   * `baseUrl`: the server (in a page of that server, "" or undefined: the page's origin).
   * `apiKey` (server side) or `sessionToken` (browser, from POST /sessions) is sent as
   * `Authorization: Bearer`. `timeout` (seconds) bounds each request; `fetch` replaces
   * the global one.
   */
  constructor(baseUrl, { apiKey, sessionToken, timeout = 60, fetch: fetchImpl } = {}) {
    const origin = globalThis.location?.origin;
    this.baseUrl = String(baseUrl || origin || "").replace(/\/+$/, "");
    if (!this.baseUrl) throw new TypeError("new Client(baseUrl): give the server's URL");
    this.apiKey = apiKey ?? null;
    this.sessionToken = sessionToken ?? null;
    this.timeout = timeout;
    this._fetchImpl = fetchImpl ?? globalThis.fetch.bind(globalThis);
  }

  _headers(extra) {
    const headers = { ...extra };
    const secret = this.apiKey ?? this.sessionToken;
    if (secret) headers.authorization = `Bearer ${secret}`;
    return headers;
  }

  /** One request; problem documents become errors. Returns the Response (body unread). */
  async _fetch(method, path, { accept = "application/json", input, body, headers = {}, signal, wait = 0 } = {}) {
    const all = this._headers({ accept, ...headers });
    let payload = body;
    if (input !== undefined) {
      if (hasFiles(input)) payload = formOf(input);
      else {
        payload = JSON.stringify({ input });
        all["content-type"] = "application/json";
      }
    } else if (body !== undefined && !(body instanceof FormData) && typeof body !== "string") {
      payload = JSON.stringify(body);
      all["content-type"] = "application/json";
    }
    const streaming = accept === "text/event-stream";
    const limit = streaming ? null : AbortSignal.timeout((this.timeout + wait) * 1000);
    const stop = limit === null ? signal : anySignal(signal, limit);
    let response;
    try {
      response = await this._fetchImpl(this.baseUrl + path, { method, headers: all, body: payload, signal: stop });
    } catch (e) {
      if (signal?.aborted) throw e;
      if (limit?.aborted) throw new TimedOut(`${method} ${path}: no answer in ${this.timeout + wait} s`, { cause: e });
      throw new Unreachable(`cannot reach ${this.baseUrl}: ${e.cause?.message ?? e.message}`, { cause: e });
    }
    if (response.status >= 400) {
      const text = await response.text();
      let problem;
      try {
        problem = JSON.parse(text);
      } catch {
        problem = { detail: text.slice(0, 500) || response.statusText };
      }
      if (problem === null || typeof problem !== "object") problem = { detail: String(problem) };
      throw fromProblem(response.status, problem, response.headers);
    }
    return response;
  }

  async _json(method, path, options = {}) {
    const response = await this._fetch(method, path, options);
    if (response.status === 204) return null;
    return response.json();
  }

  _getJob(id, wait, signal) {
    const seconds = Math.max(0, Math.ceil(wait));
    return this._json("GET", `/jobs/${encodeURIComponent(id)}`, {
      headers: { prefer: `wait=${seconds}` },
      wait: seconds,
      signal,
    });
  }

  /** Every endpoint with its workers online and queue depth. */
  endpoints({ signal } = {}) {
    return this._json("GET", "/endpoints", { signal });
  }

  /** One endpoint: JSON Schemas of its inputs and outputs, limits and workers. */
  endpoint(name, { signal } = {}) {
    return this._json("GET", `/endpoints/${encodeURIComponent(name)}`, { signal });
  }

  /**
   * Add an endpoint, or make `spec` its next revision (PUT /endpoints/{name}): a TOML
   * document's text (the sections of a --config file), or the same as an object. Resolves
   * to the endpoint. An admin's, when the server has keys.
   */
  putEndpoint(name, spec, { signal } = {}) {
    const headers = typeof spec === "string" ? { "content-type": "application/toml" } : {};
    return this._json("PUT", `/endpoints/${encodeURIComponent(name)}`, { body: spec, headers, signal });
  }

  /** Refuse new jobs (503 with `reason`) until enabled; queued jobs wait. Resolves to the endpoint. */
  disableEndpoint(name, { reason, signal } = {}) {
    const body = reason === undefined || reason === null ? {} : { reason };
    return this._json("POST", `/endpoints/${encodeURIComponent(name)}/disable`, { body, signal });
  }

  /** Take jobs again; the queued ones run. Resolves to the endpoint. */
  enableEndpoint(name, { signal } = {}) {
    return this._json("POST", `/endpoints/${encodeURIComponent(name)}/enable`, { signal });
  }

  /**
   * Delete an endpoint: new jobs are refused at once; its queued and running jobs finish
   * first (`drain`, the default) or are cancelled. Resolves to `{name, state, queued,
   * running}`: `state` is "deleting" until they are done, then "deleted".
   */
  deleteEndpoint(name, { drain = true, signal } = {}) {
    const query = drain ? "" : "?drain=false";
    return this._json("DELETE", `/endpoints/${encodeURIComponent(name)}${query}`, { signal });
  }

  /** What the endpoint's model declares (`metadata`) and each of its workers' models. */
  endpointMetadata(name, { signal } = {}) {
    return this._json("GET", `/endpoints/${encodeURIComponent(name)}/metadata`, { signal });
  }

  /**
   * The endpoint's log lines, oldest first: `level` and above, since a Unix time, of one
   * `job`, the newest `limit`. An admin's, when the server has keys.
   */
  endpointLogs(name, { level, since, job, limit, signal } = {}) {
    const query = logQuery({ level, since, job, limit });
    return this._json("GET", `/endpoints/${encodeURIComponent(name)}/logs${query}`, { signal });
  }

  /** Queue a job and return at once with its handle. */
  async submit(endpoint, input = {}, { idempotencyKey, signal } = {}) {
    const headers = { prefer: "respond-async" };
    if (idempotencyKey !== undefined) headers["idempotency-key"] = idempotencyKey;
    const data = await this._json("POST", `/endpoints/${encodeURIComponent(endpoint)}/jobs`, {
      input,
      headers,
      signal,
    });
    return new Job(this, data);
  }

  /**
   * Run a job and resolve to its output; throw JobFailed if it fails, TimedOut after
   * `timeout` seconds. `onProgress(progress, job)` is called with each progress.
   */
  async predict(endpoint, input = {}, { timeout, onProgress, signal, idempotencyKey } = {}) {
    let job;
    if (onProgress !== undefined) {
      job = await this.submit(endpoint, input, { idempotencyKey, signal });
    } else {
      const wait = Math.min(timeout ?? LONG_POLL, LONG_POLL);
      const headers = { prefer: `wait=${Math.ceil(wait)}` };
      if (idempotencyKey !== undefined) headers["idempotency-key"] = idempotencyKey;
      const data = await this._json("POST", `/endpoints/${encodeURIComponent(endpoint)}/jobs`, {
        input,
        headers,
        wait,
        signal,
      });
      job = new Job(this, data);
    }
    return job.result({ timeout, onProgress, signal });
  }

  /** Run a job and read its events as they happen: `for await (const e of c.stream(...))`. */
  stream(endpoint, input = {}, options = {}) {
    return new Stream(this, endpoint, input, options);
  }

  /** The handle of an existing job. */
  async job(id, { signal } = {}) {
    return new Job(this, await this._getJob(id, 0, signal));
  }

  /** A media value as a Blob: a data URL decoded here, or a job file's URL fetched. */
  async blob(value, { signal } = {}) {
    if (value.startsWith("data:")) return dataUrlToBlob(value);
    const path = value.startsWith(this.baseUrl) ? value.slice(this.baseUrl.length) : value;
    const response = await this._fetch("GET", path, { accept: "*/*", signal });
    return response.blob();
  }

  /** The caller's chat conversations, the most recently changed first (without messages). */
  conversations({ endpoint, signal } = {}) {
    const query = endpoint === undefined ? "" : `?endpoint=${encodeURIComponent(endpoint)}`;
    return this._json("GET", `/conversations${query}`, { signal });
  }

  /** Start a conversation with a chat endpoint, kept server side for this key or session. */
  createConversation(endpoint, { title, messages, signal } = {}) {
    const body = { endpoint };
    if (title !== undefined) body.title = title;
    if (messages !== undefined) body.messages = messages;
    return this._json("POST", "/conversations", { body, signal });
  }

  /** One conversation with its messages. */
  conversation(id, { signal } = {}) {
    return this._json("GET", `/conversations/${encodeURIComponent(id)}`, { signal });
  }

  /** Add messages at the end of a conversation; resolves to the whole conversation. */
  addMessages(id, messages, { signal } = {}) {
    return this._json("POST", `/conversations/${encodeURIComponent(id)}/messages`, {
      body: { messages },
      signal,
    });
  }

  /** Delete a conversation. */
  async deleteConversation(id, { signal } = {}) {
    await this._json("DELETE", `/conversations/${encodeURIComponent(id)}`, { signal });
  }

  /**
   * A browser session (POST /sessions) made with this client's key: `{token, expires_at,
   * endpoints, key_id}`; give the token to a page as `sessionToken`.
   */
  createSession({ endpoints, ttl, signal } = {}) {
    const body = {};
    if (endpoints !== undefined) body.endpoints = endpoints;
    if (ttl !== undefined) body.ttl = ttl;
    return this._json("POST", "/sessions", { body, signal });
  }
}

export default Client;
