"""Units of work and their provenance: fingerprints, sidecars, failure classes, execution.

A unit is (phase, key): an image, an exposure, a camera-band table, a brick.  Its fingerprint
hashes what it reads: its input files' *contents* (``tasks/digests.py``: a size/mtime/ctime
check first, a content hash only when that differs), the table rows it reads, its options and
the engine version.  Its provenance sidecar (``state/provenance/<phase>/<hash>.json``) records
that fingerprint, the digest of every file it read and wrote, the wall time and memory.  A
unit is done when its sidecar matches the current fingerprint and every recorded output still
holds the bytes it wrote: the on-disk release is the truth, the ledger is an index of it.  A
touched file with the same bytes changes nothing, and a rerun unit whose outputs come out
byte-identical leaves its dependants done (early cutoff).  A unit carries the engine that runs
its science (``survey/engines``); the engine's version is part of its identity, and its
sidecar names the engine.  No Prefect here.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import resource
import socket
import subprocess
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from lsdr.infra.ledger import UnitFinish
from lsdr.survey.core.errors import (
    FailureClass,
    InputFileError,
    MissingDependencyError,
    SurveyError,
    UsageError,
)
from lsdr.survey.core.fileio import write_text_atomic
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.engines.base import Engine, Outcome
from lsdr.survey.engines.base import UnitOutput as UnitOutput  # what unit functions return
from lsdr.survey.engines.registry import DEFAULT_ENGINE, engine_reference, get_engine
from lsdr.tasks.digests import (
    CONTENT,
    HEADER,
    FileDigest,
    absolute,
    by_path,
    digest_file,
    digest_files,
    relative,
    stat_stamp,
)

SIDECAR_VERSION = 2
"""2: inputs and outputs recorded by content digest (1: by size and mtime; such a unit reruns)."""


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


# -- fingerprints and sidecars --------------------------------------------------------------
def identity(unit: Unit, engine_version: str, root: str | Path | None = None) -> str:
    """Hash of what the unit is, without its files' contents.

    Phase, key, engine, options, the rows it reads and the names of the files it reads: a
    sidecar with another identity is stale without hashing anything (new options, a new input).
    Paths under ``root`` (the release) count relative to it, in options too.
    """
    doc = {
        "phase": unit.phase,
        "key": unit.key,
        "engine": engine_version,
        "options": [[k, v] for k, v in unit.options],
        "rows": [list(r) for r in unit.read_rows],
        "inputs": [relative(p, root) for p in unit.inputs],
        "headers": [relative(p, root) for p in unit.headers],
    }
    text = json.dumps(doc, sort_keys=True, default=str)
    if root is not None:
        text = text.replace(json.dumps(str(root).rstrip("/") + "/")[1:-1], "")
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class InputDigests:
    """A unit's fingerprint over its inputs' contents, and the digests it took.

    ``hashed``: how many files had to be hashed (the rest were vouched for by their stamps).
    """

    fingerprint: str
    records: tuple[FileDigest, ...]
    hashed: int


def input_digests(
    unit: Unit,
    engine_version: str,
    known: Mapping[str, FileDigest] | None = None,
    root: str | Path | None = None,
) -> InputDigests:
    """The unit's fingerprint: its identity and the content digest of every file it reads.

    ``known``: digests recorded before (a sidecar's, the planner's), reused for files whose
    stamp is unchanged.  ``root``: the release, whose paths count relative to it.
    """
    known = {**{d.path: d for d in unit.known}, **(known or {})}
    content, n_content = digest_files(unit.inputs, CONTENT, known)
    headers, n_headers = digest_files(unit.headers, HEADER, known)
    doc = {
        "identity": identity(unit, engine_version, root),
        "inputs": [[relative(d.path, root), d.digest] for d in content],
        "headers": [[relative(d.path, root), d.digest] for d in headers],
    }
    fp = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
    return InputDigests(fp, (*content, *headers), n_content + n_headers)


def fingerprint(unit: Unit, engine_version: str, root: str | Path | None = None) -> str:
    """The unit's fingerprint (see :func:`input_digests`), hashing what this process has not."""
    return input_digests(unit, engine_version, root=root).fingerprint


