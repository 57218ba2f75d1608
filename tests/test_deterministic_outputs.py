"""A brick run again writes the same bytes: what early cutoff (docs/orchestration.md) rests on.

A rerun unit whose outputs come out byte-identical leaves the units that read them done, so
the catalogues, coadds and metrics of a brick must not depend on the clock, the process, the
number of threads or the order in which blobs finish.  (The zeropoint tables' half of this is
``test_zeropoints.test_run_calibs_semantics``: fitted or read back, the calibs give the same
tables.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from runbrick_survey import BRICK, prepared_survey, private_copy

from lsdr.survey.posttractor.checksums import repackage_checksums
from lsdr.survey.runbrick.options import RunbrickOptions
from lsdr.survey.runbrick.stages import run_brick

PRODUCTS = ("tractor", "tractor-i", "coadd", "metrics")
"""runbrick's product directories (logs record their run, so they are not among them)."""


def products(root: Path) -> dict[str, bytes]:
    """Every file of the brick's products, relative to the release, with its bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for top in PRODUCTS
        for p in sorted((root / top).rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_a_brick_run_twice_writes_the_same_bytes(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """One brick, one thread, then two threads again after packaging: the same bytes.

    The second run starts from a packaged brick (the package phase's checksum listing sits in
    the coadd directory, as on a release being rerun) with the products deleted.
    """
    layout = private_copy(
        prepared_survey(tmp_path_factory), tmp_path_factory.mktemp("determinism") / "rel"
    )
    first = run_brick(layout, BRICK, RunbrickOptions(width=300, height=300, pixscale=3.5))
    assert first.status == "done"
    made = products(layout.root)
    assert any(name.endswith(f"tractor-{BRICK}.fits") for name in made), sorted(made)
    assert any(name.endswith("-image-g.fits.fz") for name in made), sorted(made)
    [listing] = [p for p in repackage_checksums(layout, [BRICK]) if "coadd" in p.parts]
    for path in [p for top in PRODUCTS for p in (layout.root / top).rglob("*") if p.is_file()]:
        if path != listing:
            path.unlink()
    for top in ("checkpoints", "pickles"):
        shutil.rmtree(layout.root / top, ignore_errors=True)

    again = run_brick(
        layout, BRICK, RunbrickOptions(width=300, height=300, pixscale=3.5, threads=2)
    )
    assert again.status == "done"
    listing.unlink()  # the package phase's, not the brick's
    remade = products(layout.root)
    assert sorted(remade) == sorted(made)
    differ = [name for name in made if remade[name] != made[name]]
    assert differ == []
