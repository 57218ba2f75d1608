"""Where legacypipe is, how its scripts are started, and how values become arguments."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lsdr.survey.core.layout import ReleaseLayout


@dataclass(frozen=True)
class LegacypipeInstall:
    """A legacypipe checkout: its ``py/`` directory and the Python that runs its scripts."""

    py_dir: Path
    """legacypipe's ``py/`` (``legacypipe/``, ``legacyzpts/``, ``legacyanalysis/`` below it)."""
    python: str = "python"
    """The interpreter, as the worker (or container) finds it."""

    @property
    def bin_dir(self) -> Path:
        """legacypipe's ``bin/``, beside ``py/`` (sweeps, external matches, copymaskbits)."""
        return Path(self.py_dir).parent / "bin"

    def py(self, script: str, *interpreter_flags: str) -> list[str]:
        """``python [flags] <py>/<script>``: the head of a command of a ``py/`` script."""
        return [self.python, *interpreter_flags, str(Path(self.py_dir) / script)]

    def bin(self, script: str, *interpreter_flags: str) -> list[str]:
        """``python [flags] <bin>/<script>``: the head of a command of a ``bin/`` script."""
        return [self.python, *interpreter_flags, str(self.bin_dir / script)]

    def environment(self, layout: ReleaseLayout) -> dict[str, str]:
        """What every command needs in its environment: the survey dir and legacypipe's code.

        ``merge_calibs.py`` and ``queue_calibs.py`` have no ``--survey-dir`` flag and read
        ``LEGACY_SURVEY_DIR`` only; the ``bin/`` scripts import ``legacypipe`` from
        ``PYTHONPATH``.
        """
        return {"LEGACY_SURVEY_DIR": str(layout.root), "PYTHONPATH": str(self.py_dir)}


def number_arg(value: float) -> str:
    """A number on a command line, in full precision (``180.0``, ``1.5``)."""
    return repr(float(value))
