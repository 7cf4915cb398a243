'use strict';
// A Node.js host for the Amazon Bedrock Mantle provider plugin: koffi over the plain C API of
// include/mantle_provider.h, no compiled glue of our own.
//
//   const { Library } = require('mantle-provider');
//   const lib = new Library('target/debug/libmantle_provider.so');   // checks the ABI
//   const provider = lib.provider('', { baseUrl, apiKey });
//   for await (const event of provider.stream({ model, messages })) { ... }  // break cancels
//   provider.close();
//
// Threads: stream pulls run on koffi's worker threads (the event loop never blocks on one);
// everything else is a synchronous call. One stream is pulled by one call at a time, as the
// C API requires. mantle_last_error() is per thread, so a failed pull (run on a worker) is
// repeated once, synchronously and without waiting, to read its message on this thread.

const koffi = require('koffi');

/** The ABI this module was written against (MANTLE_ABI_MAJOR / MANTLE_ABI_MINOR). */
const ABI_MAJOR = 1;
const ABI_MINOR = 1;

/** mantle_result. */
const Result = Object.freeze({
  OK: 0,
  INVALID_ARGUMENT: 1,
  INVALID_CONFIG: 2,
  INVALID_HANDLE: 3,
  AUTH_UNAVAILABLE: 4,
  INTERNAL: 5,
  STREAM_FINISHED: 6,
  BUFFER_TOO_SMALL: 7,
});

/** mantle_outcome: how discovery went. */
const Outcome = Object.freeze({ READY: 0, SKIPPED: 1, AUTH_REJECTED: 2, UNAVAILABLE: 3 });

/** mantle_event_kind. */
const EventKind = Object.freeze({
  START: 1,
  TEXT_DELTA: 2,
  REASONING_DELTA: 3,
  TOOL_CALL_START: 4,
  TOOL_CALL_DELTA: 5,
  TOOL_CALL_END: 6,
  USAGE: 7,
  DONE: 8,
  ERROR: 9,
});

const Poll = Object.freeze({ EVENT: 0, PENDING: 1, FINISHED: 2 });

const KIND_NAMES = Object.fromEntries(Object.entries(EventKind).map(([k, v]) => [v, k]));

/**
 * The JSON of an event the library handed out without it (`include_json: false`: text and
 * unsigned reasoning deltas, whose kind and text are the whole event).
 */
function textOnlyJson(kind, text) {
  if (kind === EventKind.TEXT_DELTA) return { type: 'text_delta', text };
  if (kind === EventKind.REASONING_DELTA) return { type: 'reasoning_delta', text };
  throw new Error(`event ${KIND_NAMES[kind]} has no JSON`);
}

/** A C API call failed: `code` is the mantle_result, `message` mantle_last_error(). */
class MantleError extends Error {
  constructor(fn, code, codeName, message) {
    super(`${fn}: ${codeName}: ${message}`);
    this.name = 'MantleError';
    this.function = fn;
    this.code = code;
    this.codeName = codeName;
    this.detail = message;
  }
}

/** A stream ended with its terminal ERROR event (`event.json` has kind, status, message). */
class StreamFailed extends Error {
  constructor(event) {
    super(`${event.json.kind}: ${event.json.message}`);
    this.name = 'StreamFailed';
    this.event = event;
    this.kind = event.json.kind;
    this.status = event.json.status;
    this.retryable = Boolean(event.json.retryable);
  }
}

let types = null;
function declareTypes() {
  if (types) return types;
  types = {
    version: koffi.struct('mantle_version', { major: 'uint32_t', minor: 'uint32_t' }),
    token: koffi.struct('mantle_token', {
      token: 'void *',
      expires_at_unix: 'int64_t',
      source: 'void *',
    }),
    event: koffi.struct('mantle_event', {
      kind: 'uint32_t',
      text: 'void *',
      text_len: 'size_t',
      json: 'void *',
      json_len: 'size_t',
      raw: 'void *',
      raw_len: 'size_t',
    }),
  };
  return types;
}

