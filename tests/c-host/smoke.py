#!/usr/bin/env python3
"""A Python host for the Mantle provider plugin, standard library only (ctypes).

Mirrors include/mantle_provider.h with ctypes declarations and nothing else: loads the library,
checks the ABI version, lists the models and streams a reply on both routes from a local
Mantle-compatible server, and checks that bad input comes back as error codes.

usage: smoke.py LIBRARY BASE_URL API_KEY   (exits 0 only when every check passed)
"""

import ctypes as C
import json
import sys

# Constants and types from mantle_provider.h.
MANTLE_ABI_MAJOR, MANTLE_ABI_MINOR = 1, 1
MANTLE_OK, MANTLE_INVALID_ARGUMENT, MANTLE_INVALID_CONFIG, MANTLE_INVALID_HANDLE = 0, 1, 2, 3
MANTLE_OUTCOME_READY = 0
MANTLE_POLL_EVENT, MANTLE_POLL_PENDING, MANTLE_POLL_FINISHED = 0, 1, 2
MANTLE_EVENT_TEXT_DELTA, MANTLE_EVENT_DONE, MANTLE_EVENT_ERROR = 2, 8, 9


class Version(C.Structure):
    _fields_ = [("major", C.c_uint32), ("minor", C.c_uint32)]


class Token(C.Structure):
    _fields_ = [("token", C.c_void_p), ("expires_at_unix", C.c_int64), ("source", C.c_void_p)]


class Event(C.Structure):
    _fields_ = [
        ("kind", C.c_uint32),
        ("text", C.c_void_p), ("text_len", C.c_size_t),
        ("json", C.c_void_p), ("json_len", C.c_size_t),
        ("raw", C.c_void_p), ("raw_len", C.c_size_t),
    ]


def bind(lib):
    def fn(name, restype, *argtypes):
        f = getattr(lib, name)
        f.restype, f.argtypes = restype, list(argtypes)
        return f

    u32, u64, s = C.c_uint32, C.c_uint64, C.c_char_p
    fn("mantle_abi_version", Version)
    fn("mantle_plugin_version", s)
    fn("mantle_last_error", s)
    fn("mantle_result_name", s, u32)
    fn("mantle_string_free", None, C.c_void_p)
    fn("mantle_provider_create", u32, s, s, C.POINTER(u64))
    fn("mantle_provider_close", u32, u64)
    fn("mantle_catalog", u32, u64, C.POINTER(u32), C.POINTER(C.c_void_p))
    fn("mantle_bearer_token", u32, u64, C.POINTER(Token))
    fn("mantle_token_free", None, C.POINTER(Token))
    fn("mantle_stream_start", u32, u64, s, C.POINTER(u64))
    fn("mantle_stream_next", u32, u64, u64, C.POINTER(u32), C.POINTER(Event))
    fn("mantle_stream_cancel", u32, u64)
    fn("mantle_stream_free", u32, u64)
    return lib


failures = []


def check(cond, what, lib=None):
    if not cond:
        detail = lib.mantle_last_error().decode() if lib else ""
        failures.append(f"{what} (last error: {detail})")
        print(f"FAIL: {what} {detail}", file=sys.stderr)


