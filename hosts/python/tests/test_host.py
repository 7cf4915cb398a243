"""The pure-ctypes host (hosts/python/mantle_provider.py) against the local Mantle server.

Formerly tests/c-host/smoke.py: the same checks, now through the Pythonic API, plus what that
API adds (context managers that close, iterators that cancel on exit, exceptions).
"""

from __future__ import annotations

import ctypes
import json

import pytest

from conftest import TOKEN, start_mock
from mantle_provider import (
    ABI_MAJOR,
    ABI_MINOR,
    EventKind,
    Library,
    MantleError,
    Outcome,
    Result,
    StreamFailed,
)


@pytest.fixture(scope="module")
def lib(plugin_path: str) -> Library:
    return Library(plugin_path)


def config(server) -> dict:
    return {"baseUrl": server.base_url, "apiKey": TOKEN}


def ask(model: str, prompt: str) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": prompt}]}


def test_loads_with_the_abi_check(lib: Library) -> None:
    assert lib.abi[0] == ABI_MAJOR and lib.abi[1] >= ABI_MINOR
    assert lib.plugin_version.startswith("0.")
    assert lib.result_name(Result.INVALID_CONFIG) == "MANTLE_INVALID_CONFIG"
    assert lib.result_name(999) == "MANTLE_UNKNOWN"


def test_catalog_outcome_and_no_secret(lib: Library, mock) -> None:
    with lib.provider(provider_config=config(mock)) as provider:
        catalog = provider.catalog()
        assert catalog.outcome == Outcome.READY
        assert catalog.document["outcome"]["status"] == "ready"
        assert "openai.gpt-oss-120b" in catalog.models
        assert TOKEN not in json.dumps(catalog.document)


def test_catalog_skipped_is_an_outcome_not_an_error(lib: Library) -> None:
    with lib.provider(plugin_config={"discovery": {"enabled": False}}, provider_config={"apiKey": "k"}) as p:
        catalog = p.catalog()
        assert catalog.outcome == Outcome.SKIPPED
        assert catalog.document["outcome"]["reason"] == "disabled"


def test_bearer_token_hides_its_secret(lib: Library, mock) -> None:
    with lib.provider(provider_config=config(mock)) as provider:
        token = provider.bearer_token()
        assert token.token == TOKEN
        assert token.source == "config"
        assert token.expires_at_unix == 0
        assert TOKEN not in repr(token)


@pytest.mark.parametrize(
    "model,route", [("openai.gpt-oss-120b", "openai-completions"), ("anthropic.claude-opus-4-7", "anthropic-messages")]
)
def test_streams_both_routes_with_exactly_one_terminal_event(lib: Library, mock, model: str, route: str) -> None:
    prompt = f"hello from Python over {route}"
    with lib.provider(provider_config=config(mock)) as provider:
        with provider.stream(ask(model, prompt)) as stream:
            events = list(stream)
            assert stream.finished
            assert stream.next(0) is None  # after the terminal event: nothing more
        kinds = [e.kind for e in events]
        assert kinds[0] == EventKind.START
        assert [k for k in kinds if k.terminal] == [EventKind.DONE]
        assert kinds[-1] == EventKind.DONE
        assert events[-1].json == {"type": "done", "stop_reason": "stop"}
        assert "".join(e.text for e in events if e.kind == EventKind.TEXT_DELTA) == f"echo: {prompt}"
        usage = [e.json for e in events if e.kind == EventKind.USAGE]
        assert len(usage) == 1 and usage[0]["output"] > 0


def test_include_json_false_gives_the_same_events(lib: Library, mock) -> None:
    request = {**ask("openai.gpt-oss-120b", "Oslo"), "reasoning": "high"}
    with lib.provider(provider_config=config(mock)) as provider:
        with provider.stream(request) as stream:
            every = [e for e in stream if e.kind != EventKind.START]
        with provider.stream({**request, "include_json": False}) as stream:
            lean = [e for e in stream if e.kind != EventKind.START]
    kinds = {e.kind for e in lean}
    assert {EventKind.TEXT_DELTA, EventKind.REASONING_DELTA, EventKind.USAGE} <= kinds
    # The module makes {"type", "text"} for the events the library sent without JSON.
    assert lean == every


