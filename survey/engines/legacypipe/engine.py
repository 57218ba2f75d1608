"""The ``legacypipe`` engine: runbrick is the real ``legacypipe/runbrick.py``, run by a launcher.

A brick's command is built from its options (``runbrick.py``), run through the configured
launcher (``none`` here, Shifter at NERSC; ``setup.py``) with its output in the brick's log,
and judged by what it wrote, never by its exit status alone (``judge.py``): legacypipe exits 0
without a catalogue when a brick has no data, and on SIGUSR1 after writing its checkpoint.

The steps before and after runbrick are lite's (this class extends :class:`LiteEngine`), and
each says so in its summary (``"science": "lite"``): the release's CCD tables, calibs and
reference catalogues are lite's products, which the real runbrick reads.  Their command lines
are built and golden-tested (``commands.py``); running them here is issue 20's.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from lsdr.infra.launchers.runner import Deadline, address_space_left_mb, run_launched
from lsdr.survey.core.bricks import brick_by_name
from lsdr.survey.engines.base import UnitOutput
from lsdr.survey.engines.legacypipe.judge import judge_runbrick
from lsdr.survey.engines.legacypipe.references import tycho_note
from lsdr.survey.engines.legacypipe.runbrick import RunbrickCommand, runbrick_argv
from lsdr.survey.engines.legacypipe.setup import IMAGE_PY_DIR, LegacypipeSetup
from lsdr.survey.engines.legacypipe.versions import ENGINE_NAME
from lsdr.survey.engines.lite import LiteEngine

if TYPE_CHECKING:
    from lsdr.survey.core.layout import ReleaseLayout
    from lsdr.survey.posttractor.external import ExternalCatalogue
    from lsdr.survey.posttractor.sweeps import SweepBox
    from lsdr.survey.runbrick.options import RunbrickOptions

SIGUSR1 = 10
"""runbrick's "write the checkpoint and exit" signal (Linux's number)."""
FITBLOBS_STARTED = "Running stage fitblobs"
"""runbrick's log line when fitblobs starts: the fit budget counts from there."""
CHECKPOINT_GRACE_S = 300.0
"""How long runbrick may take to write its checkpoint after SIGUSR1 before it is killed."""


