"""Fixtures: the built plugin, the local Mantle-compatible server and `mantle serve --listen`,
each started by the test as a subprocess on loopback.

Environment (set by tests/integration/tests/python_host.rs, which builds everything first):
MANTLE_PLUGIN, MANTLE_PLUGIN_V1, MANTLE_PLUGIN_V2 (tagged builds v1 and v2), MANTLE_BIN (the
`mantle` CLI) and MANTLE_MOCK_SERVER (the `mantle-mock-server` binary).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TOKEN = "python-host-key"


def env_path(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run these tests through `cargo test` (python_host.rs)")
    return value


class Process:
    """A subprocess whose stdout is read on a thread, line by line."""

    def __init__(self, args: List[str], stdin: bool = False) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.lines: List[str] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.stderr: List[str] = []
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def wait_line(self, prefix: str, timeout: float = 60.0, after: int = 0) -> str:
        """The first stdout line (from index `after`) starting with `prefix`."""
        def find() -> Optional[str]:
            return next((l for l in self.lines[after:] if l.startswith(prefix)), None)

        with self.cond:
            if not self.cond.wait_for(lambda: find() is not None or self.proc.poll() is not None, timeout):
                raise TimeoutError(f"no line {prefix!r} from {self.args[0]} in {timeout} s: {self.lines}")
            line = find()
        if line is None:
            raise RuntimeError(f"{self.args[0]} exited: {self.lines} {''.join(self.stderr)}")
        return line

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def start_mock(step_delay_ms: int = 0) -> Process:
    p = Process([env_path("MANTLE_MOCK_SERVER"), "--token", TOKEN, "--step-delay-ms", str(step_delay_ms)])
    p.base_url = p.wait_line("http://")  # type: ignore[attr-defined]
    return p


@pytest.fixture(scope="session")
def plugin_path() -> str:
    return env_path("MANTLE_PLUGIN")


@pytest.fixture(scope="session")
def mock() -> Iterator[Process]:
    """The local Mantle-compatible server (bearer TOKEN), unpaced."""
    p = start_mock()
    yield p
    p.stop()


@pytest.fixture(scope="session")
def slow_mock() -> Iterator[Process]:
    """The local server pacing unscripted streams at 20 ms a chunk."""
    p = start_mock(step_delay_ms=20)
    yield p
    p.stop()


class Front(Process):
    """`mantle serve --listen` over a plugins directory, upstream: a local server."""

    base_url: str
    plugins_dir: Path


def start_front(
    tmp: Path, upstream: Process, plugin: str, api_key: Optional[str] = None
) -> Front:
    plugins = tmp / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    shutil.copy(plugin, plugins / "libmantle_provider.so")
    config = tmp / "mantle.json5"
    config.write_text(json.dumps({"provider": {"baseUrl": upstream.base_url, "apiKey": TOKEN}}))  # type: ignore[attr-defined]
    args = [
        env_path("MANTLE_BIN"), "--config", str(config), "serve",
        "--plugins-dir", str(plugins), "--listen", "127.0.0.1:0", "--poll-ms", "50",
    ]
    if api_key:
        args += ["--api-key", api_key]
    front = Front(args, stdin=True)
    line = front.wait_line("listening on ")
    front.base_url = line.removeprefix("listening on ")
    front.plugins_dir = plugins
    return front


@pytest.fixture(scope="session")
def front(tmp_path_factory: pytest.TempPathFactory, mock: Process, plugin_path: str) -> Iterator[Front]:
    f = start_front(tmp_path_factory.mktemp("front"), mock, plugin_path)
    yield f
    f.stop()