def sidecar_path(layout: ReleaseLayout, phase: str, key: str) -> Path:
    """Where a unit's provenance sidecar lives (the key itself is stored inside)."""
    digest = hashlib.sha1(f"{phase}\0{key}".encode()).hexdigest()[:24]
    return layout.state_dir / "provenance" / phase / f"{digest}.json"


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """A sidecar's content, or None when missing or unreadable (then the unit reruns)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class Settled:
    """What the sidecar settles for a unit: its result (None: it must run) and the unit to run.

    The unit to run carries the digests the check already took, for its worker to reuse.
    """

    result: UnitResult | None
    unit: Unit


def settle(layout: ReleaseLayout, unit: Unit, engine_version: str) -> Settled:
    """Whether a unit is done (cached) or failed for these very inputs, from its sidecar.

    No sidecar (or one of another identity or version): the unit runs, nothing is hashed here
    (its worker hashes what it reads).  Otherwise the inputs whose stamps changed are hashed;
    the same fingerprint and outputs holding the bytes they were written with mean done.  A
    done unit whose files were touched gets its sidecar's stamps refreshed, so the next check
    hashes nothing.
    """
    path = sidecar_path(layout, unit.phase, unit.key)
    data = read_sidecar(path)
    if (
        data is None
        or data.get("version") != SIDECAR_VERSION
        or data.get("identity") != identity(unit, engine_version, layout.root)
    ):
        return Settled(None, unit)
    root = layout.root
    known_inputs = by_path(data.get("inputs", []), root)
    digests = input_digests(unit, engine_version, known_inputs, root)
    planned = replace(unit, known=digests.records)
    if data.get("fingerprint") != digests.fingerprint:
        return Settled(None, planned)
    failed = _failed(data, unit, digests.fingerprint)
    if failed is not None:
        return Settled(failed, planned)
    if data.get("state") != "done":
        return Settled(None, planned)
    outputs = _intact_outputs(data.get("outputs", []), root)
    if outputs is None:
        return Settled(None, planned)
    records, hashed_outputs = outputs
    touched = False
    if digests.hashed + hashed_outputs:
        # Refresh the stamps, so the next check hashes nothing.  The files were *touched* when
        # a trusted stamp changed; an untrusted one (written just before it was last hashed)
        # is only re-confirmed.
        recorded = [*known_inputs.values(), *by_path(data.get("outputs", []), root).values()]
        touched = any(r.stamp is not None and r.stamp != stat_stamp(r.path) for r in recorded)
        data["inputs"] = [d.as_list(root) for d in digests.records]
        data["outputs"] = [d.as_list(root) for d in records]
        write_text_atomic(path, json.dumps(data, indent=1, default=str))
    reason = CACHED_SAME_BYTES if touched else CACHED_UNCHANGED
    return Settled(_cached(data, unit, digests.fingerprint, reason, root), planned)


CACHED_UNCHANGED = "inputs and outputs unchanged since the unit ran"
CACHED_SAME_BYTES = "files touched since the unit ran, but their contents are the same"
"""Why a unit was found done (the reason shown in Prefect and the summary)."""


def _intact_outputs(items: Sequence[Any], root: Path) -> tuple[list[FileDigest], int] | None:
    """The recorded outputs, re-checked (None: one is missing or holds other bytes)."""
    records, hashed = [], 0
    for item in items:
        recorded = FileDigest.from_list(item, root) if isinstance(item, list) else None
        if recorded is None:
            return None
        now, did = digest_file(recorded.path, CONTENT, recorded, trusted=False)
        if now.digest != recorded.digest:
            return None
        records.append(now if now.stamp is not None else recorded)
        hashed += did
    return records, hashed


def _cached(data: dict[str, Any], unit: Unit, fp: str, reason: str, root: Path) -> UnitResult:
    return UnitResult(
        phase=unit.phase,
        key=unit.key,
        state="cached",
        fingerprint=fp,
        message=reason,
        wall_s=float(data.get("wall_s", 0.0)),
        peak_mem_mb=float(data.get("peak_mem_mb", 0.0)),
        outputs=tuple(absolute(str(s[0]), root) for s in data.get("outputs", [])),
        summary=data.get("summary", {}),
        threads=int(data.get("threads", 1)),
    )


def done_result(layout: ReleaseLayout, unit: Unit, engine_version: str) -> UnitResult | None:
    """The cached result of a unit whose sidecar says done for its current inputs, or None."""
    result = settle(layout, unit, engine_version).result
    return result if result is not None and result.state == "cached" else None


# -- failure classes: the one list of their names (policies in docs/orchestration.md) -----------
INFRA = FailureClass.INFRA
"""A lost worker, no space, a stale NFS handle: resubmitted up to ``max_attempts`` starts."""
OOM = FailureClass.OOM
"""Out of memory: resubmitted with half the threads, down to one."""
TIMEOUT = FailureClass.TIMEOUT
"""Past its time budget: the phase's timeout policy (bricks: rerun with ``--bail-out``)."""
SCIENCE = FailureClass.SCIENCE
"""Bad data or an unexpected error: recorded, not retried while the inputs are unchanged."""
USAGE = FailureClass.USAGE
"""Bad parameters or configuration."""
ENVIRONMENT = FailureClass.ENVIRONMENT
"""A missing program, Python module or shared library: not the data's fault; not retried
within the run, retried by the next run (after the user installed it)."""
FAILURE_CLASSES = tuple(FailureClass)
"""Every failure class, each with its own policy."""

