"""Units of work: what a unit is, how it ended, and the engine that runs its science.

A unit is (phase, key): an image, an exposure, a camera-band table, a brick.  It carries what
it depends on (its input files, the table rows it reads, its options) and how to run it
(threads, flags, a memory estimate).  A unit carries the engine that runs its science
(``survey/engines``); the engine's version is part of its identity, and its sidecar names the
engine.  No Prefect here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from lsdr.infra.ledger import UnitFinish
from lsdr.survey.core.errors import InputFileError
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.engines.base import Engine
from lsdr.survey.engines.base import UnitOutput as UnitOutput  # what unit functions return
from lsdr.survey.engines.registry import DEFAULT_ENGINE, engine_reference, get_engine
from lsdr.tasks.digests import FileDigest


@dataclass(frozen=True)
class Unit:
    """One unit of a phase: what to do (key, options) and what it depends on (inputs)."""

    phase: str
    key: str
    inputs: tuple[str, ...] = ()
    options: tuple[tuple[str, Any], ...] = ()
    threads: int = 1
    flags: tuple[tuple[str, Any], ...] = ()
    """How to run, not what to make (a time budget, ``bail_out`` after a timeout): like
    ``threads``, not part of the fingerprint, so a retry with other flags finds the same unit."""
    memory_mb: int = 0
    """Estimated peak memory (MB), 0 when unknown: places the unit on a worker with room for
    it (Dask resource ``MEMORY_MB``); not part of the fingerprint."""
    headers: tuple[str, ...] = ()
    """Files of which the unit reads only the primary FITS header (discovery): fingerprinted by
    that header's bytes, so an image's pixels never make the image list stale."""
    read_rows: tuple[tuple[str, str], ...] = ()
    """(what, digest) of the table rows the unit reads, when it reads a few rows of a table
    many units share (a brick: its CCDs' rows of survey-ccds), instead of the whole table."""
    known: tuple[FileDigest, ...] = ()
    """Digests the planner already took of the inputs (not part of the identity): the worker
    reuses those whose file is unchanged instead of hashing it again."""
    engine: str = DEFAULT_ENGINE
    """The engine that runs the unit's science, as a reference any process resolves
    (:func:`on_engine`; ``survey/engines/registry.py``).  Not part of the identity as such:
    the engine's version, given with the unit, is."""
    engine_config: tuple[tuple[str, Any], ...] = ()
    """The settings the engine is made from (``engine_config``: the launcher, legacypipe's
    version…), so a worker makes the engine the flow was given; not part of the identity."""

    def option(self, name: str, default: Any = None) -> Any:
        """The value of one option."""
        return dict(self.options).get(name, default)

    def flag(self, name: str, default: Any = None) -> Any:
        """The value of one execution flag."""
        return dict(self.flags).get(name, default)

    def with_flag(self, name: str, value: Any) -> Unit:
        """The same unit with one execution flag set."""
        flags = {**dict(self.flags), name: value}
        return replace(self, flags=tuple(sorted(flags.items())))

    def with_threads(self, threads: int) -> Unit:
        """The same unit with another thread count (threads are not part of the fingerprint)."""
        return replace(self, threads=threads)

    def unplannable(self, err: InputFileError) -> Unit:
        """The same unit marked as failed in planning: a file its planner read is bad.

        :func:`execute_unit` records it as a ``science`` failure with ``err``'s message (which
        names the file), without running it; a rerun with the same inputs reports it again,
        and replacing the file (an input, so a new fingerprint) lets it plan and run.
        """
        return self.with_flag(PLAN_ERROR, str(err))

    @property
    def plan_error(self) -> str | None:
        """Why planning could not read this unit's inputs (see :meth:`unplannable`), or None."""
        error = self.flag(PLAN_ERROR)
        return str(error) if error else None


PLAN_ERROR = "plan_error"
"""The execution flag of a unit whose planner could not read one of its input files."""
FORCE = "force"
"""The execution flag of a unit to run even when its sidecar says done (a forced rerun)."""


class UnitFunction(Protocol):
    """A phase's science for one unit (module-level, so it pickles by reference)."""

    def __call__(self, layout: ReleaseLayout, unit: Unit) -> UnitOutput:
        """Do the unit's work and return its outputs."""
        ...


@dataclass(frozen=True)
class UnitResult:
    """How one unit ended; small enough to send back from a worker by the thousand."""

    phase: str
    key: str
    state: str  # done | cached | failed
    fingerprint: str = ""
    failure_class: str | None = None
    message: str | None = None
    wall_s: float = 0.0
    peak_mem_mb: float = 0.0
    outputs: tuple[str, ...] = ()
    summary: Mapping[str, Any] = field(default_factory=dict)
    threads: int = 1
    no_space: str | None = None
    """The file a failed unit could not write for want of space (ENOSPC, EDQUOT): the runner
    resubmits it once that file system has room (``flows/space_policy.py``)."""

    def ledger_finish(self) -> UnitFinish:
        """The ledger's record of this result (cached counts as done)."""
        return UnitFinish(
            key=self.key,
            state="failed" if self.state == "failed" else "done",
            fingerprint=self.fingerprint or None,
            failure_class=self.failure_class,
            message=self.message,
            wall_s=self.wall_s,
            peak_mem_mb=self.peak_mem_mb,
            outputs=self.outputs,
            threads=self.threads,
        )


def engine_version(engine: str, config: Mapping[str, Any] | None = None) -> str:
    """The version of the engine named ``engine`` that goes into every fingerprint."""
    return get_engine(engine, config).version


def on_engine(
    units: Sequence[Unit], engine: str, config: Mapping[str, Any] | None = None
) -> list[Unit]:
    """The units, each to run with the engine named in the settings, made with ``config``.

    Each carries the engine as a reference that any worker resolves (``engine_reference``).
    """
    reference = engine_reference(engine)
    carried = tuple(sorted((config or {}).items()))
    return [replace(u, engine=reference, engine_config=carried) for u in units]


def unit_engine(unit: Unit) -> Engine:
    """The engine that runs a unit's science (resolved in this process: a worker's)."""
    return get_engine(unit.engine, dict(unit.engine_config))


def path_strings(paths: Sequence[Path]) -> tuple[str, ...]:
    """The paths as a unit holds them (its inputs, its headers): strings."""
    return tuple(str(p) for p in paths)
