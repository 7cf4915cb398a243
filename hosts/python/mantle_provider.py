"""A Python host for the Amazon Bedrock Mantle provider plugin: pure ``ctypes``, no compiled glue.

It mirrors ``include/mantle_provider.h`` and wraps it in a Pythonic API::

    from mantle_provider import Library

    lib = Library("target/debug/libmantle_provider.so")      # checks the ABI
    with lib.provider(provider_config={"baseUrl": url, "apiKey": key}) as provider:
        print(provider.catalog().models)
        with provider.stream({"model": "openai.gpt-oss-120b",
                              "messages": [{"role": "user", "content": "hi"}]}) as stream:
            for event in stream:                               # leaving the loop cancels
                if event.kind == EventKind.TEXT_DELTA:
                    print(event.text, end="")

Failed calls raise :class:`MantleError` with the result code and ``mantle_last_error()``.
A stream's terminal ``ERROR`` event is an event, not an exception; :meth:`Stream.text` raises
:class:`StreamFailed` for it.

Threads: every function may be called from any thread; pull one stream from one thread at a
time. Handles are closed by the context managers (or ``close()``), exactly once.
"""

from __future__ import annotations

import ctypes as C
import enum
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Union

__all__ = [
    "ABI_MAJOR",
    "ABI_MINOR",
    "Catalog",
    "Event",
    "EventKind",
    "Library",
    "MantleError",
    "Outcome",
    "Provider",
    "Result",
    "Stream",
    "StreamFailed",
    "Token",
]

#: The ABI this module was written against (``MANTLE_ABI_MAJOR``/``MANTLE_ABI_MINOR``).
ABI_MAJOR, ABI_MINOR = 1, 1


class Result(enum.IntEnum):
    """``mantle_result``."""

    OK = 0
    INVALID_ARGUMENT = 1
    INVALID_CONFIG = 2
    INVALID_HANDLE = 3
    AUTH_UNAVAILABLE = 4
    INTERNAL = 5
    STREAM_FINISHED = 6
    BUFFER_TOO_SMALL = 7


class Outcome(enum.IntEnum):
    """``mantle_outcome``: how discovery went."""

    READY = 0
    SKIPPED = 1
    AUTH_REJECTED = 2
    UNAVAILABLE = 3


class _Poll(enum.IntEnum):
    EVENT = 0
    PENDING = 1
    FINISHED = 2


class EventKind(enum.IntEnum):
    """``mantle_event_kind``."""

    START = 1
    TEXT_DELTA = 2
    REASONING_DELTA = 3
    TOOL_CALL_START = 4
    TOOL_CALL_DELTA = 5
    TOOL_CALL_END = 6
    USAGE = 7
    DONE = 8
    ERROR = 9

    @property
    def terminal(self) -> bool:
        """DONE or ERROR: the last event of a stream."""
        return self in (EventKind.DONE, EventKind.ERROR)


class _Version(C.Structure):
    _fields_ = [("major", C.c_uint32), ("minor", C.c_uint32)]


class _Token(C.Structure):
    _fields_ = [("token", C.c_void_p), ("expires_at_unix", C.c_int64), ("source", C.c_void_p)]


class _Event(C.Structure):
    _fields_ = [
        ("kind", C.c_uint32),
        ("text", C.c_void_p),
        ("text_len", C.c_size_t),
        ("json", C.c_void_p),
        ("json_len", C.c_size_t),
        ("raw", C.c_void_p),
        ("raw_len", C.c_size_t),
    ]


class MantleError(Exception):
    """A C API call failed: ``code`` is the :class:`Result`, ``message`` ``mantle_last_error()``."""

    def __init__(self, function: str, code: int, message: str) -> None:
        self.function = function
        self.code = Result(code) if code in Result._value2member_map_ else code
        self.message = message
        name = self.code.name if isinstance(self.code, Result) else str(code)
        super().__init__(f"{function}: MANTLE_{name}: {message}")


class StreamFailed(Exception):
    """A stream ended with its terminal ``ERROR`` event (``event.json`` has kind, status, ...)."""

    def __init__(self, event: "Event") -> None:
        self.event = event
        self.kind: str = event.json.get("kind", "")
        self.status: Optional[int] = event.json.get("status")
        self.retryable: bool = bool(event.json.get("retryable"))
        super().__init__(f"{self.kind}: {event.json.get('message', '')}")


def _text_only_json(kind: EventKind, text: str) -> Dict[str, Any]:
    """The JSON of an event the library handed out without it (``include_json: false``: text
    and unsigned reasoning deltas, whose kind and text are the whole event)."""
    if kind == EventKind.TEXT_DELTA:
        return {"type": "text_delta", "text": text}
    if kind == EventKind.REASONING_DELTA:
        return {"type": "reasoning_delta", "text": text}
    raise MantleError("mantle_stream_next", Result.INTERNAL, f"event {kind.name} has no JSON")