def stream_text(lib, provider, request):
    stream = C.c_uint64()
    r = lib.mantle_stream_start(provider, json.dumps(request).encode(), C.byref(stream))
    check(r == MANTLE_OK, "stream_start", lib)
    text, terminals, last = [], 0, None
    poll, ev = C.c_uint32(), Event()
    while True:
        r = lib.mantle_stream_next(stream, 5000, C.byref(poll), C.byref(ev))
        check(r == MANTLE_OK, "stream_next", lib)
        if r != MANTLE_OK or poll.value == MANTLE_POLL_FINISHED:
            break
        if poll.value == MANTLE_POLL_PENDING:
            continue
        # Copy out of the event before the next pull (the buffers belong to the stream).
        event = json.loads(C.string_at(ev.json, ev.json_len).decode())
        if ev.kind == MANTLE_EVENT_TEXT_DELTA:
            text.append(C.string_at(ev.text, ev.text_len).decode())
        if ev.kind in (MANTLE_EVENT_DONE, MANTLE_EVENT_ERROR):
            terminals += 1
            last = (ev.kind, event)
    check(terminals == 1, f"exactly one terminal event (got {terminals})")
    check(lib.mantle_stream_free(stream) == MANTLE_OK, "stream_free", lib)
    r = lib.mantle_stream_next(stream, 0, C.byref(poll), C.byref(ev))
    check(r == MANTLE_INVALID_HANDLE, "a freed stream is an invalid handle")
    return "".join(text), last


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    path, base_url, key = sys.argv[1:]
    lib = bind(C.CDLL(path))

    v = lib.mantle_abi_version()
    if v.major != MANTLE_ABI_MAJOR or v.minor < MANTLE_ABI_MINOR:
        print(f"refusing ABI {v.major}.{v.minor}", file=sys.stderr)
        return 1
    print(f"loaded {lib.mantle_plugin_version().decode()}, ABI {v.major}.{v.minor}")

    provider = C.c_uint64()
    config = json.dumps({"baseUrl": base_url, "apiKey": key}).encode()
    r = lib.mantle_provider_create(b"", config, C.byref(provider))
    check(r == MANTLE_OK, "provider_create", lib)
    if r != MANTLE_OK:
        return 1

    outcome, raw = C.c_uint32(), C.c_void_p()
    r = lib.mantle_catalog(provider, C.byref(outcome), C.byref(raw))
    check(r == MANTLE_OK and outcome.value == MANTLE_OUTCOME_READY, "catalog ready", lib)
    catalog = json.loads(C.string_at(raw).decode())
    lib.mantle_string_free(raw)
    ids = [m["id"] for m in catalog["provider"]["models"]]
    check("openai.gpt-oss-120b" in ids, f"catalog lists gpt-oss-120b: {ids}")
    check(key not in json.dumps(catalog), "the key never appears in the catalog")
    print(f"models: {len(ids)} ({catalog['outcome']['status']})")

    token = Token()
    r = lib.mantle_bearer_token(provider, C.byref(token))
    check(r == MANTLE_OK and C.string_at(token.token).decode() == key, "bearer token", lib)
    check(C.string_at(token.source) == b"config", "token source")
    lib.mantle_token_free(C.byref(token))
    check(token.token is None and token.source is None, "token_free clears the pointers")

    for model, route in (("openai.gpt-oss-120b", "openai-completions"),
                         ("anthropic.claude-opus-4-7", "anthropic-messages")):
        prompt = f"hello from Python over {route}"
        text, last = stream_text(lib, provider, {
            "model": model, "messages": [{"role": "user", "content": prompt}]})
        check(text == f"echo: {prompt}", f"{route} text: {text!r}")
        check(last is not None and last[0] == MANTLE_EVENT_DONE, f"{route} ends with done: {last}")
        print(f"{route}: {text}")

    # Error paths come back as codes with readable messages.
    other = C.c_uint64()
    r = lib.mantle_provider_create(None, b"", C.byref(other))
    check(r == MANTLE_INVALID_ARGUMENT and b"plugin_config" in lib.mantle_last_error(), "NULL")
    r = lib.mantle_provider_create(b"", b'{"region": "\xff"}', C.byref(other))
    check(r == MANTLE_INVALID_ARGUMENT and b"UTF-8" in lib.mantle_last_error(), "invalid UTF-8")
    r = lib.mantle_provider_create(b"", b"{regoin: 'x'}", C.byref(other))
    check(r == MANTLE_INVALID_CONFIG and b"regoin" in lib.mantle_last_error(), "unknown key")
    check(lib.mantle_result_name(r) == b"MANTLE_INVALID_CONFIG", "result names")
    r = lib.mantle_provider_create(b"", b"[" * 20000, C.byref(other))
    check(r == MANTLE_INVALID_CONFIG and b"limit of 64" in lib.mantle_last_error(), "deep config")
    print("error paths: " + ("FAILED" if failures else "ok"))

    check(lib.mantle_provider_close(provider) == MANTLE_OK, "provider_close", lib)
    check(lib.mantle_provider_close(provider) == MANTLE_INVALID_HANDLE, "double close")
    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
