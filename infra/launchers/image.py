"""Container image references (``<repo>:<tag>``), checked before any launcher names one.

An image reference ends up inside an argument (``--image=docker:<repo>:<tag>``) and, for Shifter,
in a batch script's ``#SBATCH`` line, so it is held to the registry's own grammar: no spaces, no
shell metacharacters, a non-empty repository and an explicit tag (``latest`` changes under a
release, and the engine's version is part of every unit's fingerprint).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from lsdr.survey.core.errors import UsageError

EXAMPLE_IMAGE = "legacysurvey/legacypipe:DR11.1.0"
"""The form an image reference takes, quoted in every error message about one."""

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"(?:(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+|localhost)(?::[0-9]+)?|[A-Za-z0-9-]+:[0-9]+)"
_REPO = re.compile(rf"(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*")
"""A repository: an optional registry host (a dotted name, ``localhost`` or with a port), then
lowercase path components."""

_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
"""A tag, as the OCI distribution grammar has it."""

_ALLOWED = re.compile(r"[A-Za-z0-9._/:-]")
"""The only characters an image reference may contain."""


def _refuse(reference: str, why: str) -> UsageError:
    """The one-line error for a bad image reference: the value, what is wrong, the fix."""
    return UsageError(
        f"container image {reference!r} {why}: give <repo>:<tag>, as in {EXAMPLE_IMAGE!r}"
    )


@dataclass(frozen=True)
class ContainerImage:
    """A container image by repository and tag, both checked when it is made."""

    repo: str
    tag: str

    def __post_init__(self) -> None:
        """Refuse an empty repository, a bad character or a tag outside the registry grammar."""
        reference = f"{self.repo}:{self.tag}"
        for char in reference:
            if not _ALLOWED.fullmatch(char):
                raise _refuse(reference, f"contains {char!r}, which an image name cannot")
        if not self.repo:
            raise _refuse(reference, "has an empty repo")
        if not _REPO.fullmatch(self.repo):
            raise _refuse(reference, f"has repo {self.repo!r}, which is not a repository name")
        if not _TAG.fullmatch(self.tag):
            raise _refuse(reference, f"has tag {self.tag!r}, which is not an image tag")

    @property
    def reference(self) -> str:
        """``<repo>:<tag>``, as podman, docker and ``docker://`` URIs take it."""
        return f"{self.repo}:{self.tag}"

    @property
    def shifter(self) -> str:
        """``docker:<repo>:<tag>``, as Shifter's ``--image`` takes it."""
        return f"docker:{self.reference}"


def parse_image(reference: str) -> ContainerImage:
    """The image named by ``<repo>:<tag>``; anything else is a one-line :class:`UsageError`."""
    for char in reference:
        if not _ALLOWED.fullmatch(char):
            raise _refuse(reference, f"contains {char!r}, which an image name cannot")
    repo, colon, tag = reference.rpartition(":")
    if not colon or "/" in tag:
        raise _refuse(reference, "has no tag")
    return ContainerImage(repo, tag)


def parse_sif(reference: str) -> PurePosixPath:
    """An Apptainer image file: an absolute path ending in ``.sif``, else a :class:`UsageError`."""
    path = PurePosixPath(reference)
    if not path.is_absolute() or path.suffix != ".sif":
        raise UsageError(
            f"apptainer image {reference!r} is not an absolute path to a .sif file: give one, "
            f"as in '/global/common/software/legacypipe.sif', or <repo>:<tag> ({EXAMPLE_IMAGE!r})"
        )
    return path
