"""legacypipe's test cases as release directories, runbrick by hand, and runbrick processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from required_in_ci import legacypipe_test_case

from lsdr.infra.legacypipe_build import LegacypipeBuild
from lsdr.survey.core.layout import ReleaseLayout


@dataclass(frozen=True)
class Case:
    """One of legacypipe's test cases: its brick and the zoom upstream's tests run."""

    name: str
    brick: str
    zoom: tuple[int, int, int, int]


CASES = {
    "mzlsbass2": Case("mzlsbass2", "1773p595", (1300, 1500, 700, 900)),
    "testcase3": Case("testcase3", "2447p120", (1020, 1070, 2775, 2815)),
    "testcase6": Case("testcase6", "1102p240", (500, 600, 650, 750)),
}


def release_copy(case: Case, where: Path) -> ReleaseLayout:
    """A writable copy of a test case as a release directory, its brick list the one brick."""
    root = where / case.name
    shutil.copytree(legacypipe_test_case(case.name), root)
    (root / "bricks.txt").write_text(case.brick + "\n")
    return ReleaseLayout(root)


def reference_env(build: LegacypipeBuild, survey: Path) -> dict[str, str]:
    """The build's environment with the reference catalogues as legacypipe's tests set them.

    ``set_ref_env`` in ``py/test/runbrick_test.py``: Tycho-2 and Gaia DR2 chunks of the test
    case; the catalogues a test case lacks unset.
    """
    env = build.env()
    env.update(
        TYCHO2_KD_DIR=str(survey),
        GAIA_CAT_DIR=str(survey / "gaia"),
        GAIA_CAT_VER="2",
        GAIA_CAT_PREFIX="chunk",
        GAIA_CAT_SCHEME="ring",
    )
    for var in (
        "LARGEGALAXIES_CAT",
        "SKY_TEMPLATE_DIR",
        "UNWISE_COADDS_TIMERESOLVED_DIR",
        "UNWISE_MODEL_SKY_DIR",
    ):
        env.pop(var, None)
    return env


def hand_runbrick(build: LegacypipeBuild, survey: Path, argv: list[str]) -> None:
    """runbrick as a person runs it: the build's Python, the survey dir, the catalogues."""
    env = {**reference_env(build, survey), "OMP_NUM_THREADS": "1"}
    script = build.package_dir / "legacypipe" / "runbrick.py"
    subprocess.run(
        [str(build.python), "-O", str(script), *argv],
        env=env,
        cwd=survey,
        check=True,
        capture_output=True,
        timeout=600,
    )


def runbrick_pids(root: Path) -> list[int]:
    """The runbrick processes working in ``root`` (their command line names it)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"runbrick.py") for a in argv) and str(root).encode() in argv:
            pids.append(int(proc.name))
    return pids


class RunbrickKiller:
    """A thread that SIGKILLs the runbrick processes of ``root`` once ``ready()`` holds.

    Used as a context manager around the run; ``killed`` lists the processes it killed.
    """

    def __init__(self, root: Path, ready: Callable[[], bool], within_s: float = 300) -> None:
        """Watch for ``ready`` for up to ``within_s`` seconds once started."""
        self.root, self.ready, self.within_s = root, ready, within_s
        self.killed: list[int] = []
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        deadline = time.monotonic() + self.within_s
        while time.monotonic() < deadline and not self.killed:
            if self.ready():
                for pid in runbrick_pids(self.root):
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append(pid)
            time.sleep(0.02)

    def __enter__(self) -> RunbrickKiller:
        """Start watching."""
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Wait briefly for the watcher to end."""
        self._thread.join(timeout=5)