class LegacypipeEngine(LiteEngine):
    """The real runbrick through a container launcher; lite for the other steps."""

    name = ENGINE_NAME
    SETTINGS: ClassVar[tuple[str, ...]] = (
        "launcher",
        "image",
        "legacypipe_prefix",
        "legacypipe_py",
        "legacypipe_version",
    )
    """The settings (``infra/settings.py``) this engine is made from, passed as keywords."""

    def __init__(
        self,
        launcher: str = "none",
        image: str | None = None,
        legacypipe_prefix: str | Path | None = None,
        legacypipe_py: str | Path = IMAGE_PY_DIR,
        legacypipe_version: str | None = None,
    ) -> None:
        """Check the launcher, image and version now; find the build when a command needs it."""
        self.setup = LegacypipeSetup(
            launcher=launcher,
            image=image,
            prefix=Path(legacypipe_prefix) if legacypipe_prefix else None,
            py_dir=Path(legacypipe_py),
            version=legacypipe_version,
        )

    @property
    def version(self) -> str:
        """``legacypipe-<git describe>``: another legacypipe reruns every brick."""
        return f"{self.name}-{self.setup.describe.describe}"

    # -- tractor --------------------------------------------------------------------------------
    def runbrick_command(self, brick: str, options: RunbrickOptions) -> RunbrickCommand:
        """runbrick's flags for one brick: the options, with the production pickles/checkpoint.

        Calibs come from the zeropoints phase (``--skip-calibs``); the brick's ``srcs`` stage is
        pickled and fitblobs checkpointed in the release's shared directories, so a brick rerun
        elsewhere resumes.  No unWISE here (``--no-wise``): lite's release has no unWISE coadds.
        """
        command = RunbrickCommand.of(brick, options, wise=False)
        return replace(command, skip_calibs=True, write_stages=command.write_stages or ("srcs",))

    def runbrick(self, layout: ReleaseLayout, brick: str, options: RunbrickOptions) -> UnitOutput:
        """The real runbrick on one brick, judged by its catalogue (no data: its own outcome)."""
        commands = self.setup.install
        flag_set = self.setup.describe.flag_set
        command = self.runbrick_command(brick, options)
        ra, dec = options.radec if options.radec is not None else brick_centre(brick)
        tycho = tycho_note(layout.tycho2_kd, ra, dec)
        if tycho is not None:
            command = replace(command, tycho=False)
        argv = runbrick_argv(commands, flag_set, layout, command)
        log = layout.brick_log(brick)
        unit_dir = layout.state.unit_scratch("tractor", brick)
        environment = self.setup.environment(layout, unit_dir)
        deadline = (
            Deadline(options.fit_budget_s, SIGUSR1, CHECKPOINT_GRACE_S, FITBLOBS_STARTED)
            if options.fit_budget_s is not None
            else None
        )
        layout.checkpoint(brick).parent.mkdir(parents=True, exist_ok=True)
        log_start = log.stat().st_size if log.exists() else 0
        started = time.time()
        result = run_launched(
            self.setup.runner,
            argv,
            environment,
            log,
            self.setup.host_environment(os.environ),
            deadline=deadline,
            memory_limit_mb=address_space_left_mb(),
        )
        shutil.rmtree(unit_dir, ignore_errors=True)
        record = {
            "engine": self.name,
            "legacypipe": self.setup.describe.describe,
            "flag_set": str(flag_set),
            "launcher": self.setup.launcher,
            "argv": argv,
            "exit_code": result.exit_code,
            "log": str(log),
            **({"tycho": tycho} if tycho is not None else {}),
        }
        return judge_runbrick(layout, brick, result, log_start, started, record, skip=options.skip)

    # -- the steps lite does, marked as lite's ----------------------------------------------------
    def zeropoints(self, layout: ReleaseLayout, image: str, options: Any) -> UnitOutput:
        """Lite's zeropoints and calibs (``legacy_zeropoints.py`` needs SourceExtractor)."""
        return _lite(super().zeropoints(layout, image, options))

    def merge_calibs(self, layout: ReleaseLayout, image: str) -> UnitOutput:
        """Lite's merged calibs."""
        return _lite(super().merge_calibs(layout, image))

    def merge_ccd_tables(
        self, layout: ReleaseLayout, annotated: Sequence[Path], options: Any
    ) -> UnitOutput:
        """Lite's CCD tables."""
        return _lite(super().merge_ccd_tables(layout, annotated, options))

    def ccds_kdtree(self, layout: ReleaseLayout) -> UnitOutput:
        """Lite's kd-tree writer (Debian has no ``startree`` for ``create_kdtrees.py``)."""
        return _lite(super().ccds_kdtree(layout))

    def depth_cut(self, layout: ReleaseLayout, bricks: Sequence[str]) -> UnitOutput:
        """Lite's depth cut."""
        return _lite(super().depth_cut(layout, bricks))

    def bright_neighbours(self, layout: ReleaseLayout, brick: str) -> UnitOutput:
        """Lite's bright-neighbour maskbits."""
        return _lite(super().bright_neighbours(layout, brick))

    def brick_depth(self, layout: ReleaseLayout, brick: str) -> UnitOutput:
        """Lite's per-brick depth counts."""
        return _lite(super().brick_depth(layout, brick))

    def merge_depth(self, layout: ReleaseLayout, bricks: Sequence[str]) -> UnitOutput:
        """Lite's depth histogram."""
        return _lite(super().merge_depth(layout, bricks))

    def summarize_chunk(
        self, layout: ReleaseLayout, chunk: str, bricks: Sequence[str]
    ) -> UnitOutput:
        """Lite's partial brick summary."""
        return _lite(super().summarize_chunk(layout, chunk, bricks))

    def merge_summary(self, layout: ReleaseLayout, chunks: Sequence[Path]) -> UnitOutput:
        """Lite's brick summary."""
        return _lite(super().merge_summary(layout, chunks))

    def sweep(self, layout: ReleaseLayout, box: SweepBox, version: str) -> UnitOutput:
        """Lite's sweep file."""
        return _lite(super().sweep(layout, box, version))

    def match_external(
        self, layout: ReleaseLayout, catalogue: ExternalCatalogue, options: Any
    ) -> UnitOutput:
        """Lite's external match."""
        return _lite(super().match_external(layout, catalogue, options))


def brick_centre(brick: str) -> tuple[float, float]:
    """The grid brick's centre (RA, Dec), where runbrick searches its reference stars."""
    b = brick_by_name(brick)
    return b.ra, b.dec


def _lite(output: UnitOutput) -> UnitOutput:
    """``output`` marked as made by lite's science, so no sidecar claims legacypipe made it."""
    return replace(output, summary={"science": "lite", **output.summary})
