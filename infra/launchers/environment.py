"""What a science command's process sees: the variables and mounts legacypipe's NERSC wrappers set.

legacypipe's production scripts (``bin/runbrick-perlmutter.sh``, ``bin/runcalibs-south.sh``) run
each brick or image with one BLAS/OpenMP thread per process (runbrick's ``--threads`` are
processes, so threaded BLAS would oversubscribe the node), without ``~/.local`` on ``sys.path``,
with private astropy and matplotlib cache/config directories (many processes sharing one cache
corrupt it), and with the survey and reference-catalogue directories as variables.  A
:class:`LaunchEnvironment` holds those, checked, for one unit; the launchers turn it into
variables and bind mounts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lsdr.survey.core.errors import UsageError

ONE_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
"""The thread counts of the BLAS/OpenMP libraries, each set to 1: the parallelism is processes."""

FIXED_VARIABLES: dict[str, str] = {
    **dict.fromkeys(ONE_THREAD_VARIABLES, "1"),
    # Intel's OpenMP pins threads to cores; with forked workers they all land on one core.
    "KMP_AFFINITY": "disabled",
    # Cray MPICH and Python multiprocessing's fork, as the NERSC wrappers set it.
    "MPICH_GNI_FORK_MODE": "FULLCOPY",
    # Don't add ~/.local to sys.path: the container's (or the venv's) packages only.
    "PYTHONNOUSERSITE": "1",
}
"""The variables every launched command gets, whatever the unit."""


def _absolute(what: str, path: Path) -> Path:
    """``path`` if absolute (a container sees the same path), else a :class:`UsageError`."""
    if not path.is_absolute():
        raise UsageError(
            f"{what} {str(path)!r} is a relative path: give an absolute one "
            "(commands and containers see the same path)"
        )
    return path


@dataclass(frozen=True)
class Mount:
    """A host directory seen at the same path inside a container, read-only or writable."""

    path: Path
    read_only: bool

    def __post_init__(self) -> None:
        """Refuse a relative path and the characters that split a bind-mount spec."""
        _absolute("mount", self.path)
        for char in ":,":
            if char in str(self.path):
                raise UsageError(
                    f"mount {str(self.path)!r} contains {char!r}, which splits a bind-mount "
                    "spec: mount a directory above it, or link it from a path without one"
                )

    @property
    def spec(self) -> str:
        """``<path>:<path>`` or ``<path>:<path>:ro``, as ``-v`` and ``--bind`` take it."""
        return f"{self.path}:{self.path}:ro" if self.read_only else f"{self.path}:{self.path}"

    def holds(self, path: Path) -> bool:
        """True if ``path`` is this directory or below it."""
        return path == self.path or self.path in path.parents


@dataclass(frozen=True)
class ReferenceCatalogues:
    """The reference-catalogue directories legacypipe reads, each its variable (upper-cased).

    Only those set are passed; the others are unset for launchers that inherit the host's
    environment, as the wrappers ``unset`` theirs, so a stray value never reaches a unit.
    """

    dust_dir: Path | None = None
    gaia_cat_dir: Path | None = None
    gaia_cat_ver: str | None = None
    gaia_cat_prefix: str | None = None
    gaia_cat_scheme: str | None = None
    tycho2_kd_dir: Path | None = None
    largegalaxies_cat: Path | None = None
    unwise_coadds_dir: tuple[Path, ...] = ()
    unwise_coadds_timeresolved_dir: Path | None = None
    unwise_model_sky_dir: Path | None = None
    sky_template_dir: Path | None = None
    ps1cat_dir: Path | None = None
    galex_dir: Path | None = None
    blob_mask_dir: Path | None = None

    def __post_init__(self) -> None:
        """Refuse a relative path in any of them."""
        for name, path in self.paths():
            _absolute(name, path)

    def paths(self) -> Iterator[tuple[str, Path]]:
        """Each path given, with its variable's name (``UNWISE_COADDS_DIR`` once per entry)."""
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            for path in value if isinstance(value, tuple) else (value,):
                if isinstance(path, Path):
                    yield item.name.upper(), path

    def variables(self) -> dict[str, str]:
        """The variables of the catalogues given; ``UNWISE_COADDS_DIR`` is a colon list."""
        out: dict[str, str] = {}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if isinstance(value, tuple):
                if value:
                    out[item.name.upper()] = ":".join(str(path) for path in value)
            elif value is not None:
                out[item.name.upper()] = str(value)
        return out


