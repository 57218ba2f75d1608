"""A real engine whose runbrick hangs mid-fit, for the brick timeout test.

``HangingEngine`` is lite in everything, except that a brick run without ``--bail-out`` fits
:data:`HANG_AFTER` blobs and then hangs in the next one (a sleep that never returns), as a
brick whose blobs never converge does.  It writes ``state/hung-<brick>`` when it starts
hanging, so a test can tell the timeout came mid-fit.  Workers import this module as
``hanging_engine`` (the tests directory is on the workers' ``sys.path``, as for
``copy_engine``).
"""

from __future__ import annotations

import time
from typing import Any

from lsdr import __version__
from lsdr.survey.core.fileio import write_text_atomic
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.engines.base import UnitOutput
from lsdr.survey.engines.lite import LiteEngine
from lsdr.survey.runbrick import fit
from lsdr.survey.runbrick.options import RunbrickOptions

HANG_AFTER = 2
"""Blobs fitted before the brick hangs."""


def hung_marker(layout: ReleaseLayout, brick: str) -> Any:
    """The file the engine writes when the brick starts hanging."""
    return layout.state_dir / f"hung-{brick}"


class HangingEngine(LiteEngine):
    """The lite engine, except that a brick hangs after :data:`HANG_AFTER` blobs."""

    name = "hanging"

    @property
    def version(self) -> str:
        """``hanging-<lsdr version>``."""
        return f"{self.name}-{__version__}"

    def runbrick(self, layout: ReleaseLayout, brick: str, options: RunbrickOptions) -> UnitOutput:
        """Lite's runbrick; without ``bail_out``, its fitblobs hangs after a few blobs."""
        if options.bail_out:
            return super().runbrick(layout, brick, options)
        original = fit.fit_blob
        fitted: list[int] = []

        def fit_then_hang(*args: Any, **kwargs: Any) -> Any:
            if len(fitted) >= HANG_AFTER:
                write_text_atomic(hung_marker(layout, brick), "hanging\n")
                while True:
                    time.sleep(1)
            fitted.append(1)
            return original(*args, **kwargs)

        fit.fit_blob = fit_then_hang  # type: ignore[assignment]
        try:
            return super().runbrick(layout, brick, options)
        finally:
            fit.fit_blob = original  # type: ignore[assignment]
