"""``RunbrickOptions.release_flavour``: the lite runbrick writing the dr11 catalogue schema.

dr11 is legacypipe HEAD's ``--no-wise`` catalogue: dr10's columns plus ``ls_id_dr11`` first
and ``nearest_neighbor``, and maskbits whose SATUR_/ALLMASK_ bits follow the run's bands
(``format_catalog.py``: ``ls_id_dr11 = release<<42 | brickid<<22 | objid``, the distance to
the nearest other source within 1′, else 0).  The run is legacypipe's mzlsbass2 case (grz,
upstream's zoom); expectations are computed here, the separations with astropy's SkyCoord.
"""

from __future__ import annotations

import shutil

import astropy.units as u
import fitsio
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from required_in_ci import legacypipe_test_case

from lsdr.survey.core.bricks import brick_by_name
from lsdr.survey.core.errors import UsageError
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.runbrick import tractorschema as ts
from lsdr.survey.runbrick.options import RunbrickOptions
from lsdr.survey.runbrick.stages import run_brick
from lsdr.survey.runbrick.writecat import read_catalog

BANDS = ("g", "r", "z")
BRICK = "1773p595"
ZOOM = (1300, 1500, 700, 900)
RELEASE = 10099


def _mb_cards(hdr: fitsio.FITSHDR) -> dict[str, int]:
    """The ``MB_<name> = value`` cards of a header."""
    return {r["name"][3:]: r["value"] for r in hdr.records() if r["name"].startswith("MB_")}


def test_flavour_defaults_to_dr10_and_is_checked() -> None:
    """dr10 (with its WISE columns) unless asked; an unknown flavour is a UsageError naming it."""
    assert RunbrickOptions().release_flavour == "dr10" and RunbrickOptions().wise_columns
    assert not RunbrickOptions(release_flavour="dr11").wise_columns
    with pytest.raises(UsageError, match="'dr12'"):
        RunbrickOptions(release_flavour="dr12")


@pytest.fixture(scope="module")
def dr11(tmp_path_factory: pytest.TempPathFactory) -> ReleaseLayout:
    """mzlsbass2 run with release_flavour dr11 (a writable copy of the case)."""
    root = tmp_path_factory.mktemp("dr11") / "mzlsbass2"
    shutil.copytree(legacypipe_test_case("mzlsbass2"), root)
    layout = ReleaseLayout(root)
    options = RunbrickOptions(
        bands=BANDS, zoom=ZOOM, force_all=True, release=RELEASE, release_flavour="dr11"
    )
    assert run_brick(layout, BRICK, options).status == "done"
    return layout


def test_dr11_columns_dtypes_and_units(dr11: ReleaseLayout) -> None:
    """The catalogue's columns, in order, with the dr11 schema's dtypes and units (127, no WISE)."""
    path = dr11.tractor(BRICK)
    cat, hdr = fitsio.read(str(path), ext=1, header=True)
    columns = ts.tractor_columns(BANDS, release_flavour="dr11", wise=False)
    assert len(columns) == 127
    assert list(cat.dtype.names) == [c.name for c in columns]
    assert cat.dtype.names[0] == "ls_id_dr11" and "nearest_neighbor" in cat.dtype.names
    for c in columns:
        want, have = np.dtype(c.dtype), cat.dtype[c.name]
        if want.kind == "S":  # fitsio hands FITS strings back as unicode
            assert have.base.kind in "SU", c.name
            chars = have.base.itemsize // (4 if have.base.kind == "U" else 1)
            assert chars == want.itemsize, c.name
        else:
            assert (have.base.kind, have.base.itemsize) == (want.kind, want.itemsize), c.name
        assert have.shape == c.shape, c.name
    units = [hdr.get(f"TUNIT{i}", "").strip() for i in range(1, hdr["TFIELDS"] + 1)]
    assert units == [c.unit for c in columns]
    assert fitsio.read_header(str(path), 0)["LSDRSCHM"] == "dr11"
    assert read_catalog(path).dtype == ts.tractor_dtype(BANDS, release_flavour="dr11", wise=False)


def test_ls_id_dr11_decodes_to_release_brickid_objid(dr11: ReleaseLayout) -> None:
    """ls_id_dr11 >> 42 is the release, bits 22-41 the brickid, bits 0-21 the objid."""
    cat = fitsio.read(str(dr11.tractor(BRICK)))
    ls_id = cat["ls_id_dr11"].astype(np.int64)
    assert cat["ls_id_dr11"].dtype.kind == "i" and cat["ls_id_dr11"].dtype.itemsize == 8
    assert ((ls_id >> 42) == RELEASE).all()
    assert (((ls_id >> 22) & (2**20 - 1)) == brick_by_name(BRICK).brickid).all()
    assert ((ls_id & (2**22 - 1)) == cat["objid"]).all()
    assert (cat["release"] == RELEASE).all() and len(set(ls_id.tolist())) == len(cat)


def test_nearest_neighbor_is_the_brute_force_separation(dr11: ReleaseLayout) -> None:
    """nearest_neighbor: arcsec to the nearest other source, 0 when none is within 1′."""
    cat = fitsio.read(str(dr11.tractor(BRICK)))
    assert len(cat) >= 2
    coords = SkyCoord(cat["ra"] * u.deg, cat["dec"] * u.deg)
    want = np.zeros(len(cat))
    for i in range(len(cat)):
        sep = coords[i].separation(coords).arcsec
        sep[i] = np.inf
        want[i] = sep.min() if sep.min() <= 60.0 else 0.0
    assert cat["nearest_neighbor"].dtype.kind == "f"
    np.testing.assert_allclose(cat["nearest_neighbor"], want, rtol=1e-5, atol=1e-4)
    assert (want > 0).any()


def test_dr11_maskbit_cards_and_values(dr11: ReleaseLayout) -> None:
    """MB_* cards of the catalogue and of the maskbits image are ts.maskbits(bands, "dr11")."""
    bits = ts.maskbits(BANDS, "dr11")
    assert bits != ts.maskbits(BANDS, "dr10")  # dr11 moves SATUR_/ALLMASK_ bits
    hdr = fitsio.read_header(str(dr11.tractor(BRICK)), 0)
    assert _mb_cards(hdr) == bits
    mask, mhdr = fitsio.read(str(dr11.coadd_maskbits(BRICK)), ext=1, header=True)
    assert _mb_cards(mhdr) == bits
    allowed = np.bitwise_or.reduce(list(bits.values()))
    assert not (mask & ~allowed).any()
    cat = fitsio.read(str(dr11.tractor(BRICK)))
    ix = np.clip(np.round(cat["bx"]).astype(int), 0, mask.shape[1] - 1)
    iy = np.clip(np.round(cat["by"]).astype(int), 0, mask.shape[0] - 1)
    assert (cat["maskbits"] == mask[iy, ix]).all()
