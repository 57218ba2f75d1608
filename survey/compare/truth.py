"""Each engine against the simulated truth, with ``validate``'s matching and star metrics.

Only for runs whose maps cover whole bricks (a demo or simulated release): ``validate`` places
the truth on the brick's pixel grid to find its observed, unmasked area, which a ``--zoom``
cut-out does not cover.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lsdr.survey.compare.inputs import EngineBrick
from lsdr.survey.compare.metrics import TruthAgreement
from lsdr.survey.core.errors import InputFileError
from lsdr.survey.core.fitsread import fits_failure
from lsdr.survey.simulate.validate import BrickMatch, combine, compute_metrics, match_brick

TRUTH_COLUMNS = ("ra", "dec", "type", "pmra", "pmdec", "ref_epoch")
"""Truth columns the match needs (with ``flux_<band>``)."""


def read_truth(path: Path) -> npt.NDArray[np.void]:
    """The simulator's truth catalogue (``truth/truth.fits``); errors name the file."""
    import fitsio

    if not path.is_file():
        raise InputFileError(f"{path}: truth catalogue missing")
    try:
        table = np.asarray(fitsio.read(str(path), ext=1))
    except (OSError, ValueError, RuntimeError) as err:
        raise fits_failure(path, err) from err
    missing = [c for c in TRUTH_COLUMNS if c not in (table.dtype.names or ())]
    if missing:
        raise InputFileError(f"{path}: not a truth catalogue (no {', '.join(missing)} column)")
    return table


def match_truth(
    run: EngineBrick, truth: npt.NDArray[np.void], bands: Sequence[str]
) -> BrickMatch | None:
    """The truth objects of the run's brick matched to its catalogue; None for a zoomed run."""
    if run.grid is None:
        return None
    width, height, pixscale = run.grid
    return match_brick(
        run.layout, run.brick, truth, bands=bands, width=width, height=height, pixscale=pixscale
    )


def truth_agreement(matches: Sequence[BrickMatch]) -> TruthAgreement | None:
    """Star flux / true flux (S/N > 20) and the normalised residual σ of one or more bricks."""
    if not matches:
        return None
    m = compute_metrics(combine(matches))
    return TruthAgreement(
        n_truth=m.n_truth,
        n_flux_stars=dict(m.n_flux_stars),
        flux_over_truth={b: 1.0 + v for b, v in m.flux_bias.items()},
        residual_sigma=dict(m.residual_sigma),
    )
