"""``lsdr runbrick``: one brick or custom region through either engine, run as a user runs it.

Both engines, on the same real test case and region, write catalogues with the same schema:
the 127 columns of legacypipe DR11's ``--no-wise`` catalogue for g, r, z, with the same names,
order, types and units, the real runbrick's being the reference.  A custom ``--radec`` region
goes to ``tractor/cus/tractor-custom-<name>.fits`` with both.  Bad requests stop before
anything runs, with one line naming the flag.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import fitsio
import numpy as np
import pytest
from required_in_ci import legacypipe_test_case

from lsdr.infra.legacypipe_build import LegacypipeBuild

LSDR = [sys.executable, "-m", "lsdr"]
BRICK = "1773p595"
ZOOM = ["1300", "1500", "700", "900"]
TARGET = ["177.3597", "59.4272"]
"""The centre of upstream's zoom of mzlsbass2, as a custom region."""


def lsdr_runbrick(survey: Path, outdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``lsdr runbrick --survey-dir … --outdir …`` with the rest of the flags."""
    return subprocess.run(
        [*LSDR, "runbrick", "--survey-dir", str(survey), "--outdir", str(outdir), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def schema(path: Path) -> list[tuple[str, str, tuple[int, ...], str]]:
    """Each column's name, FITS type, shape and unit, in order."""
    with fitsio.FITS(str(path)) as f:
        hdu = f["CATALOG"]
        header = hdu.read_header()
        dtype = hdu.read(rows=[0]).dtype if hdu.get_nrows() else None
    assert dtype is not None, f"{path} has no rows"
    out = []
    for i, name in enumerate(dtype.names or (), start=1):
        assert header[f"TTYPE{i}"].strip().lower() == name.lower()
        unit = str(header.get(f"TUNIT{i}", "")).strip()
        out.append((name, str(header[f"TFORM{i}"]).strip(), dtype[name].shape, unit))
    return out


@pytest.fixture(scope="module")
def north(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the north test case (read by every run here, never written)."""
    root = tmp_path_factory.mktemp("runbrick-cli") / "mzlsbass2"
    shutil.copytree(legacypipe_test_case("mzlsbass2"), root)
    return root


@pytest.mark.legacypipe
@pytest.mark.slow
def test_both_engines_write_the_same_127_column_schema(
    north: Path, tmp_path: Path, legacypipe: LegacypipeBuild
) -> None:
    """lite and the real runbrick, same brick and zoom: identical column names, types, units."""
    catalogues = {}
    for engine in ("legacypipe", "lite"):
        out = tmp_path / engine
        done = lsdr_runbrick(north, out, "--brick", BRICK, "--zoom", *ZOOM, "--engine", engine)
        assert done.returncode == 0, done.stderr
        catalogues[engine] = out / "tractor" / "177" / f"tractor-{BRICK}.fits"
        assert str(catalogues[engine]) in done.stderr
    real = schema(catalogues["legacypipe"])
    assert len(real) == 127
    assert schema(catalogues["lite"]) == real
    # Both measured the same sky: every Gaia source of the real catalogue is in lite's.
    mine = fitsio.read(str(catalogues["lite"]), ext="CATALOG")
    theirs = fitsio.read(str(catalogues["legacypipe"]), ext="CATALOG")
    gaia = theirs[np.char.strip(theirs["ref_cat"].astype(str)) == "G2"]
    assert len(gaia) == 3
    for star in gaia:
        cosdec = np.cos(np.radians(star["dec"]))
        sep = np.hypot((mine["ra"] - star["ra"]) * cosdec, mine["dec"] - star["dec"]) * 3600
        assert sep.min() < 0.5, f"Gaia source {star['ref_id']} not in lite's catalogue"


@pytest.mark.legacypipe
@pytest.mark.slow
def test_custom_region_goes_to_tractor_cus_with_both_engines(
    north: Path, tmp_path: Path, legacypipe: LegacypipeBuild
) -> None:
    """``--radec RA DEC -W 200 -H 200``: ``tractor/cus/tractor-custom-177359p59427.fits``."""
    name = "custom-177359p59427"
    for engine in ("legacypipe", "lite"):
        out = tmp_path / engine
        done = lsdr_runbrick(
            north, out, "--radec", *TARGET, "-W", "200", "-H", "200", "--engine", engine
        )
        assert done.returncode == 0, done.stderr
        path = out / "tractor" / "cus" / f"tractor-{name}.fits"
        cat = fitsio.read(str(path), ext="CATALOG")
        assert set(np.char.strip(cat["brickname"].astype(str))) == {name}, engine
        assert np.all(cat["brickid"] == -1), engine
        # The region is 200 px of 0.262" around the target, all of it the custom brick's own:
        # its primary sources are inside it (reference stars may sit outside, not primary).
        primary = cat[cat["brick_primary"]]
        assert len(primary) >= 3, engine
        half = 200 * 0.262 / 3600 / 2
        cosdec = np.cos(np.radians(float(TARGET[1])))
        assert np.all(np.abs(primary["ra"] - float(TARGET[0])) * cosdec < half), engine
        assert np.all(np.abs(primary["dec"] - float(TARGET[1])) < half), engine


@pytest.mark.legacypipe
@pytest.mark.slow
def test_region_without_ccds_is_nothing_to_do_not_a_failure(
    north: Path, tmp_path: Path, legacypipe: LegacypipeBuild
) -> None:
    """The brick's corner, far from the cut-outs: both engines say there is nothing to do."""
    for engine in ("legacypipe", "lite"):
        out = tmp_path / engine
        done = lsdr_runbrick(
            north, out, "--brick", BRICK, "--zoom", "0", "100", "0", "100", "--engine", engine
        )
        assert done.returncode == 0, done.stderr
        assert "nothing to do" in done.stderr, engine
        assert not (out / "tractor" / "177" / f"tractor-{BRICK}.fits").exists()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--brick", BRICK, "--radec", *TARGET], "exactly one of --brick and --radec"),
        ([], "exactly one of --brick and --radec"),
        (["--brick", "../etc"], "'../etc'"),
        (["--radec", "361", "10"], "RA 361"),
        (["--brick", BRICK, "--engine", "nope"], "unknown engine 'nope'"),
        (["--brick", BRICK, "--launcher", "ssh"], "unknown container launcher 'ssh'"),
        (["--brick", BRICK, "--zoom", "0", "4000", "0", "10"], "zoom"),
    ],
)
def test_bad_requests_stop_before_anything_runs(
    args: list[str], says: str, north: Path, tmp_path: Path
) -> None:
    """One line naming the problem, exit status 2, nothing written."""
    out = tmp_path / "out"
    done = lsdr_runbrick(north, out, *args)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert says in done.stderr
    assert "Traceback" not in done.stderr
    assert not (out / "tractor").exists()
