'use strict';
// The Node.js host against the local Mantle-compatible server (a subprocess on loopback).
// Environment: MANTLE_PLUGIN (the built plugin) and MANTLE_MOCK_SERVER (its binary); set by
// tests/integration/tests/node_host.rs.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const readline = require('node:readline');

const { ABI_MAJOR, ABI_MINOR, EventKind, Library, MantleError, Outcome, Result, StreamFailed } = require('..');

const TOKEN = 'node-host-key';
const servers = [];

function startMock(stepDelayMs = 0) {
  const bin = process.env.MANTLE_MOCK_SERVER;
  assert.ok(bin, 'MANTLE_MOCK_SERVER is set');
  const child = spawn(bin, ['--token', TOKEN, '--step-delay-ms', String(stepDelayMs)], { stdio: ['ignore', 'pipe', 'inherit'] });
  servers.push(child);
  return new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout });
    lines.once('line', (url) => resolve({ url, child }));
    child.once('exit', (code) => reject(new Error(`mock server exited with ${code}`)));
  });
}

let lib;
let mock;
before(async () => {
  lib = new Library(process.env.MANTLE_PLUGIN);
  mock = await startMock();
});
after(() => servers.forEach((s) => s.kill()));

const config = (server) => ({ baseUrl: server.url, apiKey: TOKEN });
const ask = (model, prompt) => ({ model, messages: [{ role: 'user', content: prompt }] });

test('loads with the ABI check', () => {
  assert.equal(lib.abi.major, ABI_MAJOR);
  assert.ok(lib.abi.minor >= ABI_MINOR);
  assert.match(lib.pluginVersion, /^0\./);
  assert.equal(lib.resultName(Result.INVALID_CONFIG), 'MANTLE_INVALID_CONFIG');
});

test('catalog with its outcome, and no secret in it', () => {
  const provider = lib.provider('', config(mock));
  try {
    const catalog = provider.catalog();
    assert.equal(catalog.outcome, Outcome.READY);
    assert.equal(catalog.document.outcome.status, 'ready');
    assert.ok(catalog.models.includes('openai.gpt-oss-120b'), catalog.models.join());
    assert.ok(!JSON.stringify(catalog.document).includes(TOKEN));
  } finally {
    provider.close();
  }
  const skipped = lib.provider({ discovery: { enabled: false } }, { apiKey: 'k' });
  assert.equal(skipped.catalog().outcome, Outcome.SKIPPED);
  skipped.close();
});

test('bearer token, redacted when serialized', () => {
  const provider = lib.provider('', config(mock));
  const token = provider.bearerToken();
  assert.equal(token.token, TOKEN);
  assert.equal(token.source, 'config');
  assert.equal(token.expiresAtUnix, 0);
  assert.ok(!JSON.stringify(token).includes(TOKEN));
  assert.ok(!Object.keys(token).includes('token'));
  provider.close();
});

for (const [model, route] of [['openai.gpt-oss-120b', 'openai-completions'], ['anthropic.claude-opus-4-7', 'anthropic-messages']]) {
  test(`streams ${route} with exactly one terminal event`, async () => {
    const provider = lib.provider('', config(mock));
    try {
      const prompt = `hello from Node over ${route}`;
      const stream = provider.stream(ask(model, prompt));
      const events = [];
      for await (const event of stream) events.push(event);
      assert.equal(events[0].kind, EventKind.START);
      const terminals = events.filter((e) => e.kind === EventKind.DONE || e.kind === EventKind.ERROR);
      assert.deepEqual(terminals.map((e) => e.kind), [EventKind.DONE]);
      assert.equal(events.at(-1).kind, EventKind.DONE);
      assert.deepEqual(events.at(-1).json, { type: 'done', stop_reason: 'stop' });
      const text = events.filter((e) => e.kind === EventKind.TEXT_DELTA).map((e) => e.text).join('');
      assert.equal(text, `echo: ${prompt}`);
      assert.equal(await stream.next(0), null, 'nothing after the terminal event');
      stream.close();
    } finally {
      provider.close();
    }
  });
}

test('reasoning and tool calls arrive as their own events', async () => {
  const provider = lib.provider('', config(mock));
  const request = {
    ...ask('openai.gpt-oss-120b', 'Oslo'),
    reasoning: 'high',
    tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }],
    tool_choice: 'required',
  };
  const events = [];
  for await (const e of provider.stream(request)) events.push(e);
  const reasoning = events.filter((e) => e.kind === EventKind.REASONING_DELTA).map((e) => e.text).join('');
  assert.equal(reasoning, 'thinking about: Oslo');
  const start = events.find((e) => e.kind === EventKind.TOOL_CALL_START);
  assert.equal(start.json.name, 'get_weather');
  const args = events.filter((e) => e.kind === EventKind.TOOL_CALL_DELTA).map((e) => e.text).join('');
  assert.deepEqual(JSON.parse(args), { text: 'Oslo' });
  assert.deepEqual(events.at(-1).json, { type: 'done', stop_reason: 'tool_use' });
  provider.close();
});

