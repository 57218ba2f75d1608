"""``lsdr run``'s options, checked in the CLI process before anything starts.

Each check hands an option's value to the domain's own validator (the brick grid, regions,
cameras and runbrick's flags in ``survey/``, the settings model in ``infra/settings.py``) and
turns its error into one line naming the option and the value.  The commands call them before
the Prefect server, the Dask cluster or any file of the release is touched, so a bad option
exits with status 2 and writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

from lsdr.survey.bricks import RaDecBox
from lsdr.survey.errors import RegionError, UsageError

NAMED_REGIONS: dict[str, tuple[float, float, float, float]] = {
    "cookbook": (180.0, 181.0, 32.0, 33.0),
    "all": (0.0, 360.0, -90.0, 90.0),
}
"""Regions known by name; ``cookbook`` is the worked example (RA 180-181, Dec 32-33)."""

SETTING_OPTIONS: dict[str, str] = {
    "n_workers": "--workers",
    "unit_threads": "--threads",
    "batch_size": "--batch-size",
}
"""The option of ``lsdr run`` that overrides each setting, for naming it in an error."""


def option_error(option: str, value: object, err: Exception) -> UsageError:
    """``err`` as an error of ``option``: ``--width 0: brick size 0x3600 must be positive``.

    A text value that the reason already quotes is not repeated (``--brick: '9999p999' is
    not a brick of the Legacy Surveys grid``).
    """
    reason = str(err)
    if isinstance(value, str) and repr(value) in reason:
        return UsageError(f"{option}: {reason}")
    shown: object = value
    if isinstance(value, str):
        shown = repr(value)
    elif isinstance(value, float):
        shown = f"{value:g}"  # "--pixscale 0", not "--pixscale 0.0"
    return UsageError(f"{option} {shown}: {reason}")


def _check(option: str, value: object, check: Callable[[], object]) -> None:
    """Run a domain check of ``value``; its :class:`UsageError` becomes the option's error."""
    try:
        check()
    except UsageError as err:
        raise option_error(option, value, err) from None


def parse_region(text: str | None) -> RaDecBox | None:
    """``--region``: ``ra_min,ra_max,dec_min,dec_max`` or a name; None for no region.

    :class:`RaDecBox` refuses a box off the sky or empty; ``ra_min > ra_max`` is a box across
    RA 0/360, as in legacypipe's queue_calibs.
    """
    if text is None:
        return None
    if text in NAMED_REGIONS:
        return RaDecBox(*NAMED_REGIONS[text])
    try:
        values = [float(p) for p in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4:
        raise RegionError(
            f"--region {text!r}: expected 'ra_min,ra_max,dec_min,dec_max' or one of "
            f"{', '.join(NAMED_REGIONS)}"
        )
    try:
        return RaDecBox(*values)
    except UsageError as err:
        raise option_error("--region", text, err) from None


def bricks(names: list[str] | None) -> list[str] | None:
    """``--brick``: each name on the brick grid (or a runbrick ``custom-`` name), never a path."""
    from lsdr.survey.layout import checked_brick

    for name in names or []:
        _check("--brick", name, partial(checked_brick, name))
    return names


def cameras(names: list[str] | None) -> list[str] | None:
    """``--camera``: each a camera lsdr knows (90prime, mosaic, decam)."""
    from lsdr.survey.cameras import get_camera

    for name in names or []:
        _check("--camera", name, partial(get_camera, name))
    return names


def nights(date_min: date | None, date_max: date | None) -> None:
    """``--date-min``/``--date-max``: a night range that is not empty."""
    from lsdr.survey.discover import check_nights

    try:
        check_nights(date_min, date_max)
    except UsageError:
        raise UsageError(f"--date-min {date_min} is after --date-max {date_max}") from None


def brick_grid(width: int, height: int, pixscale: float) -> None:
    """``-W``, ``-H``, ``--pixscale``: a brick grid runbrick accepts."""
    from lsdr.survey.runbrick.options import RunbrickOptions

    _check("--width", width, partial(RunbrickOptions, width=width))
    _check("--height", height, partial(RunbrickOptions, height=height))
    _check("--pixscale", pixscale, partial(RunbrickOptions, pixscale=pixscale))


def fit_times(fit_budget: float | None, checkpoint_period: float | None) -> None:
    """``--fit-budget`` and ``--checkpoint-period``: seconds runbrick accepts (0 included)."""
    from lsdr.survey.runbrick.options import RunbrickOptions

    if fit_budget is not None:
        _check("--fit-budget", fit_budget, partial(RunbrickOptions, fit_budget_s=fit_budget))
    if checkpoint_period is not None:
        period = partial(RunbrickOptions, checkpoint_period=checkpoint_period)
        _check("--checkpoint-period", checkpoint_period, period)


def sweep_version(version: str) -> str:
    """``--version``: a plain directory name under ``sweep/`` (``10.0``), not a path."""
    from lsdr.survey.layout import checked_sweep_version

    _check("--version", version, partial(checked_sweep_version, version))
    return version


def match_radius(radius: float) -> float:
    """``--radius``: a positive match radius, arcsec."""
    from lsdr.survey.external import check_match_radius

    _check("--radius", radius, partial(check_match_radius, radius))
    return radius


def destination(release_dir: Path, where: str | None) -> str | None:
    """``--destination``: something rsync takes as a destination, outside the release."""
    if where is None:
        return None
    from lsdr.survey.layout import ReleaseLayout
    from lsdr.survey.publish import check_destination

    _check("--destination", where, partial(check_destination, ReleaseLayout(release_dir), where))
    return where


def setting_overrides(overrides: dict[str, Any]) -> None:
    """Settings given as options (``--workers``, ``--threads``, ``--batch-size``): each valid."""
    from lsdr.infra.settings import check_setting

    for name, value in overrides.items():
        option = SETTING_OPTIONS.get(name, name)
        _check(option, value, partial(check_setting, name, value))
