// Type declarations of the modelport JavaScript client (src/index.js).

export type JobStatus = "queued" | "running" | "succeeded" | "failed" | "cancelled" | "expired";

/** A file input: a File or Blob (browser), a Uint8Array or an ArrayBuffer. */
export type FileInput = Blob | Uint8Array | ArrayBuffer;

export type Input = Record<string, unknown>;

export interface FieldError {
  field: string;
  message: string;
}

export interface Progress {
  fraction?: number | null;
  message?: string | null;
  data?: unknown;
  [key: string]: unknown;
}

/** A job record as the server answers it (GET /jobs/{id}). */
export interface JobData {
  id: string;
  endpoint?: string;
  status: JobStatus;
  output?: unknown;
  error?: string | null;
  progress?: Progress | null;
  queue_position?: number | null;
  eta?: number | null;
  [key: string]: unknown;
}

/** One event of a job: `queued`, `started`, `progress`, `output` (a chunk), `log`, then the final one. */
export interface JobEvent {
  event: string;
  /** The same as `event`. */
  type: string;
  data: any;
  /** The stored event's id (resume after it); null for state events. */
  id: number | null;
}

export interface ErrorOptions {
  status?: number;
  errors?: FieldError[];
  retryAfter?: number;
  problem?: Record<string, unknown> | null;
  job?: JobData;
  cause?: unknown;
}

/** The root of every error modelport raises; mirrors modelport.errors in Python. */
export class ModelportError extends Error {
  static status: number;
  static kind: string;
  static title: string;
  constructor(message?: string, options?: ErrorOptions);
  /** The HTTP status the server answered (or the class's own). */
  status: number;
  /** The problem type's last part (`validation`, `not-found`, ...). */
  kind: string;
  title: string;
  /** For InvalidInput: each field and what is wrong with it. */
  errors: FieldError[];
  /** The problem+json document the server sent, if any. */
  problem: Record<string, unknown> | null;
}
export class SpecError extends ModelportError {}
export class InvalidRequest extends ModelportError {}
export class BadRequest extends InvalidRequest {}
export class InvalidInput extends InvalidRequest {}
export class NotFound extends InvalidRequest {}
export class Conflict extends InvalidRequest {}
export class PayloadTooLarge extends InvalidRequest {}
export class Unauthorized extends ModelportError {}
export class Forbidden extends ModelportError {}
export class Overloaded extends ModelportError {
  /** Seconds to wait before trying again. */
  retryAfter: number;
}
export class RateLimited extends Overloaded {}
export class Unavailable extends ModelportError {
  retryAfter: number;
}
export class JobFailed extends ModelportError {
  /** The job's final record. */
  job: JobData;
}
export class TimedOut extends ModelportError {}
export class Unreachable extends ModelportError {}

/** Rebuild the error a server described in a problem document (and its headers). */
export function fromProblem(
  status: number,
  problem: Record<string, unknown>,
  headers?: Headers,
): ModelportError;

/** The Server-Sent Events of a fetch Response, as they arrive (`data` parsed as JSON). */
export function readEvents(response: Response): AsyncGenerator<JobEvent, void, undefined>;

export function isFile(value: unknown): value is FileInput;
export function dataUrlToBlob(url: string): Blob;

export interface Signalled {
  signal?: AbortSignal;
}

export interface WaitOptions extends Signalled {
  /** Seconds; TimedOut after. */
  timeout?: number;
  onProgress?: (progress: Progress, job: Job) => void;
}

export type LogLevel = "debug" | "info" | "warning" | "error" | "critical";

/** One line a model printed (`stdout`, `stderr`) or logged (`logging`) while on a job. */
export interface LogLine {
  /** Unix time in seconds. */
  time: number;
  level: LogLevel;
  job_id: string;
  stream: string;
  message: string;
}

export interface LogFilter {
  /** That level and above. */
  level?: LogLevel;
  /** Unix time in seconds. */
  since?: number;
  /** The newest this many (1 to 10000; the server's default 1000). */
  limit?: number;
}

/** What DELETE /endpoints/{name} answers. */
export interface Deletion {
  name: string;
  /** "deleting" while its jobs finish, "deleted" once it is gone. */
  state: "deleting" | "deleted";
  queued: number;
  running: number;
}

