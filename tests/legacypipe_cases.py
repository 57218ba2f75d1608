"""legacypipe's test cases as release directories, runbrick by hand, and runbrick processes."""

from __future__ import annotations

import shutil
import subprocess
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


def hand_runbrick(build: LegacypipeBuild, survey: Path, argv: list[str]) -> None:
    """runbrick as a person runs it: the build's Python, the survey dir, the reference catalogues.

    The catalogues' variables are those legacypipe's own tests set (``set_ref_env``).
    """
    env = build.env()
    env.update(
        TYCHO2_KD_DIR=str(survey),
        GAIA_CAT_DIR=str(survey / "gaia"),
        GAIA_CAT_VER="2",
        GAIA_CAT_PREFIX="chunk",
        GAIA_CAT_SCHEME="ring",
        OMP_NUM_THREADS="1",
    )
    for var in ("LARGEGALAXIES_CAT", "SKY_TEMPLATE_DIR", "UNWISE_COADDS_TIMERESOLVED_DIR"):
        env.pop(var, None)
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
