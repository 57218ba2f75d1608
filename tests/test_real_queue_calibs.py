"""`lsdr bricks touching` equals the real legacypipe's `queue_calibs.py --touching`."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import fitsio
import numpy as np
import pytest

from lsdr.infra.legacypipe_build import LegacypipeBuild
from lsdr.survey.core import bricks as grid
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.pretractor.footprints import survey_footprints
from lsdr.survey.simulate.config import PassSpec, SimulationConfig
from lsdr.survey.simulate.simulator import simulate_survey

pytestmark = [pytest.mark.slow, pytest.mark.legacypipe]


def write_ccd_table(layout: ReleaseLayout, path: Path) -> None:
    """A CCD table with the columns queue_calibs reads, from the survey's image headers."""
    fp = survey_footprints(layout)
    rows = []
    for name, ccd in zip(fp.image_filename, fp.ccdname, strict=True):
        header = fitsio.read_header(str(layout.images_dir / name), ext=ccd)
        primary = fitsio.read_header(str(layout.images_dir / name), ext=0)
        band = primary["FILTER"].split()[0]
        rows.append(
            (
                name, ccd, {"zd": "z", "bokr": "r"}.get(band, band),
                *(float(header[k]) for k in ("CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2",
                                              "CD1_1", "CD1_2", "CD2_1", "CD2_2")),
                int(header["ZNAXIS1"]), int(header["ZNAXIS2"]),
            )
        )  # fmt: skip
    table = np.array(
        rows,
        dtype=[("image_filename", "S120"), ("ccdname", "S5"), ("filter", "S1")]
        + [(k, "f8") for k in ("crval1", "crval2", "crpix1", "crpix2")]
        + [(k, "f4") for k in ("cd1_1", "cd1_2", "cd2_1", "cd2_2")]
        + [("width", "i2"), ("height", "i2")],
    )
    from numpy.lib import recfunctions as rfn

    table = rfn.append_fields(
        table, ["ra", "dec", "ccd_cuts"], [fp.ra, fp.dec, np.zeros(len(table), np.int32)],
        usemask=False,
    )  # fmt: skip
    fitsio.write(str(path), table, clobber=True)


@pytest.mark.parametrize(
    "passes",
    [(PassSpec("mosaic", "z", 1),), (PassSpec("90prime", "g", 1), PassSpec("mosaic", "z", 1))],
    ids=["mosaic-one-pointing", "90prime-and-mosaic"],
)
def test_touching_equals_real_queue_calibs(
    legacypipe: LegacypipeBuild, tmp_path: Path, passes: tuple[PassSpec, ...]
):
    """Same bricks as queue_calibs --touching on a generated survey's CCDs, for RA 180-181."""
    config = SimulationConfig(
        region=grid.RaDecBox(180.40, 180.50, 32.45, 32.55),
        passes=passes,
        binning=8,
        galaxy_density=100.0,
        reprocessed=0,
        workers=1,
    )
    root = tmp_path / "survey"
    simulate_survey(root, config)
    layout = ReleaseLayout(root)
    write_ccd_table(layout, tmp_path / "ccds.fits")
    grid.write_survey_bricks(tmp_path / "survey-bricks.fits.gz")
    result = subprocess.run(
        [
            str(legacypipe.python), str(legacypipe.package_dir / "legacypipe" / "queue_calibs.py"),
            "--ccds", str(tmp_path / "ccds.fits"),
            "--bricks", str(tmp_path / "survey-bricks.fits.gz"),
            "--minra", "180", "--maxra", "181", "--mindec", "32", "--maxdec", "33",
            "--touching",
        ],
        cwd=tmp_path, env=legacypipe.env() | {"LEGACY_SURVEY_DIR": str(root)},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    real = sorted(
        line.strip()
        for line in result.stdout.splitlines()
        if re.fullmatch(r"\d{4}[pm]\d{3}", line.strip())
    )
    fp = survey_footprints(layout)
    mine = grid.bricks_touching_ccds(
        grid.bricks_in_region(grid.RaDecBox(180.0, 181.0, 32.0, 33.0)),
        fp.ra, fp.dec, fp.corner_ra, fp.corner_dec,
    )  # fmt: skip
    assert real, result.stdout[-2000:]
    assert sorted(b.brickname for b in mine) == real
    if len(passes) == 1:  # one Mosaic pointing leaves some of the 15 bricks untouched
        assert 0 < len(real) < 15