export class Job {
  constructor(client: Client, data: JobData);
  client: Client;
  data: JobData;
  readonly id: string;
  readonly status: JobStatus;
  readonly done: boolean;
  readonly output: unknown;
  readonly error: string | null;
  readonly progress: Progress | null;
  refresh(options?: Signalled): Promise<Job>;
  wait(options?: WaitOptions): Promise<Job>;
  result<T = unknown>(options?: WaitOptions): Promise<T>;
  cancel(options?: Signalled): Promise<Job>;
  /** Events to the final one; `after` resumes after that stored event id. */
  events(options?: { after?: number } & Signalled): AsyncGenerator<JobEvent, void, undefined>;
  /** What the job's model printed and logged. */
  logs(options?: LogFilter & Signalled): Promise<LogLine[]>;
  /** A media output as a Blob (a data URL decoded, or /jobs/{id}/files/{name} fetched). */
  outputBlob(name?: string, index?: number, options?: Signalled): Promise<Blob>;
}

export interface StreamOptions extends Signalled {
  onProgress?: (progress: Progress) => void;
  idempotencyKey?: string;
}

export class Stream implements AsyncIterable<JobEvent> {
  /** The job, once the server accepted it. */
  readonly job: Promise<Job>;
  jobId: string | null;
  /** The job's final record, once the final event came. */
  final: JobData | null;
  [Symbol.asyncIterator](): AsyncGenerator<JobEvent, void, undefined>;
  /** Cancel the job; the stream ends with its `cancelled` event. */
  cancel(): Promise<Job | null>;
  /** The output chunks joined; JobFailed if the job did not succeed. */
  text(): Promise<string>;
}

export interface ClientOptions {
  /** An API key (server side). */
  apiKey?: string;
  /** A session token from POST /sessions (browser). */
  sessionToken?: string;
  /** Seconds each request may take (default 60). */
  timeout?: number;
  fetch?: typeof fetch;
}

export interface Session {
  token: string;
  expires_at: number;
  endpoints: string[] | null;
  key_id: string | null;
}

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
  job_id?: string;
  status?: "succeeded" | "failed" | "cancelled" | "expired";
  stats?: { ttft_ms?: number; tokens?: number; tokens_per_second?: number };
}

export interface ConversationInfo {
  id: string;
  endpoint: string;
  title: string;
  created_at: number;
  updated_at: number;
  message_count: number;
}

export interface Conversation extends ConversationInfo {
  messages: ChatMessage[];
}

export class Client {
  /** `baseUrl`: the server; in a page it served, "" means the page's origin. */
  constructor(baseUrl?: string, options?: ClientOptions);
  baseUrl: string;
  apiKey: string | null;
  sessionToken: string | null;
  timeout: number;
  endpoints(options?: Signalled): Promise<Array<Record<string, any>>>;
  endpoint(name: string, options?: Signalled): Promise<Record<string, any>>;
  /** Add an endpoint or replace it (next revision): TOML text, or the same as an object. */
  putEndpoint(name: string, spec: string | Record<string, unknown>, options?: Signalled): Promise<Record<string, any>>;
  /** Refuse new jobs (503 with the reason) until enabled; queued jobs wait. */
  disableEndpoint(name: string, options?: { reason?: string } & Signalled): Promise<Record<string, any>>;
  enableEndpoint(name: string, options?: Signalled): Promise<Record<string, any>>;
  /** Delete: queued and running jobs finish first (`drain`, default true) or are cancelled. */
  deleteEndpoint(name: string, options?: { drain?: boolean } & Signalled): Promise<Deletion>;
  /** The model's declared metadata and each worker's model. */
  endpointMetadata(name: string, options?: Signalled): Promise<Record<string, any>>;
  /** The endpoint's log lines, oldest first. */
  endpointLogs(name: string, options?: LogFilter & { job?: string } & Signalled): Promise<LogLine[]>;
  submit(endpoint: string, input?: Input, options?: { idempotencyKey?: string } & Signalled): Promise<Job>;
  predict<T = unknown>(
    endpoint: string,
    input?: Input,
    options?: WaitOptions & { idempotencyKey?: string },
  ): Promise<T>;
  stream(endpoint: string, input?: Input, options?: StreamOptions): Stream;
  job(id: string, options?: Signalled): Promise<Job>;
  /** A media value (data URL or file URL) as a Blob. */
  blob(value: string, options?: Signalled): Promise<Blob>;
  createSession(options?: { endpoints?: string[]; ttl?: number } & Signalled): Promise<Session>;
  conversations(options?: { endpoint?: string } & Signalled): Promise<ConversationInfo[]>;
  createConversation(
    endpoint: string,
    options?: { title?: string; messages?: ChatMessage[] } & Signalled,
  ): Promise<Conversation>;
  conversation(id: string, options?: Signalled): Promise<Conversation>;
  addMessages(id: string, messages: ChatMessage[], options?: Signalled): Promise<Conversation>;
  deleteConversation(id: string, options?: Signalled): Promise<void>;
}

export default Client;