def test_a_freed_stream_is_an_invalid_handle(lib: Library, mock) -> None:
    with lib.provider(provider_config=config(mock)) as provider:
        stream = provider.stream(ask("openai.gpt-oss-120b", "x"))
        assert stream.text() == "echo: x"
        stream.close()
        stream.close()  # a second close is a no-op
        stream.finished = False
        with pytest.raises(MantleError) as e:
            stream.next(0)
        assert e.value.code == Result.INVALID_HANDLE


def test_leaving_the_loop_early_cancels_and_frees(lib: Library) -> None:
    slow = start_mock(step_delay_ms=50)
    try:
        with lib.provider(provider_config=config(slow)) as provider:
            stream = provider.stream(ask("openai.gpt-oss-120b", "a long prompt " * 10))
            for event in stream:
                if event.kind == EventKind.TEXT_DELTA:
                    break
            assert stream.freed, "breaking out of the loop frees the stream"
            stream.finished = False
            with pytest.raises(MantleError) as e:
                stream.next(0)
            assert e.value.code == Result.INVALID_HANDLE
    finally:
        slow.stop()


def test_cancel_delivers_one_cancelled_error_event(lib: Library) -> None:
    slow = start_mock(step_delay_ms=50)
    try:
        with lib.provider(provider_config=config(slow)) as provider:
            with provider.stream(ask("openai.gpt-oss-120b", "a long prompt " * 10)) as stream:
                first = None
                while first is None:
                    first = stream.next(5)
                assert first.kind == EventKind.START
                stream.cancel()
                rest = list(stream)
                assert [e.kind for e in rest if e.kind.terminal] == [EventKind.ERROR]
                assert rest[-1].json["kind"] == "cancelled"
    finally:
        slow.stop()


def test_upstream_failure_raises_stream_failed(lib: Library, mock) -> None:
    with lib.provider(provider_config=config(mock)) as provider:
        with provider.stream(ask("openai.no-such-model", "x")) as stream:
            with pytest.raises(StreamFailed) as e:
                stream.text()
        assert e.value.status == 404
        assert e.value.kind == "bad_request"
        assert "does not exist" in str(e.value)


def test_bad_input_raises_with_the_code_and_message(lib: Library, mock) -> None:
    with pytest.raises(MantleError) as e:
        lib.provider(provider_config="{regoin: 'x'}")
    assert e.value.code == Result.INVALID_CONFIG and "regoin" in e.value.message
    with pytest.raises(MantleError) as e:
        lib.provider(provider_config=b'{"region": "\xff"}')
    assert e.value.code == Result.INVALID_ARGUMENT and "UTF-8" in e.value.message
    with pytest.raises(MantleError) as e:
        lib.provider(provider_config="[" * 20000)
    assert e.value.code == Result.INVALID_CONFIG and "limit of 64" in e.value.message
    with lib.provider(provider_config=config(mock)) as provider:
        with pytest.raises(MantleError) as e:
            provider.stream({"messages": [{"role": "user", "content": "x"}]})
        assert e.value.code == Result.INVALID_ARGUMENT and "model" in e.value.message
        assert e.value.function == "mantle_stream_start"


def test_raw_null_and_double_close_are_codes(lib: Library, mock) -> None:
    raw = lib._lib
    handle = ctypes.c_uint64()
    assert raw.mantle_provider_create(None, b"", ctypes.byref(handle)) == Result.INVALID_ARGUMENT
    assert b"plugin_config" in raw.mantle_last_error()
    provider = lib.provider(provider_config=config(mock))
    provider.close()
    provider.close()  # the Pythonic close is idempotent ...
    # ... the C one reports the closed handle.
    assert raw.mantle_provider_close(provider.handle) == Result.INVALID_HANDLE
