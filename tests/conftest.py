"""The suite's setup: no test reaches the Hub; what tests share comes from the plugins of
``tests/support/``; and each test is marked by what it uses, so that a fast tier runs without
any test saying which tier it is in.

Markers, applied at collection:

- ``browser``: Chromium (the ``browser`` fixture, or ``page``, which uses it);
- ``app``: ``python app.py`` (the ``app`` fixture, or :class:`tests.support.app.RunningApp`
  in its module), every browser test included;
- ``sandbox``: a submission's code in the sandbox (the validator, the worker, the model pool or
  the CLI commands that run them, named in its source);
- ``slow``: every ``app`` test, and every test that took :data:`SLOW_S` or more of its process's
  time when the suite last ran in full with ``RTSR_RECORD_DURATIONS=1`` (``tests/durations.json``).

``python -m pytest -m "not slow"`` is the everyday tier; CI runs everything.
"""

from __future__ import annotations

import inspect
import json
import os
import re
from pathlib import Path

import pytest

# No test may reach the Hub: huggingface_hub reads this when it is first imported.
os.environ["HF_HUB_OFFLINE"] = "1"

pytest_plugins = [
    "tests.support.data",
    "tests.support.cli",
    "tests.support.submissions",
    "tests.support.app",
    "tests.support.browser",
]

#: Where a full run's per-test times are kept, in seconds (setup, call and teardown together).
DURATIONS = Path(__file__).with_name("durations.json")
#: A test that took this long, or longer, is ``slow``.
SLOW_S = 2.5
#: What a test's source names when it runs a submission's code in the sandbox.
_SANDBOXED = re.compile(
    r"run_validation|run_checks|validate\(|SandboxedModels|ModelPool\(|sandbox\.run|check_zip_report|Worker\("
    r"|evaluate_submission|\"(validate|worker|publish|registry)\""
)


def _uses_app(item: pytest.Item) -> bool:
    from tests.support.app import RunningApp

    fixtures = set(getattr(item, "fixturenames", ()))
    module = getattr(item, "module", None)
    return bool(fixtures & {"app", "browser", "page"}) or getattr(module, "RunningApp", None) is RunningApp


def _uses_sandbox(item: pytest.Item) -> bool:
    function = getattr(item, "function", None)
    try:
        source = inspect.getsource(function) if function is not None else ""
    except (OSError, TypeError):
        return False
    return bool(_SANDBOXED.search(source))


def pytest_configure(config: pytest.Config) -> None:
    for name, text in (
        ("browser", "drives Chromium"),
        ("app", "starts python app.py"),
        ("sandbox", "runs a submission's code in the sandbox"),
        ("slow", f"an app test, or one that took {SLOW_S:g} s or more (tests/durations.json)"),
    ):
        config.addinivalue_line("markers", f"{name}: {text}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    recorded = json.loads(DURATIONS.read_text()) if DURATIONS.is_file() else {}
    for item in items:
        app = _uses_app(item)
        if "browser" in getattr(item, "fixturenames", ()) or "page" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)
        if app:
            item.add_marker(pytest.mark.app)
        if _uses_sandbox(item):
            item.add_marker(pytest.mark.sandbox)
        if app or recorded.get(item.nodeid, 0.0) >= SLOW_S:
            item.add_marker(pytest.mark.slow)


# --- recording the durations -----------------------------------------------------------------

_times: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # on the controller too under xdist: the workers' reports come back to it
    _times[report.nodeid] = _times.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With ``RTSR_RECORD_DURATIONS=1``, a run of the whole suite writes what each test took
    to :data:`DURATIONS` (the controller, once: not an xdist worker)."""
    if not os.environ.get("RTSR_RECORD_DURATIONS") or hasattr(session.config, "workerinput"):
        return
    whole = {Path(a).resolve() for a in session.config.args} == {DURATIONS.parent.resolve()}
    if exitstatus != 0 or not whole or session.config.getoption("keyword") or session.config.getoption("markexpr"):
        return  # a part of the suite, or a failed run, would forget the rest's times
    times = {nodeid: round(seconds, 2) for nodeid, seconds in sorted(_times.items())}
    DURATIONS.write_text(json.dumps(times, indent=0, sort_keys=True) + "\n")
