"""Failure classes: their names, and the class of an exception a unit raised.

The :class:`~lsdr.survey.core.errors.FailureClass` names, one constant each (their policies are in
``docs/orchestration.md``), which of them a rerun does not retry blindly, and how an exception
becomes a class and a one-line reason (a missing dependency named with its install command).
No Prefect here.
"""

from __future__ import annotations

import errno
import os
import subprocess
import traceback
from collections.abc import Sequence
from pathlib import Path

from lsdr.survey.core.errors import FailureClass, MissingDependencyError, SurveyError, UsageError
from lsdr.survey.core.fileio import NO_SPACE_ERRNOS

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
"""A missing program, Python module or shared library, or a path the run may not use
(EACCES, EROFS, a missing input directory): not the data's fault; not retried within the run,
retried by the next run (after the user installed it or fixed the path)."""
FAILURE_CLASSES = tuple(FailureClass)
"""Every failure class, each with its own policy."""

NO_BLIND_RETRY = (SCIENCE, USAGE)
"""Failure classes a rerun does not retry while the unit's inputs are unchanged.

Not ``environment``: its inputs did not change but the environment did (the tool installed).
"""


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
    if unusable_path(err) is not None:  # before SurveyError: a reader's error from EACCES
        return ENVIRONMENT
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


def _chain(err: BaseException) -> list[BaseException]:
    """``err`` and the exceptions it was raised from (``raise … from``), outermost first."""
    out: list[BaseException] = []
    while err is not None and err not in out:
        out.append(err)
        err = err.__cause__  # type: ignore[assignment]
    return out


def unusable_path(err: BaseException) -> str | None:
    """One line naming the path and the fix when ``err`` (or its cause) is a path not usable.

    Permission denied (EACCES, EPERM), a read-only file system (EROFS), or a file whose
    directory does not exist (an input directory not mounted or moved); else None.

    A ``PermissionError`` from exec'ing a program is a missing dependency, not this.
    """
    for e in _chain(err):
        if not isinstance(e, OSError) or e.filename is None:
            continue
        path = os.fsdecode(e.filename)
        if e.errno in (errno.EACCES, errno.EPERM):
            return (
                f"permission denied: {path} ({errno.errorcode[e.errno]}, uid {os.geteuid()}): "
                "give the user running lsdr access to it, then rerun"
            )
        if e.errno == errno.EROFS:
            return (
                f"read-only file system: {path} (EROFS): remount it read-write or move the "
                "release to a writable file system, then rerun"
            )
        if e.errno == errno.ENOENT:
            missing = missing_input_directory([path])
            if missing is not None:
                return missing
    return None


def no_space_path(err: BaseException) -> str | None:
    """The file a write could not make for want of space (ENOSPC, EDQUOT), or None.

    Such a unit is resubmitted once its file system has room (``flows/space_policy.py``).

    ``atomic_path`` names the product it was writing; an error without a file name (a plain
    ``write``) is ``""``: the caller names the release.
    """
    for e in _chain(err):
        if isinstance(e, OSError) and e.errno in NO_SPACE_ERRNOS:
            return os.fsdecode(e.filename) if e.filename is not None else ""
    return None


def missing_input_directory(inputs: Sequence[str]) -> str | None:
    """One line naming the first input directory that does not exist, and the fix; else None.

    For a unit that failed reading its inputs: a directory gone (a file system not mounted,
    a tree moved) is the environment's fault, unlike one missing or bad file in it.
    """
    for path in inputs:
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            return (
                f"directory {parent} does not exist (reading {path}): mount or restore it, "
                "then rerun"
            )
    return None


def one_line(err: BaseException) -> str:
    """A one-line reason: the message, plus where it was raised for unexpected errors.

    A missing dependency is named with the command that installs it, where lsdr knows one; a
    path the run may not use with the path and the fix; a full disk with the file it refused.
    """
    text = " ".join(str(err).split()) or type(err).__name__
    missing = missing_dependency(err)
    if missing is not None:
        return str(missing)
    unusable = unusable_path(err)
    if unusable is not None:
        return unusable
    full = no_space_path(err)
    if full is not None:
        code = next(e.errno for e in _chain(err) if isinstance(e, OSError) and e.errno)
        return f"{os.strerror(code).lower()} ({errno.errorcode[code]}) writing {full or 'a file'}"
    if isinstance(err, SurveyError):
        return text
    if isinstance(err, MemoryError):
        return f"out of memory (MemoryError{': ' + text if str(err) else ''})"
    if _out_of_address_space(err):
        return f"out of memory ({type(err).__name__}: {text})"
    frames = traceback.extract_tb(err.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"{type(err).__name__}: {text}{where}"


def attempts_exhausted(phase: str, max_attempts: int, attempts: int, reason: str) -> str:
    """The message of a unit whose worker was lost at its last allowed start."""
    return (
        f"max_attempts ({max_attempts}) reached: its worker was lost at start {attempts} "
        f"({reason}); after the fix, 'lsdr retry --phase {phase}' re-queues it with new attempts"
    )
