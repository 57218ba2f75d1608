"""The options the ``lsdr`` commands share, as typer option types.

The phase options' flags have no default of their own (None: "not given", the model's default
applies) and take their help from the model (:mod:`lsdr.phase_flags`;
tests/test_phase_options.py checks each flag against its field).  The settings' flags are the
settings model's (``infra/settings.py``); ``--verbose`` is the console's.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from lsdr.phase_flags import flag_help
from lsdr.survey.core.phase_options import (
    BrickSelection,
    BricksOptions,
    DiscoverOptions,
    MergeOptions,
    TractorOptions,
    ZeropointsOptions,
)

ReleaseDir = Annotated[
    Path, typer.Option("--release-dir", "-r", help="The release (and survey) directory.")
]
Region = Annotated[
    str | None,
    typer.Option(help=flag_help(BricksOptions, "region") + " ra_min > ra_max crosses RA 0."),
]
Bricks = Annotated[
    list[str] | None,
    typer.Option(
        "--brick", help=flag_help(BrickSelection, "bricks", "Only these bricks (repeatable).")
    ),
]
Width = Annotated[
    int | None, typer.Option("--width", "-W", help=flag_help(TractorOptions, "width"))
]
Height = Annotated[
    int | None, typer.Option("--height", "-H", help=flag_help(TractorOptions, "height"))
]
Pixscale = Annotated[
    float | None, typer.Option("--pixscale", help=flag_help(TractorOptions, "pixscale"))
]
Camera = Annotated[
    list[str] | None,
    typer.Option("--camera", help=flag_help(DiscoverOptions, "cameras") + " Repeatable."),
]
DateMin = Annotated[
    datetime | None,
    typer.Option("--date-min", formats=["%Y-%m-%d"], help=flag_help(DiscoverOptions, "date_min")),
]
DateMax = Annotated[
    datetime | None,
    typer.Option("--date-max", formats=["%Y-%m-%d"], help=flag_help(DiscoverOptions, "date_max")),
]
RunCalibs = Annotated[
    bool | None,
    typer.Option("--run-calibs/--no-run-calibs", help=flag_help(ZeropointsOptions, "run_calibs")),
]
Cut = Annotated[bool | None, typer.Option("--cut/--no-cut", help=flag_help(MergeOptions, "cut"))]
CutExpnum = Annotated[
    bool | None,
    typer.Option("--cut-expnum/--no-cut-expnum", help=flag_help(MergeOptions, "cut_expnum")),
]
# The settings' flags (infra/settings.py's model has their defaults) and the console's.
Zoom = Annotated[
    tuple[int, int, int, int] | None,
    typer.Option("--zoom", metavar="X0 X1 Y0 Y1", help=flag_help(TractorOptions, "zoom")),
]
Engine = Annotated[
    str | None,
    typer.Option(
        "--engine", help="Science engine: lite (lsdr's own) or legacypipe (the real pipeline)."
    ),
]
Launcher = Annotated[
    str | None,
    typer.Option(
        "--launcher",
        help="How legacypipe's commands run: none (here), shifter, podman-hpc, apptainer, docker.",
    ),
]
Workers = Annotated[int | None, typer.Option("--workers", help="Dask worker processes.")]
BatchSize = Annotated[int | None, typer.Option("--batch-size", help="Units per Prefect task.")]
Threads = Annotated[int | None, typer.Option("--threads", help="Threads per unit.")]
Timeout = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        metavar="SECONDS",
        help="Seconds each of the phase's units may run; past it the unit is stopped and fails "
        "as class timeout (a brick is rerun from its checkpoint with --bail-out). Default the "
        "setting timeouts, else none.",
    ),
]
Wait = Annotated[
    bool,
    typer.Option(
        "--wait/--no-wait",
        help="When another command or flow run writes this release (it holds "
        "state/release.lock), wait for it to end instead of refusing.",
    ),
]
Verbose = Annotated[
    bool,
    typer.Option(
        "--verbose",
        "-v",
        help="Also show INFO log records on the console (the run's log file always has them).",
    ),
]
