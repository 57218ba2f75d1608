"""How a whole test session keeps both xdist workers busy: module order, the demo made ahead.

CI runs the suite on two cores with ``--dist loadfile`` (a module's tests on one worker). Left to
itself xdist orders modules by their number of tests, which puts the few long end-to-end
modules last, side by side, each waiting for the shared demo release. Here instead:

- modules run longest first (the classic longest-processing-time rule, so the short ones fill
  the end), from ``module_seconds.json``: each module's measured seconds, written by every
  session to ``build/module-seconds.json`` and copied into the repository after a CI run;
- the modules that read the shared demo release start after the long ones that do not (except
  the very long ones, whose own work comes first), and
  with ``LSDR_TEST_DEMO_AHEAD=1`` (``make pytest``) the controller starts making the demo
  when the session starts, in a process of its own holding the demo's lock
  (``demo_release.py``), so no worker sits waiting for it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from demo_release import start_demo_ahead

MEASURED = Path(__file__).with_name("module_seconds.json")
"""Each module's seconds (setup, call, teardown of all its tests) in a CI run."""

WRITTEN = Path(__file__).resolve().parents[1] / "build" / "module-seconds.json"
"""Where a session writes what it measured (copy it over ``MEASURED`` to refresh the order)."""

LONG_S = 60.0
"""A module at least this long counts as long (run before the demo's readers)."""

FIRST_S = 900.0
"""A module this long runs first even if it reads the demo: its own work comes first (the
legacypipe demo makes its release before it compares with lite's), by when the demo is made."""

_ahead: list[subprocess.Popen[bytes]] = []
_seconds: dict[str, float] = {}


def module_of(nodeid: str) -> str:
    """The test module of a node id (``tests/test_x.py``)."""
    return nodeid.split("::", 1)[0]


def module_order(items: list[pytest.Item], seconds: dict[str, float]) -> list[str]:
    """Long modules without the demo, then the demo's readers, then the rest; longest first."""
    demo = {module_of(i.nodeid) for i in items if "demo_release" in getattr(i, "fixturenames", ())}

    def key(module: str) -> tuple[int, float, str]:
        s = seconds.get(module, 0.0)
        group = 1 if module in demo and s < FIRST_S else 0 if s >= LONG_S else 2
        return (group, -s, module)

    return sorted({module_of(i.nodeid) for i in items}, key=key)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Reorder the modules (a stable sort: each module's own tests keep their order)."""
    seconds = json.loads(MEASURED.read_text()) if MEASURED.exists() else {}
    rank = {m: n for n, m in enumerate(module_order(items, seconds))}
    items.sort(key=lambda i: rank[module_of(i.nodeid)])


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """In the controller, with ``LSDR_TEST_DEMO_AHEAD=1``: start making the shared demo."""
    if os.environ.get("PYTEST_XDIST_WORKER") or os.environ.get("LSDR_TEST_DEMO_AHEAD") != "1":
        return
    if os.environ.get("LSDR_TEST_DEMO"):
        return  # a developer's finished demo is reused instead
    base = session.config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    _ahead.append(start_demo_ahead(base / "shared-demo"))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Add a test phase's duration to its module's seconds (in the controller: all workers)."""
    module = module_of(report.nodeid)
    _seconds[module] = _seconds.get(module, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write the modules' seconds (a whole run only); stop a demo still being made."""
    for child in _ahead:
        if child.poll() is None:
            os.killpg(child.pid, 15)
            child.wait()
    if os.environ.get("PYTEST_XDIST_WORKER") or len(_seconds) < 20:
        return
    WRITTEN.parent.mkdir(parents=True, exist_ok=True)
    ordered = dict(sorted(_seconds.items(), key=lambda kv: -kv[1]))
    WRITTEN.write_text(json.dumps({k: round(v, 1) for k, v in ordered.items()}, indent=1) + "\n")
