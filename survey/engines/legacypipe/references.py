"""Which of the release's reference catalogues runbrick can read for a brick.

runbrick reads ``tycho2.kd.fits`` within 1° of the brick centre (``read_tycho2``) and fails,
rather than carrying on without Tycho-2 stars, when the file is missing or no star lies that
close (``len(None)`` in ``get_reference_sources``): the real catalogue never has such a hole,
a simulated or cut-down one can.  Both cases mean "no Tycho-2 stars for this brick", which is
``--no-tycho``; the brick's record says why.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TYCHO_SEARCH_RADIUS_DEG = 1.0
"""``read_tycho2``'s search radius about the brick centre, degrees."""


def tycho_stars_near(path: Path, ra: float, dec: float) -> int | None:
    """Rows of the Tycho-2 table (HDU 1 of the kd file) within 1° of (ra, dec); None: no file."""
    import fitsio

    if not path.exists():
        return None
    table = fitsio.read(str(path), ext=1, columns=["ra", "dec"])
    r1, d1, r2, d2 = (np.radians(v) for v in (table["ra"], table["dec"], ra, dec))
    cos_sep = np.sin(d1) * np.sin(d2) + np.cos(d1) * np.cos(d2) * np.cos(r1 - r2)
    return int(np.count_nonzero(cos_sep >= np.cos(np.radians(TYCHO_SEARCH_RADIUS_DEG))))


def tycho_note(path: Path, ra: float, dec: float) -> str | None:
    """Why runbrick gets ``--no-tycho`` for a brick centred at (ra, dec); None: it reads Tycho-2."""
    near = tycho_stars_near(path, ra, dec)
    if near is None:
        return f"no Tycho-2 catalogue {path}: --no-tycho (no Tycho-2 reference stars)"
    if near == 0:
        return (
            f"no Tycho-2 star of {path} within {TYCHO_SEARCH_RADIUS_DEG:g} deg of "
            f"({ra:.4f}, {dec:.4f}): --no-tycho"
        )
    return None