NO_BLIND_RETRY = (SCIENCE, USAGE)
"""Failure classes a rerun does not retry while the unit's inputs are unchanged.

Not ``environment``: its inputs did not change but the environment did (the tool installed).
"""


def _failed(data: dict[str, Any] | None, unit: Unit, fp: str) -> UnitResult | None:
    """A science (or usage) failure recorded for these very inputs: not retried blindly.

    Changing an input (replacing a bad file) changes the fingerprint and the unit runs again;
    ``lsdr retry`` removes the record after a fix elsewhere (code, configuration).
    """
    if data is None or data.get("state") != "failed" or data.get("fingerprint") != fp:
        return None
    if data.get("failure_class") not in NO_BLIND_RETRY:
        return None
    return UnitResult(
        phase=unit.phase,
        key=unit.key,
        state="failed",
        fingerprint=fp,
        failure_class=str(data.get("failure_class")),
        message=f"{data.get('message')} (failed before with the same inputs; "
        f"`lsdr retry --phase {unit.phase}` after a fix)",
        threads=unit.threads,
    )


def last_failure(layout: ReleaseLayout, phase: str, key: str) -> str | None:
    """The message of a unit's last recorded outcome when it failed (its sidecar), else None.

    Whatever the fingerprint: a downstream phase leaves out what its upstream unit last failed
    to make, until that unit runs again and succeeds.
    """
    data = read_sidecar(sidecar_path(layout, phase, key))
    if data is None or data.get("state") != "failed":
        return None
    return str(data.get("message") or data.get("failure_class") or "failed")


