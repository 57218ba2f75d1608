"""Two neighbouring bricks run by the lite runbrick over the simulator's border star.

Built once per test session (``border_release`` fixture in conftest.py) and read-only: tests
copy what they write into.  The grid covers each whole brick coarsely (600² at 1.58″).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from runbrick_survey import build

from lsdr.survey.core import bricks as grid
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.runbrick.options import RunbrickOptions
from lsdr.survey.runbrick.stages import run_brick

WEST, EAST = "1801p325", "1804p325"
"""The simulator's border star sits on their shared border (1804p325's ra1)."""
REGION = grid.RaDecBox(180.14, 180.45, 32.49, 32.51)
"""A region holding both bricks' centres: the simulated centre brick's border is theirs."""
OPTIONS = RunbrickOptions(width=600, height=600, pixscale=1.58)
"""The whole brick (0.263°) on a coarse grid: both bricks' grids cover the shared border."""


def build_border_release(root: Path) -> ReleaseLayout:
    """Simulate the two bricks' sky, run the pre-tractor steps and the lite runbrick on both."""
    done = root / ".ready"
    if not done.exists():
        if root.exists():
            shutil.rmtree(root)
        layout = build(root, region=REGION)
        for brick in (WEST, EAST):
            run_brick(layout, brick, OPTIONS)
        done.write_text("ok\n")
    return ReleaseLayout(root)