@dataclass(frozen=True)
class Event:
    """One stream event, copied out of the library's buffers."""

    kind: EventKind
    #: Text delta for text, reasoning and tool-argument events; "" otherwise.
    text: str
    #: The whole event as a JSON object (``{"type": ..., ...}``). With ``include_json: false``
    #: the library sends none for text and unsigned reasoning deltas; this module then makes
    #: ``{"type", "text"}`` from the kind and text.
    json: Dict[str, Any]
    #: The upstream's raw payload when the request set ``include_raw``; "" otherwise.
    raw: str = ""


@dataclass(frozen=True)
class Catalog:
    """The catalog with its discovery outcome."""

    outcome: Outcome
    #: The whole JSON document: ``{"outcome": {...}, "provider": {...}}``.
    document: Dict[str, Any]

    @property
    def models(self) -> List[str]:
        """The model ids."""
        return [m["id"] for m in self.document["provider"].get("models", [])]


@dataclass(frozen=True)
class Token:
    """A bearer token. A secret: its ``repr`` never shows it."""

    token: str = field(repr=False)
    #: Unix seconds when it stops being valid; 0 when unknown (explicit keys).
    expires_at_unix: int
    #: ``config``, ``config-env``, ``env`` or ``iam``.
    source: str


def _text(value: Union[str, bytes, Mapping[str, Any], None]) -> bytes:
    if value is None or value == "":
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value).encode()


class Library:
    """The plugin library, loaded with ``ctypes`` and checked: same ABI major, minor >= ours."""

    def __init__(self, path: Optional[str] = None) -> None:
        path = path or os.environ.get("MANTLE_PLUGIN")
        if not path:
            raise ValueError("no plugin path: pass one or set MANTLE_PLUGIN")
        self.path = path
        self._lib = C.CDLL(path)
        self._bind()
        v = self._lib.mantle_abi_version()
        self.abi = (v.major, v.minor)
        if v.major != ABI_MAJOR or v.minor < ABI_MINOR:
            raise MantleError(
                "mantle_abi_version",
                Result.INVALID_ARGUMENT,
                f"refusing {path}: it implements ABI {v.major}.{v.minor}, "
                f"this host needs {ABI_MAJOR}.x with x >= {ABI_MINOR}",
            )
        self.plugin_version: str = self._lib.mantle_plugin_version().decode()

    def _bind(self) -> None:
        u32, u64, s, vp = C.c_uint32, C.c_uint64, C.c_char_p, C.c_void_p

        def fn(name: str, restype: Any, *argtypes: Any) -> None:
            f = getattr(self._lib, name)
            f.restype, f.argtypes = restype, list(argtypes)

        fn("mantle_abi_version", _Version)
        fn("mantle_plugin_version", s)
        fn("mantle_last_error", s)
        fn("mantle_result_name", s, u32)
        fn("mantle_string_free", None, vp)
        fn("mantle_provider_create", u32, s, s, C.POINTER(u64))
        fn("mantle_provider_close", u32, u64)
        fn("mantle_catalog", u32, u64, C.POINTER(u32), C.POINTER(vp))
        fn("mantle_bearer_token", u32, u64, C.POINTER(_Token))
        fn("mantle_token_free", None, C.POINTER(_Token))
        fn("mantle_stream_start", u32, u64, s, C.POINTER(u64))
        fn("mantle_stream_next", u32, u64, u64, C.POINTER(u32), C.POINTER(_Event))
        fn("mantle_stream_cancel", u32, u64)
        fn("mantle_stream_free", u32, u64)

    def _check(self, function: str, code: int) -> None:
        if code != Result.OK:
            raise MantleError(function, code, self._lib.mantle_last_error().decode(errors="replace"))

    def result_name(self, code: int) -> str:
        """The library's name for a result code (``MANTLE_INVALID_CONFIG``)."""
        return self._lib.mantle_result_name(code).decode()

    def provider(
        self,
        plugin_config: Union[str, bytes, Mapping[str, Any], None] = None,
        provider_config: Union[str, bytes, Mapping[str, Any], None] = None,
    ) -> "Provider":
        """Creates a provider from JSON5 texts (or mappings); close it, or use it in ``with``."""
        handle = C.c_uint64()
        code = self._lib.mantle_provider_create(
            _text(plugin_config), _text(provider_config), C.byref(handle)
        )
        self._check("mantle_provider_create", code)
        return Provider(self, handle.value)