function configText(value) {
  if (value === undefined || value === null) return '';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

function decode(ptr, len) {
  return len > 0 ? koffi.decode.string(ptr, Number(len)) : '';
}

/** The plugin library, loaded and checked: same ABI major, minor >= this module's. */
class Library {
  constructor(path = process.env.MANTLE_PLUGIN) {
    if (!path) throw new TypeError('no plugin path: pass one or set MANTLE_PLUGIN');
    declareTypes(); // the struct names used in the prototypes below
    this.path = path;
    const lib = koffi.load(path);
    this.fn = {
      abiVersion: lib.func('mantle_version mantle_abi_version(void)'),
      pluginVersion: lib.func('const char *mantle_plugin_version(void)'),
      lastError: lib.func('const char *mantle_last_error(void)'),
      resultName: lib.func('const char *mantle_result_name(uint32_t)'),
      stringFree: lib.func('void mantle_string_free(void *)'),
      providerCreate: lib.func('uint32_t mantle_provider_create(const char *, const char *, _Out_ uint64_t *)'),
      providerClose: lib.func('uint32_t mantle_provider_close(uint64_t)'),
      catalog: lib.func('uint32_t mantle_catalog(uint64_t, _Out_ uint32_t *, _Out_ void **)'),
      bearerToken: lib.func('uint32_t mantle_bearer_token(uint64_t, _Out_ mantle_token *)'),
      tokenFree: lib.func('void mantle_token_free(_Inout_ mantle_token *)'),
      streamStart: lib.func('uint32_t mantle_stream_start(uint64_t, const char *, _Out_ uint64_t *)'),
      streamNext: lib.func('uint32_t mantle_stream_next(uint64_t, uint64_t, _Out_ uint32_t *, _Out_ mantle_event *)'),
      streamCancel: lib.func('uint32_t mantle_stream_cancel(uint64_t)'),
      streamFree: lib.func('uint32_t mantle_stream_free(uint64_t)'),
    };
    const v = this.fn.abiVersion();
    this.abi = { major: v.major, minor: v.minor };
    if (v.major !== ABI_MAJOR || v.minor < ABI_MINOR) {
      throw new MantleError(
        'mantle_abi_version',
        Result.INVALID_ARGUMENT,
        'MANTLE_INVALID_ARGUMENT',
        `refusing ${path}: it implements ABI ${v.major}.${v.minor}, this host needs ${ABI_MAJOR}.x with x >= ${ABI_MINOR}`,
      );
    }
    /** The plugin's version with its build tag: "0.1.0" or "0.1.0 (v2)". */
    this.pluginVersion = this.fn.pluginVersion();
  }

  /** The library's name for a result code ("MANTLE_INVALID_CONFIG"). */
  resultName(code) {
    return this.fn.resultName(code);
  }

  /** Throws a MantleError for a failed result, reading mantle_last_error() on this thread. */
  check(fnName, code) {
    if (code !== Result.OK) {
      throw new MantleError(fnName, code, this.resultName(code), this.fn.lastError());
    }
  }

  /** Creates a provider from JSON5 texts (or objects); close it when done. */
  provider(pluginConfig = '', providerConfig = '') {
    const out = [0];
    this.check('mantle_provider_create', this.fn.providerCreate(configText(pluginConfig), configText(providerConfig), out));
    return new Provider(this, out[0]);
  }
}

/** A provider instance. close() cancels and frees its streams. */
class Provider {
  constructor(library, handle) {
    this.library = library;
    this.handle = handle;
    this.closed = false;
  }

  /** Closes the provider; a second call is a no-op. */
  close() {
    if (this.closed) return;
    this.closed = true;
    this.library.check('mantle_provider_close', this.library.fn.providerClose(this.handle));
  }

  /** Discovery (or its hour-long cache) and the catalog. A skipped discovery is an outcome. */
  catalog() {
    const outcome = [0];
    const json = [null];
    this.library.check('mantle_catalog', this.library.fn.catalog(this.handle, outcome, json));
    try {
      const document = JSON.parse(koffi.decode.string(json[0]));
      return {
        outcome: outcome[0],
        document,
        models: ((document.provider && document.provider.models) || []).map((m) => m.id),
      };
    } finally {
      this.library.fn.stringFree(json[0]);
    }
  }

  /** The bearer token the provider would send now. A secret: never log `token`. */
  bearerToken() {
    const t = {};
    this.library.check('mantle_bearer_token', this.library.fn.bearerToken(this.handle, t));
    try {
      const token = koffi.decode.string(t.token);
      const result = { expiresAtUnix: Number(t.expires_at_unix), source: koffi.decode.string(t.source) };
      Object.defineProperty(result, 'token', { value: token, enumerable: false });
      result.toJSON = () => ({ expiresAtUnix: result.expiresAtUnix, source: result.source, token: '<redacted>' });
      return result;
    } finally {
      this.library.fn.tokenFree(t);
    }
  }

  /** Starts a stream for a canonical request (an object or JSON text). */
  stream(request) {
    const out = [0];
    const text = typeof request === 'string' ? request : JSON.stringify(request);
    this.library.check('mantle_stream_start', this.library.fn.streamStart(this.handle, text, out));
    return new Stream(this.library, out[0]);
  }
}

/**
 * A running stream, an async iterator of events. Leaving a `for await` loop early (break,
 * return, throw) frees the stream, which cancels the upstream request.
 */
class Stream {
  constructor(library, handle) {
    this.library = library;
    this.handle = handle;
    this.finished = false;
    this.freed = false;
    /** Milliseconds one pull waits on a worker thread before pulling again. */
    this.pollMs = 500;
  }

  /** Pulls one event, waiting at most `timeoutMs`; null when none arrived (or finished). */
  next(timeoutMs = 0) {
    if (this.finished) return Promise.resolve(null);
    const poll = [0];
    const ev = {};
    return new Promise((resolve, reject) => {
      this.library.fn.streamNext.async(this.handle, timeoutMs, poll, ev, (err, code) => {
        if (err) return reject(err);
        if (code !== Result.OK) {
          // mantle_last_error() belongs to the worker thread: repeat the pull here, without
          // waiting, to read the message on this thread.
          const again = this.library.fn.streamNext(this.handle, 0, poll, ev);
          if (again !== Result.OK) {
            try {
              this.library.check('mantle_stream_next', again);
            } catch (e) {
              return reject(e);
            }
          }
        }
        try {
          resolve(this.take(poll[0], ev));
        } catch (e) {
          reject(e);
        }
      });
    });
  }

  /** Copies an event out of the library's buffers (valid only until the next pull). */
  take(poll, ev) {
    if (poll === Poll.PENDING) return null;
    if (poll === Poll.FINISHED) {
      this.finished = true;
      return null;
    }
    const text = decode(ev.text, ev.text_len);
    const event = {
      kind: ev.kind,
      kindName: KIND_NAMES[ev.kind],
      text,
      json: ev.json_len ? JSON.parse(decode(ev.json, ev.json_len)) : textOnlyJson(ev.kind, text),
      raw: decode(ev.raw, ev.raw_len),
    };
    if (ev.kind === EventKind.DONE || ev.kind === EventKind.ERROR) this.finished = true;
    return event;
  }

  async *[Symbol.asyncIterator]() {
    try {
      while (!this.finished) {
        const event = await this.next(this.pollMs);
        if (event) yield event;
      }
    } finally {
      if (!this.finished) this.close();
    }
  }

  /** Aborts the upstream request; the next pull yields the `cancelled` error event. */
  cancel() {
    this.library.check('mantle_stream_cancel', this.library.fn.streamCancel(this.handle));
  }

  /** Frees the stream (cancelling it if still running); a second call is a no-op. */
  close() {
    if (this.freed) return;
    this.freed = true;
    this.finished = true;
    this.library.check('mantle_stream_free', this.library.fn.streamFree(this.handle));
  }

  /** All text deltas to the end; rejects with StreamFailed on the ERROR event. Frees the stream. */
  async text() {
    let text = '';
    try {
      for await (const event of this) {
        if (event.kind === EventKind.TEXT_DELTA) text += event.text;
        if (event.kind === EventKind.ERROR) throw new StreamFailed(event);
      }
    } finally {
      this.close();
    }
    return text;
  }
}

module.exports = {
  ABI_MAJOR,
  ABI_MINOR,
  EventKind,
  Library,
  MantleError,
  Outcome,
  Provider,
  Result,
  Stream,
  StreamFailed,
};
