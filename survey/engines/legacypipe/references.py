"""Which of the release's reference catalogues runbrick can read for a brick.

runbrick reads ``tycho2.kd.fits`` within 1° of the brick centre (``read_tycho2``) and fails,
rather than carrying on without Tycho-2 stars, when the file is missing or no star lies that
close (``len(None)`` in ``get_reference_sources``): the real catalogue never has such a hole,
a simulated or cut-down one can.  Both cases mean "no Tycho-2 stars for this brick", which is
``--no-tycho``; the brick's record says why.
"""

from __future__ import annotations

from pathlib import Path

from lsdr.survey.core.tycho2 import TYCHO_RADIUS_DEG, read_tycho2


def tycho_stars_near(path: Path, ra: float, dec: float) -> int | None:
    """Rows of the Tycho-2 table within runbrick's search radius of (ra, dec); None: no file."""
    if not path.exists():
        return None
    return len(read_tycho2(path, ra, dec, TYCHO_RADIUS_DEG))


def tycho_note(path: Path, ra: float, dec: float) -> str | None:
    """Why runbrick gets ``--no-tycho`` for a brick centred at (ra, dec); None: it reads Tycho-2."""
    near = tycho_stars_near(path, ra, dec)
    if near is None:
        return f"no Tycho-2 catalogue {path}: --no-tycho (no Tycho-2 reference stars)"
    if near == 0:
        return (
            f"no Tycho-2 star of {path} within {TYCHO_RADIUS_DEG:g} deg of "
            f"({ra:.4f}, {dec:.4f}): --no-tycho"
        )
    return None
