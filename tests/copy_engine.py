"""A small real engine for the engine-seam tests: its runbrick copies a finished brick's products.

``CopyEngine`` is lite in every method but ``runbrick``, which copies the files a reference
release's tractor unit wrote for the brick (its provenance sidecar lists them: catalogue,
tractor-i, coadds, maskbits, metrics, checksums) to the same paths in the release being run.
An engine is made without arguments in every process that runs a unit, so the reference
release is named by a file of the release being run (:func:`use_reference`).

Workers import this module as ``copy_engine``: the tests directory is on pytest's ``sys.path``,
and a ``LocalCluster`` starts its worker processes with the parent's ``sys.path``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from lsdr import __version__
from lsdr.survey.core.fileio import atomic_path, write_text_atomic
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.engines.base import Outcome, UnitOutput
from lsdr.survey.engines.lite import LiteEngine
from lsdr.survey.runbrick.options import RunbrickOptions
from lsdr.tasks.digests import absolute
from lsdr.tasks.sidecars import read_sidecar, sidecar_path

REFERENCE_FILE = "copy-engine-reference"
"""The file, in the release's ``state/``, naming the release whose bricks are copied."""


def use_reference(layout: ReleaseLayout, reference: ReleaseLayout) -> None:
    """Make the copy engine copy ``reference``'s bricks into ``layout``'s release."""
    write_text_atomic(layout.state_dir / REFERENCE_FILE, f"{reference.root}\n")


class CopyEngine(LiteEngine):
    """The lite engine, except that a brick's products are copied from a reference release."""

    name = "copy"

    @property
    def version(self) -> str:
        """``copy-<lsdr version>``."""
        return f"{self.name}-{__version__}"

    def runbrick(self, layout: ReleaseLayout, brick: str, options: RunbrickOptions) -> UnitOutput:
        """Copy what the reference's tractor unit wrote for ``brick``; failed if it has none."""
        reference = ReleaseLayout(Path((layout.state_dir / REFERENCE_FILE).read_text().strip()))
        sidecar = read_sidecar(sidecar_path(reference, "tractor", brick))
        if sidecar is None or sidecar.get("state") != "done":
            return UnitOutput.failed(
                "science", f"{brick}: no finished brick to copy in {reference.root}"
            )
        copied: list[Path] = []
        for item in sidecar["outputs"]:
            source = Path(absolute(str(item[0]), reference.root))
            target = layout.root / source.relative_to(reference.root)
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)
            copied.append(target)
        outcome = Outcome.DONE if copied else Outcome.NO_DATA
        return UnitOutput(tuple(copied), {"copied": len(copied)}, outcome)
