"""Hot-swap under real traffic: while 32 concurrent SDK clients stream through
`mantle serve --listen`, a new plugin version is dropped into the plugins directory, then the
operator rolls back. Every client completes its stream, whole, and requests after each swap are
served by the new version (the front names it in `x-mantle-plugin-version`).
"""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import List, Tuple

import anthropic
import openai

from conftest import env_path, start_front

CLIENTS = 32


def served_by(client: openai.OpenAI) -> str:
    raw = client.chat.completions.with_raw_response.create(
        model="openai.gpt-oss-120b", messages=[{"role": "user", "content": "which"}]
    )
    assert raw.parse().choices[0].message.content == "echo: which"
    return raw.headers["x-mantle-plugin-version"]


def wait_served_by(client: openai.OpenAI, version: str, timeout: float = 30.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if served_by(client) == version:
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"not served by {version} after {timeout} s (still {served_by(client)})")


def one_stream(base_url: str, n: int, started: threading.Barrier) -> Tuple[int, str, str]:
    """One client's whole stream: (n, text, the version that served it). The client waits at
    `started` once its stream is flowing; a failure before that breaks the barrier for all."""
    try:
        return _one_stream(base_url, n, started)
    except BaseException:
        started.abort()
        raise


def _one_stream(base_url: str, n: int, started: threading.Barrier) -> Tuple[int, str, str]:
    prompt = f"client {n} " + "long text " * 12
    if n % 2 == 0:
        client = openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0)
        with client.chat.completions.stream(
            model="openai.gpt-oss-120b", messages=[{"role": "user", "content": prompt}]
        ) as stream:
            started.wait(60)
            final = stream.get_final_completion()
        assert final.choices[0].finish_reason == "stop"
        # The front names the serving version as OpenAI's `system_fingerprint`.
        version = (final.system_fingerprint or "").removeprefix("mantle-")
        return n, final.choices[0].message.content or "", version
    client = anthropic.Anthropic(base_url=base_url, api_key="unused", max_retries=0)
    with client.messages.stream(
        model="anthropic.claude-opus-4-7", max_tokens=512, messages=[{"role": "user", "content": prompt}]
    ) as stream:
        version = stream.response.headers["x-mantle-plugin-version"]
        started.wait(60)
        message = stream.get_final_message()
    assert message.stop_reason == "end_turn"
    return n, message.content[0].text, version


def wave(base_url: str, during) -> List[Tuple[int, str, str]]:
    """Starts CLIENTS streams; once all are flowing, runs `during()`; returns every result."""
    started = threading.Barrier(CLIENTS + 1)
    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(one_stream, base_url, n, started) for n in range(CLIENTS)]
        started.wait(60)
        during()
        results = [f.result(timeout=120) for f in futures]
    for n, text, _ in results:
        assert text == f"echo: client {n} " + "long text " * 12, f"client {n} got {text!r}"
    return results


def test_swap_and_rollback_under_32_streaming_sdk_clients(tmp_path, slow_mock) -> None:
    v1, v2 = env_path("MANTLE_PLUGIN_V1"), env_path("MANTLE_PLUGIN_V2")
    front = start_front(tmp_path, slow_mock, v1)
    try:
        probe = openai.OpenAI(base_url=front.base_url + "/v1", api_key="unused", max_retries=0)
        before = served_by(probe)
        assert before.endswith("+v1"), before

        def drop_v2() -> None:
            shutil.copy(v2, front.plugins_dir / "libmantle_provider-v2.so")
            wait_served_by(probe, before.replace("+v1", "+v2"))

        results = wave(front.base_url, drop_v2)
        # The streams started before the swap finished, whole, on the version they started on.
        assert {v for _, _, v in results} == {before}
        after_swap = served_by(probe)
        assert after_swap.endswith("+v2")
        front.wait_line("[swap] ")

        def roll_back() -> None:
            front.send("rollback")
            wait_served_by(probe, before)

        results = wave(front.base_url, roll_back)
        assert {v for _, _, v in results} == {after_swap}
        assert served_by(probe) == before
        swaps = [l for l in front.lines if l.startswith("[swap] ")]
        assert len(swaps) == 2, swaps
        assert not [l for l in front.lines if l.startswith("[failed]")]
    finally:
        front.stop()