class Provider:
    """A provider instance. ``close()`` (or leaving ``with``) cancels and frees its streams."""

    def __init__(self, library: Library, handle: int) -> None:
        self._library = library
        self._lib = library._lib
        self.handle = handle
        self.closed = False

    def __enter__(self) -> "Provider":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the provider; a second call is a no-op."""
        if not self.closed:
            self.closed = True
            self._library._check("mantle_provider_close", self._lib.mantle_provider_close(self.handle))

    def catalog(self) -> Catalog:
        """Discovery (or its hour-long cache) and the catalog; a skipped discovery is an outcome."""
        outcome, raw = C.c_uint32(), C.c_void_p()
        code = self._lib.mantle_catalog(self.handle, C.byref(outcome), C.byref(raw))
        self._library._check("mantle_catalog", code)
        try:
            document = json.loads(C.string_at(raw).decode())
        finally:
            self._lib.mantle_string_free(raw)
        return Catalog(Outcome(outcome.value), document)

    def bearer_token(self) -> Token:
        """The bearer token the provider would send now (its bytes are wiped in the library)."""
        t = _Token()
        self._library._check("mantle_bearer_token", self._lib.mantle_bearer_token(self.handle, C.byref(t)))
        try:
            return Token(
                token=C.string_at(t.token).decode(),
                expires_at_unix=t.expires_at_unix,
                source=C.string_at(t.source).decode(),
            )
        finally:
            self._lib.mantle_token_free(C.byref(t))

    def stream(self, request: Union[str, Mapping[str, Any]]) -> "Stream":
        """Starts a stream for a canonical request (a dict or JSON text)."""
        handle = C.c_uint64()
        code = self._lib.mantle_stream_start(self.handle, _text(request), C.byref(handle))
        self._library._check("mantle_stream_start", code)
        return Stream(self._library, handle.value)


class Stream:
    """A running stream: iterate it for events. Leaving the loop or the ``with`` block early
    cancels the upstream request and frees the handle."""

    #: How long one pull waits (seconds) before iteration pulls again.
    poll_interval = 0.5

    def __init__(self, library: Library, handle: int, timeout: float = 600.0) -> None:
        self._library = library
        self._lib = library._lib
        self.handle = handle
        #: Seconds the whole stream may take before iteration raises ``TimeoutError``.
        self.timeout = timeout
        self.finished = False
        self.freed = False

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Event]:
        import time

        deadline = time.monotonic() + self.timeout
        try:
            while not self.finished:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"stream {self.handle} did not finish in {self.timeout} s")
                event = self.next(self.poll_interval)
                if event is not None:
                    yield event
        finally:
            # Leaving the loop early (break, exception, garbage collection) cancels.
            if not self.finished:
                self.close()

    def next(self, timeout: float = 0.0) -> Optional[Event]:
        """Pulls one event, waiting at most ``timeout`` seconds; ``None`` when none arrived."""
        if self.finished:
            return None
        poll, ev = C.c_uint32(), _Event()
        code = self._lib.mantle_stream_next(
            self.handle, int(timeout * 1000), C.byref(poll), C.byref(ev)
        )
        self._library._check("mantle_stream_next", code)
        if poll.value == _Poll.PENDING:
            return None
        if poll.value == _Poll.FINISHED:
            self.finished = True
            return None
        # Copy out now: the buffers are valid only until the next pull on this stream.
        kind = EventKind(ev.kind)
        text = C.string_at(ev.text, ev.text_len).decode(errors="replace")
        event = Event(
            kind=kind,
            text=text,
            json=(
                json.loads(C.string_at(ev.json, ev.json_len).decode())
                if ev.json_len
                else _text_only_json(kind, text)
            ),
            raw=C.string_at(ev.raw, ev.raw_len).decode(errors="replace") if ev.raw_len else "",
        )
        if event.kind.terminal:
            self.finished = True
        return event

    def cancel(self) -> None:
        """Aborts the upstream request; the next pull yields the ``cancelled`` error event."""
        self._library._check("mantle_stream_cancel", self._lib.mantle_stream_cancel(self.handle))

    def close(self) -> None:
        """Frees the stream (cancelling it if still running); a second call is a no-op."""
        if not self.freed:
            self.freed = True
            self.finished = True
            self._library._check("mantle_stream_free", self._lib.mantle_stream_free(self.handle))

    def text(self) -> str:
        """All text deltas to the end; raises :class:`StreamFailed` on the ``ERROR`` event."""
        parts = []
        for event in self:
            if event.kind == EventKind.TEXT_DELTA:
                parts.append(event.text)
            elif event.kind == EventKind.ERROR:
                raise StreamFailed(event)
        return "".join(parts)
