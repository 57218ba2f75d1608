"""A unit that writes a FITS table, and real file systems to write it on: full, read-only.

``table_unit`` reads its input file and writes ``probe-out/<key>/table.fits`` with ``fitsio``
through ``atomic_path``, as the engines write their products (CFITSIO loses a failed write's
errno).  :func:`tmpfs` mounts a small real file system (a tmpfs; we are root here and in CI),
:func:`fill` fills it to the last byte, :func:`read_only` remounts it read-only; each mount is
unmounted when its ``with`` ends, whatever happened.
"""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from lsdr.survey.core.errors import InputFileError
from lsdr.survey.core.fileio import atomic_path
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.unit import Unit, UnitOutput

ROWS = 4096
"""Rows of each unit's table: 3 float64 columns, ~100 KiB, more than a full file system has."""


def table_of(layout: ReleaseLayout, key: str) -> Path:
    """Where ``table_unit`` writes unit ``key``'s table."""
    return layout.root / "probe-out" / key / "table.fits"


def table_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """A table whose values follow from the unit's input bytes (equal runs write equal tables)."""
    import fitsio

    src = Path(unit.inputs[0])
    if not src.is_file():
        raise InputFileError(f"{src}: input not found")
    data = np.frombuffer(src.read_bytes(), np.uint8).astype(np.float64)
    rows = np.zeros(ROWS, dtype=[("i", "i8"), ("x", "f8"), ("y", "f8")])
    rows["i"] = np.arange(ROWS)
    rows["x"] = np.resize(data, ROWS) * 0.5
    rows["y"] = np.cumsum(rows["x"])
    out = table_of(layout, unit.key)
    with atomic_path(out) as tmp:
        fitsio.write(str(tmp), rows, extname="TABLE", clobber=True)
    return UnitOutput((out,), {"rows": ROWS})


def _run(*argv: str) -> None:
    done = subprocess.run(list(argv), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}; these tests "
            "mount file systems and need root (CAP_SYS_ADMIN), as on this machine and in CI"
        )


@contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` (``1m``) mounted on ``where`` (made if needed), unmounted after."""
    where.mkdir(parents=True, exist_ok=True)
    _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where))
    try:
        yield where
    finally:
        _run("umount", "--lazy", str(where))


def fill(where: Path) -> Path:
    """Fill the file system of ``where`` to its last byte with one file (returned)."""
    filler = where / "filler.bin"
    block = b"\0" * 4096
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(block)
        except OSError as err:
            if err.errno != errno.ENOSPC:
                raise
    with open(filler, "ab", buffering=0) as f:  # the last bytes, below a block
        try:
            while True:
                f.write(b"\0")
        except OSError as err:
            if err.errno != errno.ENOSPC:
                raise
    return filler


def read_only(where: Path) -> None:
    """Remount the file system mounted on ``where`` read-only (EROFS for every write)."""
    _run("mount", "-o", "remount,ro", str(where))
