"""Errors of the survey domain, each carrying a one-line message a person can act on."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Literal


class FailureClass(StrEnum):
    """How a unit failed: each class has its own retry policy (docs/orchestration.md).

    Here, below ``tasks/``, so that an engine can name one; a ``str``, so it is stored and
    compared as its value.
    """

    INFRA = "infra"
    OOM = "oom"
    TIMEOUT = "timeout"
    SCIENCE = "science"
    USAGE = "usage"
    ENVIRONMENT = "environment"


class SurveyError(Exception):
    """Base class: a problem with the survey's inputs, reported without a traceback."""


class UsageError(SurveyError, ValueError):
    """Bad parameters or configuration: fail fast, before any work starts."""


class BrickNameError(UsageError):
    """A brick name that is not on the Legacy Surveys brick grid."""


class RegionError(UsageError):
    """A sky region or coordinate outside the sky, or empty."""


class CameraError(UsageError):
    """A camera lsdr does not know."""


class InputFileError(SurveyError):
    """An input file that is missing, truncated or unreadable; the message names the file."""


DependencyKind = Literal["executable", "module", "library"]
"""What a :class:`MissingDependencyError` is about: a program, a Python module, a shared library."""

KNOWN_INSTALLS: dict[tuple[str, str], str] = {
    ("executable", "rsync"): "apt-get install rsync",
    ("executable", "python3"): "apt-get install python3",
    ("module", "astrometry"): "apt-get install python3-astrometry",
}
"""How to install the few dependencies lsdr knows outside its venv (Debian packages)."""

PIP_NAMES: dict[str, str] = {
    "yaml": "pyyaml",
    "psycopg": "psycopg[binary]",
    "astropy_healpix": "astropy-healpix",
    "prefect_dask": "prefect-dask",
    "dask_jobqueue": "dask-jobqueue",
}
"""pip distributions of lsdr's dependencies whose import name differs from their pip name."""


def install_command(kind: DependencyKind, name: str) -> str | None:
    """The command that installs a missing dependency, when lsdr knows it.

    Known Debian packages first; any other Python module (not lsdr's, not the standard
    library's) is pip-installed into this Python (the venv's, on a worker); a shared library or
    program lsdr does not know has no command.
    """
    base = name.rsplit("/", 1)[-1] if kind == "executable" else name
    top = base.split(".", 1)[0]
    known = KNOWN_INSTALLS.get((kind, top if kind == "module" else base))
    if known is not None:
        return known
    if kind == "module" and top and top != "lsdr" and top not in sys.stdlib_module_names:
        return f"{sys.executable} -m pip install {PIP_NAMES.get(top, top)}"
    return None


class MissingDependencyError(SurveyError):
    """A program, Python module or shared library the run needs is missing or unusable.

    The environment's fault, not the data's (failure class ``environment``): the message names
    what is missing and how to install it, and a rerun after installing it runs the unit again.
    """

    def __init__(
        self, kind: DependencyKind, missing: str, install: str | None = None, reason: str = ""
    ) -> None:
        super().__init__(kind, missing, install, reason)  # the args, so that it pickles
        self.kind: DependencyKind = kind
        self.missing = missing
        self.install = install if install is not None else install_command(kind, missing)
        self.reason = " ".join(reason.split())

    def __str__(self) -> str:
        """One line: what is missing, why, and the command that installs it."""
        why = f" ({self.reason})" if self.reason else ""
        if self.kind == "module":
            what = f"Python module {self.missing} not importable{why}"
        elif self.kind == "library":
            what = f"shared library {self.missing} cannot be loaded{why}"
        elif self.reason:
            what = f"{self.missing} cannot be executed{why}"
        else:
            where = "" if "/" in self.missing else " on PATH"
            what = f"{self.missing} not found{where}"
        if self.install:
            return f"{what}: install it with '{self.install}'"
        return f"{what}: install the package that provides it, then rerun"
