"""``lsdr demo`` through the real CLI: simulate, pre-tractor, tractor; a rerun does nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lsdr.survey.layout import ReleaseLayout
from lsdr.survey.runbrick.writecat import read_catalog


def lsdr(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``lsdr`` command of this venv (the session's Prefect server via the env)."""
    command = [sys.executable, "-m", "lsdr", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=3000, check=False)


def product_mtimes(root: Path) -> dict[str, int]:
    """Every product under tractor/, tractor-i/ and coadd/ with its mtime."""
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for top in ("tractor", "tractor-i", "coadd")
        for p in (root / top).rglob("*")
        if p.is_file()
    }


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_demo_runs_every_brick_and_a_rerun_recomputes_nothing(
    prefect_api: str, tmp_path: Path
) -> None:
    """15 bricks with catalogues and colour images, each printed; the second run does nothing."""
    out = tmp_path / "demo"
    first = lsdr("demo", "--out", str(out))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    layout = ReleaseLayout(out)
    bricks = layout.brick_list.read_text().split()
    assert len(bricks) == 15
    assert "tractor: 15 done, 0 already done, 0 failed" in first.stdout
    for brick in bricks:
        catalogue = read_catalog(layout.tractor(brick))
        assert len(catalogue) > 50, f"{brick}: only {len(catalogue)} sources"
        assert layout.coadd_jpeg(brick, "image").stat().st_size > 0
        assert f"{brick}  {layout.tractor(brick)}" in first.stdout
    before = product_mtimes(out)

    again = lsdr("demo", "--out", str(out))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "tractor: 0 done, 15 already done, 0 failed" in again.stdout
    assert product_mtimes(out) == before

    status = lsdr("status", "--release-dir", str(out))
    assert status.returncode == 0
    for brick in bricks:
        assert brick in status.stdout
