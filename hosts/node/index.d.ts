// Types of the Node.js host of the Amazon Bedrock Mantle provider plugin (index.js).

/** The ABI this module was written against. */
export const ABI_MAJOR: 1;
export const ABI_MINOR: 1;

/** mantle_result. */
export const Result: Readonly<{
  OK: 0; INVALID_ARGUMENT: 1; INVALID_CONFIG: 2; INVALID_HANDLE: 3;
  AUTH_UNAVAILABLE: 4; INTERNAL: 5; STREAM_FINISHED: 6; BUFFER_TOO_SMALL: 7;
}>;
export type ResultCode = (typeof Result)[keyof typeof Result];

/** mantle_outcome: how discovery went. */
export const Outcome: Readonly<{ READY: 0; SKIPPED: 1; AUTH_REJECTED: 2; UNAVAILABLE: 3 }>;
export type OutcomeCode = (typeof Outcome)[keyof typeof Outcome];

/** mantle_event_kind. */
export const EventKind: Readonly<{
  START: 1; TEXT_DELTA: 2; REASONING_DELTA: 3; TOOL_CALL_START: 4; TOOL_CALL_DELTA: 5;
  TOOL_CALL_END: 6; USAGE: 7; DONE: 8; ERROR: 9;
}>;
export type EventKindCode = (typeof EventKind)[keyof typeof EventKind];

/** A C API call failed. */
export class MantleError extends Error {
  /** The C function that failed, e.g. "mantle_provider_create". */
  readonly function: string;
  /** The mantle_result. */
  readonly code: ResultCode;
  /** Its name, e.g. "MANTLE_INVALID_CONFIG". */
  readonly codeName: string;
  /** mantle_last_error(): names what was wrong; never a secret. */
  readonly detail: string;
}

/** The terminal event of a normalized stream's failure. */
export interface ErrorEventJson {
  type: 'error';
  kind: string;
  status?: number;
  retryable: boolean;
  message: string;
}

/** One stream event, copied out of the library's buffers. */
export interface StreamEvent {
  kind: EventKindCode;
  kindName: keyof typeof EventKind;
  /** Text delta for text, reasoning and tool-argument events; "" otherwise. */
  text: string;
  /**
   * The whole event as a JSON object ({type, ...}). With include_json: false the library sends
   * none for text and unsigned reasoning deltas; this module then makes {type, text} from the
   * kind and text.
   */
  json: { type: string; [key: string]: unknown };
  /** The upstream's raw payload when the request set include_raw; "" otherwise. */
  raw: string;
}

/** A stream ended with its terminal ERROR event. */
export class StreamFailed extends Error {
  readonly event: StreamEvent;
  readonly kind: string;
  readonly status?: number;
  readonly retryable: boolean;
}

/** The catalog with its discovery outcome. */
export interface Catalog {
  outcome: OutcomeCode;
  /** The whole JSON document: {outcome, provider} (provider is null when discovery was skipped). */
  document: { outcome: { status: string; [key: string]: unknown }; provider: { models: Array<{ id: string; [key: string]: unknown }>; [key: string]: unknown } | null };
  /** The model ids. */
  models: string[];
}

/** A bearer token. `token` is a secret: not enumerable, redacted in JSON. */
export interface Token {
  readonly token: string;
  /** Unix seconds when it stops being valid; 0 when unknown. */
  expiresAtUnix: number;
  /** config, config-env, env or iam. */
  source: string;
}

/** A canonical request: Chat Completions shaped, plus reasoning, headers, include_raw, ... */
export interface CanonicalRequest {
  model: string;
  messages: Array<Record<string, unknown>>;
  [key: string]: unknown;
}

/** The plugin library, loaded with koffi and checked against ABI_MAJOR/ABI_MINOR. */
export class Library {
  /** Loads `path` (default: $MANTLE_PLUGIN); throws MantleError for an incompatible ABI. */
  constructor(path?: string);
  readonly path: string;
  readonly abi: { major: number; minor: number };
  readonly pluginVersion: string;
  /** The library's name for a result code. */
  resultName(code: number): string;
  /** Creates a provider from JSON5 texts or objects ("" for defaults). */
  provider(pluginConfig?: string | object, providerConfig?: string | object): Provider;
}

/** A provider instance; close() cancels and frees its streams. */
export class Provider {
  readonly handle: number;
  readonly closed: boolean;
  close(): void;
  /** Discovery (or its cache) and the catalog; may block on the first discovery. */
  catalog(): Catalog;
  bearerToken(): Token;
  stream(request: CanonicalRequest | string): Stream;
}

/** A running stream. Breaking out of `for await` frees it (cancelling the upstream). */
export class Stream implements AsyncIterable<StreamEvent> {
  readonly handle: number;
  readonly finished: boolean;
  readonly freed: boolean;
  /** Milliseconds one pull waits on a worker thread before pulling again (default 500). */
  pollMs: number;
  [Symbol.asyncIterator](): AsyncIterator<StreamEvent>;
  /** One pull: the next event, or null when none arrived within `timeoutMs` (or finished). */
  next(timeoutMs?: number): Promise<StreamEvent | null>;
  cancel(): void;
  close(): void;
  /** All text deltas to the end; rejects with StreamFailed on the ERROR event. */
  text(): Promise<string>;
}
