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
from pathlib import Path

from lsdr.survey.core.errors import FailureClass, MissingDependencyError, SurveyError, UsageError

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
