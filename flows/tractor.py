"""Phase ``tractor``: the lite runbrick on every brick of the brick list."""

from __future__ import annotations

import logging
from typing import Any

from prefect import flow

from lsdr.flows.runner import (
    leave_out,
    phase_summary,
    read_planned_list,
    run_units,
    settings_for,
    upstream_failures,
)
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.tractor import bail_out_after_timeout, plan_tractor, tractor_unit
from lsdr.tasks.units import Unit

log = logging.getLogger("lsdr.flows")


@flow(name="tractor")
def tractor(
    release_dir: str,
    bricks: list[str] | None = None,
    width: int = 3600,
    height: int = 3600,
    pixscale: float = 0.262,
    keep_checkpoints: bool = False,
    fit_budget_s: float | None = None,
    checkpoint_period: float | None = None,
    outliers: bool = True,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Catalogues, coadds and maskbits for each brick (default: every brick of bricks.txt).

    ``fit_budget_s``: seconds of fitting a brick may take; past it the brick saves its
    checkpoint and is rerun with ``--bail-out`` (its unfit blobs flagged BAILOUT).
    ``checkpoint_period``: seconds between checkpoint rewrites (default 600).  ``outliers``:
    False skips the cross-exposure outlier masking (legacypipe's ``--no-outliers``).  Each brick is
    its own Prefect task, placed on a worker with room for its memory estimate.
    """
    from lsdr.survey.core.layout import checked_brick
    from lsdr.survey.pretractor.bricklist import read_brick_list

    s = settings_for(release_dir, settings)
    layout = ReleaseLayout(s.release_dir)
    bad_list: list[Unit] = []
    if bricks:
        names = [checked_brick(b) for b in bricks]
    else:
        names, bad_list = read_planned_list(
            "tractor", layout.brick_list, lambda: read_brick_list(layout), s
        )
    # The CCD tables and the brick list are made by one unit each: when the last run of either
    # failed, what is on disk is older than the survey, and no brick is fitted on it.
    upstream = upstream_failures(s, "merge", ["survey-ccds"])
    if not bricks:
        upstream.update(upstream_failures(s, "bricks", ["brick-list"]))
    reason = "; ".join(upstream.values())
    left_out = leave_out("tractor", "brick", dict.fromkeys(names, reason) if upstream else {})
    if upstream:
        names = []
    units = plan_tractor(
        layout,
        names,
        width=width,
        height=height,
        pixscale=pixscale,
        keep_checkpoints=keep_checkpoints,
        threads=s.unit_threads,
        fit_budget_s=fit_budget_s,
        checkpoint_period=checkpoint_period,
        outliers=outliers,
    )
    # Largest bricks first (memory follows pixels, and so does time): the last brick to start
    # is a small one, so workers finish together (longest-processing-time-first scheduling).
    units = [*bad_list, *sorted(units, key=lambda u: -u.memory_mb)]
    report = run_units(
        "tractor", tractor_unit, units, s, on_timeout=bail_out_after_timeout, batch_size=1
    )
    empty = [r.key for r in report.results if r.summary.get("status") == "nothing-to-do"]
    for brick in empty:
        log.warning("tractor: %s has no CCDs: nothing to do, no catalogue", brick)
    return phase_summary(report, left_out=left_out, left_out_what="brick", nothing_to_do=empty)