test('include_json false: the same events, text ones without JSON from the library', async () => {
  const provider = lib.provider('', config(mock));
  try {
    const request = { ...ask('openai.gpt-oss-120b', 'Oslo'), reasoning: 'high' };
    const every = [];
    for await (const e of provider.stream(request)) every.push(e);
    const lean = [];
    for await (const e of provider.stream({ ...request, include_json: false })) lean.push(e);
    const kinds = new Set(lean.map((e) => e.kind));
    assert.ok(kinds.has(EventKind.TEXT_DELTA) && kinds.has(EventKind.REASONING_DELTA) && kinds.has(EventKind.USAGE));
    // The module makes {type, text} for the events the library sent without JSON.
    assert.deepEqual(
      lean.filter((e) => e.kind !== EventKind.START),
      every.filter((e) => e.kind !== EventKind.START),
    );
  } finally {
    provider.close();
  }
});

test('break cancels: the stream is freed and its handle invalid', async () => {
  const slow = await startMock(50);
  const provider = lib.provider('', config(slow));
  try {
    const stream = provider.stream(ask('openai.gpt-oss-120b', 'a long prompt '.repeat(10)));
    for await (const event of stream) {
      if (event.kind === EventKind.TEXT_DELTA) break;
    }
    assert.equal(stream.freed, true);
    assert.equal(lib.fn.streamFree(stream.handle), Result.INVALID_HANDLE);
  } finally {
    provider.close();
    slow.child.kill();
  }
});

test('cancel delivers one cancelled error event', async () => {
  const slow = await startMock(50);
  const provider = lib.provider('', config(slow));
  try {
    const stream = provider.stream(ask('openai.gpt-oss-120b', 'a long prompt '.repeat(10)));
    let first = null;
    while (!first) first = await stream.next(5000);
    assert.equal(first.kind, EventKind.START);
    stream.cancel();
    const rest = [];
    for await (const e of stream) rest.push(e);
    assert.deepEqual(rest.filter((e) => e.kind === EventKind.DONE || e.kind === EventKind.ERROR).map((e) => e.kind), [EventKind.ERROR]);
    assert.equal(rest.at(-1).json.kind, 'cancelled');
  } finally {
    provider.close();
    slow.child.kill();
  }
});

test('an upstream failure rejects text() with StreamFailed', async () => {
  const provider = lib.provider('', config(mock));
  await assert.rejects(provider.stream(ask('openai.no-such-model', 'x')).text(), (e) => {
    assert.ok(e instanceof StreamFailed);
    assert.equal(e.status, 404);
    assert.match(e.message, /does not exist/);
    return true;
  });
  provider.close();
});

test('errors are exceptions with the result code and mantle_last_error', () => {
  const expect = (fn, code, pattern) =>
    assert.throws(fn, (e) => {
      assert.ok(e instanceof MantleError, String(e));
      assert.equal(e.code, code);
      assert.equal(e.codeName, lib.resultName(code));
      assert.match(e.detail, pattern);
      return true;
    });
  expect(() => lib.provider('', "{regoin: 'x'}"), Result.INVALID_CONFIG, /regoin/);
  expect(() => lib.provider('', '['.repeat(20000)), Result.INVALID_CONFIG, /limit of 64/);
  const provider = lib.provider('', config(mock));
  expect(() => provider.stream({ messages: [{ role: 'user', content: 'x' }] }), Result.INVALID_ARGUMENT, /model/);
  expect(() => provider.stream('{not json'), Result.INVALID_ARGUMENT, /JSON/);
  provider.close();
  provider.close(); // a second close is a no-op here ...
  expect(() => provider.catalog(), Result.INVALID_HANDLE, /.+/); // ... and the handle is gone
});

test('a failed pull on a worker thread still carries its message', async () => {
  const provider = lib.provider('', config(mock));
  const stream = provider.stream(ask('openai.gpt-oss-120b', 'x'));
  assert.equal(lib.fn.streamFree(stream.handle), Result.OK); // freed behind the wrapper's back
  await assert.rejects(stream.next(10), (e) => {
    assert.ok(e instanceof MantleError);
    assert.equal(e.code, Result.INVALID_HANDLE);
    assert.equal(e.function, 'mantle_stream_next');
    assert.ok(e.detail.length > 0, 'mantle_last_error() was read on the calling thread');
    return true;
  });
  provider.close();
});