def write_sidecar(
    layout: ReleaseLayout,
    result: UnitResult,
    traceback_text: str = "",
    *,
    unit_identity: str = "",
    inputs: Sequence[FileDigest] = (),
    engine: str = "",
    engine_version: str = "",
) -> Path:
    """Record a finished (done or failed) unit's provenance, atomically.

    ``inputs``: the digests of what it read (as fingerprinted before it ran); its outputs are
    hashed here, by the process that wrote them, with their fresh stamps trusted.  ``engine``:
    the engine that ran it (its reference) and that engine's version.
    """
    outputs, _ = digest_files(result.outputs, CONTENT, trusted=True)
    doc = {
        "version": SIDECAR_VERSION,
        "phase": result.phase,
        "key": result.key,
        "state": result.state,
        "identity": unit_identity,
        "engine": engine,
        "engine_version": engine_version,
        "fingerprint": result.fingerprint,
        "failure_class": result.failure_class,
        "message": result.message,
        "wall_s": round(result.wall_s, 4),
        "peak_mem_mb": round(result.peak_mem_mb, 1),
        "threads": result.threads,
        "inputs": [d.as_list(layout.root) for d in inputs],
        "outputs": [d.as_list(layout.root) for d in outputs],
        "summary": dict(result.summary),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "finished": time.time(),
    }
    if traceback_text:
        doc["traceback"] = traceback_text
    path = sidecar_path(layout, result.phase, result.key)
    return write_text_atomic(path, json.dumps(doc, indent=1, default=str))


def amend_outputs(layout: ReleaseLayout, phase: str, key: str, paths: Sequence[Path]) -> bool:
    """Re-stamp files a later phase rewrote in place in a done unit's sidecar.

    The bright-neighbour step updates the tractor phase's maskbits image, catalogue and
    checksum file of a brick, as legacypipe's post-processing does; without this the tractor
    unit would look unfinished and a rerun would remake the brick.  Only outputs the sidecar
    already lists are re-stamped; returns False when there is no done sidecar to amend.
    """
    path = sidecar_path(layout, phase, key)
    data = read_sidecar(path)
    if data is None or data.get("state") != "done":
        return False
    root = layout.root
    wanted = {str(p) for p in paths}
    data["outputs"] = [
        digest_file(name, CONTENT, trusted=True)[0].as_list(root) if name in wanted else item
        for item in data.get("outputs", [])
        for name in [absolute(str(item[0]), root)]
    ]
    write_text_atomic(path, json.dumps(data, indent=1, default=str))
    return True


def iter_sidecars(layout: ReleaseLayout) -> Iterator[dict[str, Any]]:
    """Every readable sidecar of the release (for ``lsdr ledger rebuild``)."""
    root = layout.state_dir / "provenance"
    if not root.exists():
        return
    for path in sorted(root.glob("*/*.json")):
        data = read_sidecar(path)
        if data is not None and "phase" in data and "key" in data:
            yield data


# -- classifying failures ----------------------------------------------------------------------
INFRA_ERRNOS = {errno.ENOSPC, errno.EIO, errno.ESTALE, errno.EDQUOT}


def classify(err: BaseException) -> str:
    """The failure class of an exception raised by a unit (see docs/orchestration.md)."""
    if isinstance(err, MemoryError) or _out_of_address_space(err):
        return OOM  # first: an ImportError under the memory limit is not a missing module
    if missing_dependency(err) is not None:
        return ENVIRONMENT
    if isinstance(err, UsageError):
        return USAGE
    if isinstance(err, SurveyError | subprocess.CalledProcessError):
        return SCIENCE
    if isinstance(err, TimeoutError | subprocess.TimeoutExpired):
        return TIMEOUT
    if isinstance(err, OSError) and err.errno in INFRA_ERRNOS:
        return INFRA
    return SCIENCE


OUT_OF_MEMORY_TEXTS = ("failed to map segment", "cannot allocate memory")
"""How the loader and the C library say ENOMEM when no MemoryError is raised (a late import of an
extension module under the unit's address-space limit fails with an ImportError)."""


