"""legacypipe's own reference-catalogue code as the judge of lsdr's masks (legacypipe's Python).

``legacypipe_refs_probe.py refmap SURVEY_DIR OUT.npz RA DEC CRPIX1 CRPIX2 W H PIXSCALE``: a TAN
grid like runbrick's (CD diag(−p, p)); ``get_reference_sources`` (Tycho-2 from the survey dir,
Gaia from ``$GAIA_CAT_DIR``, star clusters from legacypipe's package data, no large galaxies)
then ``get_reference_map``; saves the refmap and the refs' ref_cat/ref_id/flags.
``legacypipe_refs_probe.py tycho SURVEY_DIR RA DEC W H PIXSCALE``: ``read_tycho2`` of the survey
dir's ``tycho2.kd.fits`` for such a grid; prints JSON rows (ref_id, ra, dec, mag, mask_mag).
Only numpy, astrometry and legacypipe are imported.
"""

import json
import sys

import numpy as np
from astrometry.util.util import Tan


class _Survey:
    """The one method of LegacySurveyData that the reference readers call."""

    def __init__(self, survey_dir: str) -> None:
        self.survey_dir = survey_dir

    def find_file(self, filetype: str, **kwargs: object) -> str:
        assert filetype == "tycho2", filetype
        return f"{self.survey_dir}/tycho2.kd.fits"


def _wcs(ra: float, dec: float, crpix1: float, crpix2: float, w: int, h: int, p: float) -> Tan:
    return Tan(ra, dec, crpix1, crpix2, -p / 3600.0, 0.0, 0.0, p / 3600.0, float(w), float(h))


def refmap(argv: list[str]) -> None:
    """Save legacypipe's refmap and reference table for the grid."""
    from legacypipe.reference import get_reference_map, get_reference_sources

    survey_dir, out = argv[0], argv[1]
    ra, dec, c1, c2 = (float(a) for a in argv[2:6])
    w, h, p = int(argv[6]), int(argv[7]), float(argv[8])
    wcs = _wcs(ra, dec, c1, c2, w, h, p)
    refs, _ = get_reference_sources(_Survey(survey_dir), wcs, None, large_galaxies=False)
    if refs is None:
        np.savez(out, refmap=np.zeros((h, w), np.uint8), ref_cat=np.zeros(0, "U2"))
        return
    cols = refs.get_columns()
    np.savez(
        out,
        refmap=get_reference_map(wcs, refs),
        ref_cat=np.array([str(c) for c in refs.ref_cat]),
        ref_id=np.asarray(refs.ref_id, np.int64),
        isbright=np.asarray(refs.isbright, bool),
        ismedium=np.asarray(refs.ismedium, bool),
        iscluster=np.asarray(refs.iscluster, bool),
        radius_pix=np.asarray(refs.radius_pix, np.int64),
        mask_mag=np.asarray(refs.mask_mag if "mask_mag" in cols else np.zeros(len(refs))),
    )


def tycho(argv: list[str]) -> None:
    """Print what read_tycho2 returns for the grid."""
    from legacypipe.reference import read_tycho2

    survey_dir = argv[0]
    ra, dec = float(argv[1]), float(argv[2])
    w, h, p = int(argv[3]), int(argv[4]), float(argv[5])
    wcs = _wcs(ra, dec, w / 2.0 + 0.5, h / 2.0 + 0.5, w, h, p)
    t = read_tycho2(_Survey(survey_dir), wcs, None)
    rows = []
    if t is not None:
        for i in range(len(t)):
            rows.append(
                {
                    "ref_id": int(t.ref_id[i]),
                    "ra": float(t.ra[i]),
                    "dec": float(t.dec[i]),
                    "mag": float(t.mag[i]),
                    "mask_mag": float(t.mask_mag[i]),
                }
            )
    print(json.dumps(rows))


if __name__ == "__main__":
    {"refmap": refmap, "tycho": tycho}[sys.argv[1]](sys.argv[2:])