REFERENCE_VARIABLES = tuple(item.name.upper() for item in dataclasses.fields(ReferenceCatalogues))
"""Every reference-catalogue variable lsdr passes or unsets."""


@dataclass(frozen=True)
class LaunchEnvironment:
    """One unit's environment: the survey, its private directory, catalogues and mounts.

    ``unit_dir`` holds the unit's own astropy and matplotlib caches (created by
    :meth:`prepare`); ``inputs`` are bound read-only into containers and ``outputs`` writable,
    each at the same path, as is ``unit_dir`` when no output holds it.
    """

    survey_dir: Path
    unit_dir: Path
    references: ReferenceCatalogues = field(default_factory=ReferenceCatalogues)
    inputs: tuple[Path, ...] = ()
    outputs: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        """Refuse relative paths; check every mount (by making it)."""
        _absolute("LEGACY_SURVEY_DIR", self.survey_dir)
        _absolute("unit directory", self.unit_dir)
        _ = self.mounts

    @property
    def private_dirs(self) -> dict[str, Path]:
        """The cache and config directories of this unit alone, by the variable naming each.

        Older astropy reads ``$XDG_*_HOME/astropy`` only if that directory exists; newer reads
        ``ASTROPY_*_DIR``; matplotlib reads ``MPLCONFIGDIR``.
        """
        return {
            "XDG_CACHE_HOME": self.unit_dir / "cache",
            "XDG_CONFIG_HOME": self.unit_dir / "config",
            "ASTROPY_CACHE_DIR": self.unit_dir / "cache" / "astropy",
            "ASTROPY_CONFIG_DIR": self.unit_dir / "config" / "astropy",
            "MPLCONFIGDIR": self.unit_dir / "matplotlib",
        }

    @property
    def mounts(self) -> tuple[Mount, ...]:
        """The bind mounts of a container: inputs read-only, then outputs and the unit writable.

        The unit's directory gets a mount of its own unless an output already holds it.
        """
        outputs = [Mount(path, read_only=False) for path in self.outputs]
        if not any(mount.holds(self.unit_dir) for mount in outputs):
            outputs.append(Mount(self.unit_dir, read_only=False))
        return (*(Mount(path, read_only=True) for path in self.inputs), *outputs)

    def variables(self) -> dict[str, str]:
        """Every variable the command gets, in a fixed order."""
        return {
            **FIXED_VARIABLES,
            **{name: str(path) for name, path in self.private_dirs.items()},
            "LEGACY_SURVEY_DIR": str(self.survey_dir),
            **self.references.variables(),
        }

    def unset_variables(self) -> tuple[str, ...]:
        """The reference variables not given: removed from an inherited environment."""
        given = self.references.variables()
        return tuple(name for name in REFERENCE_VARIABLES if name not in given)

    def check_mounted(self, launcher: str) -> None:
        """Refuse a survey or catalogue path that no mount of a container shows."""
        for name, path in (("LEGACY_SURVEY_DIR", self.survey_dir), *self.references.paths()):
            if not any(mount.holds(path) for mount in self.mounts):
                raise UsageError(
                    f"{name} {str(path)!r} is under no mount of the {launcher} launcher: "
                    "add it, or a directory above it, to the inputs"
                )

    def prepare(self) -> None:
        """Create the unit's private cache and config directories (before the command runs)."""
        for path in self.private_dirs.values():
            path.mkdir(parents=True, exist_ok=True)
