"""The tractor phase's units: one brick each, through the lite runbrick.

A brick's inputs are the CCD tables and the reference catalogue (a changed table reruns the
bricks); its options are the runbrick flags that change the result.  Every brick runs with a
checkpoint in the release's shared ``checkpoints/`` directory, so a brick rerun after its
worker died resumes from the blobs already fitted; checkpoints and stage pickles are removed
once the brick is done, unless kept on request.
"""

from __future__ import annotations

from collections.abc import Sequence

from lsdr.survey.layout import ReleaseLayout
from lsdr.tasks.pretractor import gaia_chunks, survey_ccds_tables
from lsdr.tasks.units import Unit, UnitOutput


def plan_tractor(
    layout: ReleaseLayout,
    bricks: Sequence[str],
    *,
    width: int = 3600,
    height: int = 3600,
    pixscale: float = 0.262,
    bands: Sequence[str] = ("g", "r", "z"),
    release: int = 10000,
    keep_checkpoints: bool = False,
    threads: int = 1,
    fit_budget_s: float | None = None,
) -> list[Unit]:
    """One unit per brick of the brick list (``fit_budget_s``: the time-budget flag)."""
    inputs = tuple(str(p) for p in (*survey_ccds_tables(layout), *gaia_chunks(layout)))
    options = (
        ("width", width),
        ("height", height),
        ("pixscale", pixscale),
        ("bands", list(bands)),
        ("release", release),
        ("keep_checkpoints", keep_checkpoints),
    )
    flags = (("fit_budget_s", fit_budget_s),) if fit_budget_s is not None else ()
    return [
        Unit("tractor", brick, inputs, options, threads=threads, flags=flags) for brick in bricks
    ]


def bail_out_after_timeout(unit: Unit) -> Unit | None:
    """The tractor phase's timeout policy: rerun from the checkpoint with ``--bail-out``, once."""
    if unit.flag("bail_out", False):
        return None
    return unit.with_flag("bail_out", True)


def tractor_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Run the lite runbrick on one brick, resuming from its checkpoint."""
    from lsdr.survey.runbrick.options import RunbrickOptions
    from lsdr.survey.runbrick.stages import run_brick

    brick = unit.key
    checkpoint = layout.checkpoint(brick)
    options = RunbrickOptions(
        bands=tuple(unit.option("bands", ["g", "r", "z"])),
        width=int(unit.option("width", 3600)),
        height=int(unit.option("height", 3600)),
        pixscale=float(unit.option("pixscale", 0.262)),
        release=int(unit.option("release", 10000)),
        checkpoint=str(checkpoint),
        checkpoint_period=60.0,
        bail_out=bool(unit.flag("bail_out", False)),
        fit_budget_s=unit.flag("fit_budget_s"),
        threads=unit.threads,
    )
    result = run_brick(layout, brick, options)
    if not unit.option("keep_checkpoints", False):
        checkpoint.unlink(missing_ok=True)
    return UnitOutput(
        tuple(result.products),
        {"status": result.status, "ccds": result.n_ccds, "seconds": round(result.seconds, 1)},
    )
