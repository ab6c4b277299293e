"""``python app.py`` as a user starts it: in a child process of its own session, on a free
local port, with a request store of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.data import ROOT

#: Every setting of `python app.py`: its flag and its environment variable.
APP_SETTINGS = (
    ("--host", "RTSR_HOST"),
    ("--port", "RTSR_PORT"),
    ("--max-input-pixels", "RTSR_MAX_INPUT_PIXELS"),
    ("--registry", "RTSR_REGISTRY"),
    ("--leaderboard-dir", "RTSR_LEADERBOARD_DIR"),
    ("--device", "RTSR_DEVICE"),
    ("--concurrency", "RTSR_CONCURRENCY"),
    ("--queue-size", "RTSR_QUEUE_SIZE"),
    ("--max-file-size", "RTSR_MAX_FILE_SIZE"),
    ("--temp-dir-size", "RTSR_TEMP_DIR_SIZE"),
    ("--temp-file-age", "RTSR_TEMP_FILE_AGE"),
    ("--store", "RTSR_STORE"),
    ("--daily-limit", "RTSR_DAILY_LIMIT"),
    ("--refresh", "RTSR_REFRESH"),
    ("--worker", "RTSR_WORKER"),
    ("--max-live-models", "RTSR_MAX_LIVE_MODELS"),
)

#: Where tests leave what a person should look at (browser screenshots); CI keeps it.
ARTIFACTS = Path(os.environ.get("RTSR_ARTIFACTS", ROOT / "artifacts"))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningApp:
    """``python app.py`` in a child process of its own session, on a free local port."""

    def __init__(self, *args: str | Path, env: dict[str, str] | None = None, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = log
        self._log_file = open(log, "w")  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(self.port), *map(str, args)],
            cwd=ROOT,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            # a request store of its own beside the log, unless the test names one: never the
            # repository's store/
            env={
                **os.environ,
                "GRADIO_ANALYTICS_ENABLED": "False",
                "RTSR_STORE": str(log.parent / "store"),
                **(env or {}),
            },
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 180.0) -> RunningApp:
        import time
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"app exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "gradio_api/info", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise AssertionError(f"app not ready after {timeout} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        import signal

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log_file.close()


@pytest.fixture(scope="session")
def app(tmp_path_factory: pytest.TempPathFactory):
    """The app on its bundled defaults (registry, leaderboard), as ``python app.py`` starts it,
    with an empty request store of its own."""
    running = RunningApp(log=tmp_path_factory.mktemp("app") / "app.log").wait_ready()
    yield running
    running.stop()
