"""The demo release, made once per test session and shared by the modules that read it.

``lsdr demo`` through the real CLI, without astrometry.net's Python module (a fresh machine's
case).  Under pytest-xdist the first worker to ask makes it, under a file lock, in the
session's shared temporary directory; the others wait and read its record.  Tests that change
a release work on a copy (:func:`copy_release`), never on the shared one.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PRODUCT_DIRS = ("tractor", "tractor-i", "coadd", "metrics", "sweep", "external", "plots", "logs")


def lsdr(
    *args: str, env: dict[str, str] | None = None, timeout: float = 3000
) -> subprocess.CompletedProcess[str]:
    """Run the ``lsdr`` command of this venv (the session's Prefect server via the env)."""
    command = [sys.executable, "-m", "lsdr", *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, check=False, env=env
    )


def product_mtimes(root: Path) -> dict[str, int]:
    """Every product of the release (per-brick, post-processing, top level) with its mtime."""
    files = [p for top in PRODUCT_DIRS for p in (root / top).rglob("*") if p.is_file()]
    files += [p for p in root.glob("*") if p.is_file()]
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in files}


@dataclass(frozen=True)
class DemoRun:
    """The demo release made once, and what its first run printed."""

    out: Path
    first: subprocess.CompletedProcess[str]
    mtimes: dict[str, int]
    """Every product's mtime right after the first run."""


def without_astrometry(root: Path) -> dict[str, str]:
    """An environment in which ``import astrometry`` fails, as on a machine without libkd.

    A package named ``astrometry`` first on ``PYTHONPATH`` raises ImportError (the workers
    inherit it); ``LSDR_KDTREE_PYTHON``, the old route's Python, is unset.
    """
    blocker = root / "no-astrometry" / "astrometry"
    blocker.mkdir(parents=True, exist_ok=True)
    (blocker / "__init__.py").write_text(
        'raise ImportError("astrometry blocked: the demo must not need libkd")\n'
    )
    env = {k: v for k, v in os.environ.items() if k != "LSDR_KDTREE_PYTHON"}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(blocker.parent), os.environ.get("PYTHONPATH")) if p
    )
    return env


def make_demo(root: Path) -> DemoRun:
    """Run ``lsdr demo`` into ``root/demo`` without astrometry; its record."""
    env = without_astrometry(root)
    probe = [sys.executable, "-c", "import astrometry"]
    blocked = subprocess.run(probe, env=env, capture_output=True, text=True, check=False)
    assert blocked.returncode != 0 and "astrometry blocked" in blocked.stderr
    out = root / "demo"
    first = lsdr("demo", "--out", str(out), env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return DemoRun(out, first, product_mtimes(out))


def reuse_demo(out: Path) -> DemoRun:
    """A developer's finished ``lsdr demo --out DIR`` as the session's demo (never in CI).

    Its first run's console is not known: the tests that read it see an empty one.
    """
    out = out.resolve()
    first = subprocess.CompletedProcess(["lsdr", "demo", "--out", str(out)], 0, "", "")
    return DemoRun(out, first, product_mtimes(out))


def shared_demo(shared: Path) -> DemoRun:
    """The session's demo release in ``shared`` (made by the first caller, under a lock).

    ``LSDR_TEST_DEMO=DIR`` reuses a finished demo release instead (a developer's shortcut).
    The demo may be being made ahead (:func:`start_demo_ahead`): its lock is then waited for.
    """
    shared.mkdir(parents=True, exist_ok=True)
    record = shared / RECORD
    made = os.environ.get("LSDR_TEST_DEMO")
    with open(shared / LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.exists():
            write_record(record, reuse_demo(Path(made)) if made else make_demo(shared))
    doc = json.loads(record.read_text())
    first = subprocess.CompletedProcess(
        doc["args"], doc["returncode"], doc["stdout"], doc["stderr"]
    )
    return DemoRun(Path(doc["out"]), first, {k: int(v) for k, v in doc["mtimes"].items()})


RECORD = "demo-run.json"
"""The finished demo's record, in the shared directory: its path, first console, mtimes."""
LOCK = "demo.lock"
"""Held while the demo is being made."""


def write_record(record: Path, run: DemoRun) -> None:
    """Record a finished demo for every worker of the session."""
    doc = {
        "out": str(run.out),
        "args": list(run.first.args),
        "returncode": run.first.returncode,
        "stdout": run.first.stdout,
        "stderr": run.first.stderr,
        "mtimes": run.mtimes,
    }
    record.write_text(json.dumps(doc))


def start_demo_ahead(shared: Path) -> subprocess.Popen[bytes]:
    """Start making the demo in a process of its own that holds the demo's lock until done.

    The lock is taken here, before the workers start, and passed to the child (the same open
    file), so a worker that asks for the demo waits for it instead of making a second one. If
    the child fails it writes no record, and the first worker to ask makes the demo itself
    (and its test shows why it fails). Its console goes to ``demo-ahead.log``.
    """
    shared.mkdir(parents=True, exist_ok=True)
    lock = open(shared / LOCK, "w")  # noqa: SIM115 - handed to the child, closed here after
    fcntl.flock(lock, fcntl.LOCK_EX)
    with open(shared / "demo-ahead.log", "wb") as log:
        child = subprocess.Popen(
            [sys.executable, __file__, str(shared), str(lock.fileno())],
            pass_fds=(lock.fileno(),),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    lock.close()
    return child


def _make_ahead(shared: Path) -> None:
    """The child of :func:`start_demo_ahead`: the demo, reporting to a Prefect server of its own."""
    from lsdr.infra.prefect_server import client_environment, running_server

    record = shared / RECORD
    if record.exists():
        return
    with running_server(shared / "prefect-state") as info:
        os.environ.update(client_environment(info))
        write_record(record, make_demo(shared))


SERVER_STATE = ("prefect", "prefect.db", "prefect-server.log", "server.json", "server.lock", "logs")
"""What of ``state/`` belongs to the release's Prefect server and runs, not to its units."""


def copy_release(src: Path, dst: Path) -> Path:
    """A copy of a release to change: every file copied (new inodes and stamps, same bytes).

    Without its Prefect server's state; the ledger and the provenance sidecars come along.
    """

    def ignore(directory: str, names: list[str]) -> list[str]:
        if Path(directory) == src / "state":
            return [n for n in names if n.split("-")[0] in SERVER_STATE or n in SERVER_STATE]
        return []

    shutil.copytree(src, dst, symlinks=True, ignore=ignore)
    return dst


if __name__ == "__main__":
    _make_ahead(Path(sys.argv[1]))  # sys.argv[2]: the held lock's descriptor, kept open to exit