def _out_of_address_space(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno == errno.ENOMEM:
        return True
    if isinstance(err, ImportError | OSError):
        text = str(err).lower()
        return any(t in text for t in OUT_OF_MEMORY_TEXTS)
    return False


SHARED_OBJECT_TEXT = ": cannot open shared object file"
"""How the dynamic loader (an extension module's ImportError, ``ctypes``' OSError) says a shared
library is missing: ``libfoo.so.1: cannot open shared object file: No such file or directory``."""

_EXEC_FRAMES = {("subprocess", "_execute_child"), ("subprocess", "_posix_spawn")}
"""Where ``subprocess`` raises the OSError of a failed exec (module, function)."""


def missing_dependency(err: BaseException) -> MissingDependencyError | None:
    """The missing dependency an exception reveals, or None when it is not about one.

    A :class:`MissingDependencyError`; an ``ImportError`` (a module, or the shared library an
    extension module links); a ``FileNotFoundError``/``PermissionError`` from exec'ing a
    subprocess, whose ``filename`` is the executable; ``ctypes``' OSError for a library.
    Out-of-memory import errors are not (class ``oom``).
    """
    if isinstance(err, MissingDependencyError):
        return err
    if _out_of_address_space(err):
        return None
    text = " ".join(str(err).split())
    if isinstance(err, ImportError | OSError) and SHARED_OBJECT_TEXT in text:
        library = text.split(SHARED_OBJECT_TEXT, 1)[0].rsplit(": ", 1)[-1]
        return MissingDependencyError("library", library, reason=text)
    if isinstance(err, ImportError):
        return MissingDependencyError("module", err.name or "(unnamed)", reason=text)
    if isinstance(err, FileNotFoundError | PermissionError) and _failed_exec(err):
        executable = os.fsdecode(err.filename)
        if isinstance(err, PermissionError):
            return MissingDependencyError("executable", executable, reason=err.strerror or text)
        if os.path.exists(executable):  # ENOENT for a file that exists: its #! interpreter
            return MissingDependencyError(
                "executable", executable, reason="its #! interpreter was not found"
            )
        return MissingDependencyError("executable", executable)
    return None


def _failed_exec(err: OSError) -> bool:
    """Whether an OSError comes from exec'ing a program (not a chdir to ``cwd``, not a file)."""
    if err.filename is None or err.__traceback__ is None:
        return False
    tb = err.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    frame = tb.tb_frame
    if (frame.f_globals.get("__name__"), frame.f_code.co_name) not in _EXEC_FRAMES:
        return False
    return bool(err.filename != frame.f_locals.get("cwd"))


def one_line(err: BaseException) -> str:
    """A one-line reason: the message, plus where it was raised for unexpected errors.

    A missing dependency is named with the command that installs it, where lsdr knows one.
    """
    text = " ".join(str(err).split()) or type(err).__name__
    missing = missing_dependency(err)
    if missing is not None:
        return str(missing)
    if isinstance(err, SurveyError):
        return text
    if isinstance(err, MemoryError):
        return f"out of memory (MemoryError{': ' + text if str(err) else ''})"
    if _out_of_address_space(err):
        return f"out of memory ({type(err).__name__}: {text})"
    frames = traceback.extract_tb(err.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"{type(err).__name__}: {text}{where}"


# -- execution ----------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _vm_size_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@contextmanager
def memory_limit(limit_mb: int | None) -> Iterator[None]:
    """Limit this process's address space to its current size plus ``limit_mb`` for a unit.

    Allocations beyond it raise a real ``MemoryError`` (class ``oom``) instead of the node's
    OOM killer taking the whole worker.  The limit applies to the worker process, so it is
    meant for workers running one unit at a time (``threads_per_worker = 1``).
    """
    if limit_mb is None:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (_vm_size_bytes() + limit_mb * 1024 * 1024, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def execute_unit(
    fn: Callable[[ReleaseLayout, Unit], UnitOutput],
    layout: ReleaseLayout,
    unit: Unit,
    engine_version: str,
    *,
    memory_limit_mb: int | None = None,
) -> UnitResult:
    """Run one unit unless its sidecar says it is done; never raises for a unit's failure.

    The inputs are fingerprinted before the unit runs (reusing the planner's digests of
    unchanged files), and those digests are what its sidecar records as read.
    """
    settled = settle(layout, unit, engine_version)
    if settled.result is not None and settled.result.state == "cached":
        return settled.result
    digests = input_digests(settled.unit, engine_version, root=layout.root)
    provenance: dict[str, Any] = {
        "unit_identity": identity(unit, engine_version, layout.root),
        "inputs": digests.records,
        "engine": unit.engine,
        "engine_version": engine_version,
    }
    failed = partial(
        UnitResult, phase=unit.phase, key=unit.key, state="failed", fingerprint=digests.fingerprint
    )
    start = time.monotonic()
    try:
        if unit.plan_error is not None:
            raise InputFileError(unit.plan_error)
        with memory_limit(memory_limit_mb):
            output = fn(layout, unit)
    except Exception as err:
        # MemoryError is an Exception too; anything else (KeyboardInterrupt) propagates.
        result = failed(
            failure_class=classify(err),
            message=one_line(err),
            wall_s=time.monotonic() - start,
            peak_mem_mb=peak_rss_mb(),
            threads=unit.threads,
        )
        write_sidecar(layout, result, traceback.format_exc(), **provenance)
        return result
    if output.outcome is Outcome.FAILED:
        # An engine's failure without an exception (a command's exit status): its own class.
        result = failed(
            failure_class=output.failure_class,
            message=output.message or f"{unit.phase} {unit.key} failed ({output.failure_class})",
            wall_s=time.monotonic() - start,
            peak_mem_mb=peak_rss_mb(),
            summary=dict(output.summary),
            threads=unit.threads,
        )
        write_sidecar(layout, result, **provenance)
        return result
    result = UnitResult(
        phase=unit.phase,
        key=unit.key,
        state="done",
        fingerprint=digests.fingerprint,
        wall_s=time.monotonic() - start,
        peak_mem_mb=peak_rss_mb(),
        outputs=tuple(str(p) for p in output.paths),
        summary=dict(output.summary),
        threads=unit.threads,
    )
    write_sidecar(layout, result, **provenance)
    return result


def engine_version(engine: str) -> str:
    """The version of the engine named ``engine`` that goes into every fingerprint."""
    return get_engine(engine).version


def on_engine(units: Sequence[Unit], engine: str) -> list[Unit]:
    """The units, each to run with the engine named in the settings.

    Each carries the engine as a reference that any worker resolves (``engine_reference``).
    """
    reference = engine_reference(engine)
    return [replace(u, engine=reference) for u in units]


def unit_engine(unit: Unit) -> Engine:
    """The engine that runs a unit's science (resolved in this process: a worker's)."""
    return get_engine(unit.engine)


def batches(units: Sequence[Unit], size: int) -> list[list[Unit]]:
    """Split units into batches of at most ``size`` (one Prefect task each)."""
    return [list(units[i : i + size]) for i in range(0, len(units), size)]


def rebuild_ledger(layout: ReleaseLayout, ledger: Any) -> dict[str, int]:
    """Recreate the ledger's rows from the release's provenance sidecars; units per phase.

    A sidecar knows a unit's last state, failure, cost and outputs, not how many times it was
    started, so attempts restart at one.
    """
    by_phase: dict[str, list[UnitFinish]] = {}
    for doc in iter_sidecars(layout):
        state = "failed" if doc.get("state") == "failed" else "done"
        by_phase.setdefault(str(doc["phase"]), []).append(
            UnitFinish(
                key=str(doc["key"]),
                state=state,
                fingerprint=doc.get("fingerprint"),
                failure_class=doc.get("failure_class"),
                message=doc.get("message"),
                wall_s=doc.get("wall_s"),
                peak_mem_mb=doc.get("peak_mem_mb"),
                outputs=tuple(absolute(str(s[0]), layout.root) for s in doc.get("outputs", [])),
                threads=doc.get("threads"),
            )
        )
    for phase, rows in by_phase.items():
        ledger.replace_phase(phase, rows, {})
    return {phase: len(rows) for phase, rows in by_phase.items()}
