"""Publish a release: copy its published files to a destination with Debian's ``rsync``.

``rsync -a --no-links --out-format=%n`` plus one ``--exclude`` per unpublished path of
:mod:`lsdr.survey.posttractor.releasefiles` (``images/``, orchestration state, raw logs, …), as an
argument list.  ``--no-links`` drops every symbolic link (the ``images/`` links to the camera
archives, ``depthcut/``'s links).  A dry run (``--dry-run``) lists what would be copied and writes
nothing.  The destination is anything rsync accepts (a directory, ``host:path``); a local
destination's parent must exist.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lsdr.survey.core.errors import InputFileError, MissingDependencyError, SurveyError, UsageError
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.posttractor.releasefiles import rsync_excludes

RSYNC = "rsync"
"""The rsync executable (Debian package ``rsync``)."""


@dataclass(frozen=True)
class PublishResult:
    """What one rsync run copied (or, for a dry run, would copy): files relative to the root."""

    destination: str
    dry_run: bool
    files: tuple[str, ...]
    n_files: int
    command: tuple[str, ...]


def check_destination(layout: ReleaseLayout, destination: str) -> str:
    """A destination rsync takes as one: not empty, not an option, not the release itself.

    A local destination inside the release would be copied into itself by the next publish.
    """
    if not destination or destination.startswith("-"):
        raise UsageError(f"bad publish destination {destination!r}")
    head = destination.split("/", 1)[0]
    remote = destination.startswith("rsync://") or ":" in head  # rsync's host:path rule
    if not remote and Path(destination).resolve().is_relative_to(layout.root.resolve()):
        raise UsageError(f"publish destination {destination!r} is inside the release {layout.root}")
    return destination


def rsync_command(layout: ReleaseLayout, destination: str, *, dry_run: bool) -> list[str]:
    """The rsync argument list that publishes ``layout``'s release to ``destination``."""
    check_destination(layout, destination)
    exe = shutil.which(RSYNC)
    if exe is None:
        # Class ``environment``: the message names the Debian package (errors.KNOWN_INSTALLS).
        raise MissingDependencyError("executable", RSYNC)
    args = [exe, "-a", "--no-links", "--out-format=%n", *rsync_excludes()]
    if dry_run:
        args.append("--dry-run")
    # A trailing slash copies the release's contents, not the directory itself.
    args += ["--", f"{layout.root}/", destination]
    return args


def publish(layout: ReleaseLayout, destination: str, *, dry_run: bool) -> PublishResult:
    """rsync the release to ``destination``; the files copied (or that a dry run would copy).

    An rsync failure is a :class:`SurveyError` carrying its exit status and error output.
    """
    if not layout.root.is_dir():
        raise InputFileError(f"{layout.root}: release directory not found")
    command = rsync_command(layout, destination, dry_run=dry_run)
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SurveyError(
            f"rsync to {destination} failed (exit {proc.returncode}): {proc.stderr.strip()}"
        )
    files = tuple(
        line
        for line in proc.stdout.splitlines()
        if line and not line.endswith("/") and not line.startswith("skipping non-regular")
    )
    return PublishResult(
        destination=destination,
        dry_run=dry_run,
        files=files,
        n_files=len(files),
        command=tuple(command),
    )


def published_tree(destination: Path) -> set[str]:
    """Every regular file under a local destination, relative to it (for checks and tests)."""
    root = Path(destination)
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
