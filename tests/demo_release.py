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


def lsdr(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the ``lsdr`` command of this venv (the session's Prefect server via the env)."""
    command = [sys.executable, "-m", "lsdr", *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=3000, check=False, env=env
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
    """
    shared.mkdir(parents=True, exist_ok=True)
    record = shared / "demo-run.json"
    made = os.environ.get("LSDR_TEST_DEMO")
    with open(shared / "demo.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.exists():
            run = reuse_demo(Path(made)) if made else make_demo(shared)
            doc = {
                "out": str(run.out),
                "args": list(run.first.args),
                "returncode": run.first.returncode,
                "stdout": run.first.stdout,
                "stderr": run.first.stderr,
                "mtimes": run.mtimes,
            }
            record.write_text(json.dumps(doc))
    doc = json.loads(record.read_text())
    first = subprocess.CompletedProcess(
        doc["args"], doc["returncode"], doc["stdout"], doc["stderr"]
    )
    return DemoRun(Path(doc["out"]), first, {k: int(v) for k, v in doc["mtimes"].items()})


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
