"""Caching on what a unit reads: content digests behind a stamp check, and early cutoff.

Real files on disk, real units through ``execute_unit`` and ``settle``; whether a unit ran is
read from a count its function keeps, never from the code under test.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import fitsio
import numpy as np

from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks import digests
from lsdr.tasks.execute import execute_unit
from lsdr.tasks.sidecars import CACHED_SAME_BYTES, CACHED_UNCHANGED, settle
from lsdr.tasks.unit import Unit, UnitOutput

RUNS: dict[str, int] = {}
"""How many times each probe unit's function ran (this process)."""


def copy_upper(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Write the unit's input in upper case to ``<key>.out`` (a unit with one output)."""
    RUNS[unit.key] = RUNS.get(unit.key, 0) + 1
    out = layout.root / f"{unit.key}.out"
    out.write_bytes(Path(unit.inputs[0]).read_bytes().upper())
    return UnitOutput((out,))


def age(path: Path, seconds: float = 60.0) -> None:
    """Set a file's mtime into the past (its ctime stays now: the racy window still applies)."""
    t = time.time() - seconds
    os.utime(path, (t, t))


def settle_until_trusted(layout: ReleaseLayout, unit: Unit) -> None:
    """Wait out the racy window so the stamps settle records are trusted."""
    time.sleep(digests.RACY_S + 0.2)
    digests._MEMO.clear()
    settle(layout, unit, "v1")


def test_touched_input_with_the_same_bytes_leaves_the_unit_done(tmp_path: Path) -> None:
    """Copying a file over itself (new mtime, ctime, inode): cached, reason says the same bytes."""
    layout = ReleaseLayout(tmp_path)
    src = tmp_path / "a.txt"
    src.write_bytes(b"abc")
    unit = Unit("probe", "touch", (str(src),))
    RUNS.clear()
    assert execute_unit(copy_upper, layout, unit, "v1").state == "done"
    assert (tmp_path / "touch.out").read_bytes() == b"ABC"
    settle_until_trusted(layout, unit)
    assert settle(layout, unit, "v1").result.message == CACHED_UNCHANGED  # type: ignore[union-attr]

    copy = tmp_path / "a.copy"
    copy.write_bytes(src.read_bytes())
    copy.replace(src)
    digests._MEMO.clear()
    result = settle(layout, unit, "v1").result
    assert result is not None and result.state == "cached" and result.message == CACHED_SAME_BYTES
    assert execute_unit(copy_upper, layout, unit, "v1").state == "cached"
    assert RUNS["touch"] == 1


def test_changed_bytes_rerun_even_with_size_and_mtime_put_back(tmp_path: Path) -> None:
    """Same size, mtime restored by hand: the ctime still tells, the content hash decides."""
    layout = ReleaseLayout(tmp_path)
    src = tmp_path / "a.txt"
    src.write_bytes(b"abc")
    age(src)
    unit = Unit("probe", "sneaky", (str(src),))
    RUNS.clear()
    execute_unit(copy_upper, layout, unit, "v1")
    settle_until_trusted(layout, unit)
    before = os.stat(src)
    src.write_bytes(b"xyz")
    os.utime(src, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(src).st_size == before.st_size
    assert settle(layout, unit, "v1").result is None
    assert execute_unit(copy_upper, layout, unit, "v1").state == "done"
    assert (tmp_path / "sneaky.out").read_bytes() == b"XYZ"
    assert RUNS["sneaky"] == 2


def test_an_output_replaced_by_other_bytes_makes_the_unit_run_again(tmp_path: Path) -> None:
    """Outputs are checked by content too: a changed product is remade."""
    layout = ReleaseLayout(tmp_path)
    src = tmp_path / "a.txt"
    src.write_bytes(b"abc")
    unit = Unit("probe", "product", (str(src),))
    execute_unit(copy_upper, layout, unit, "v1")
    (tmp_path / "product.out").write_bytes(b"ABD")
    assert settle(layout, unit, "v1").result is None
    execute_unit(copy_upper, layout, unit, "v1")
    assert (tmp_path / "product.out").read_bytes() == b"ABC"


def test_a_unit_whose_output_comes_out_identical_stops_the_cascade(tmp_path: Path) -> None:
    """A reruns on a changed input but writes the same bytes: B, reading A's output, stays done."""
    layout = ReleaseLayout(tmp_path)
    src = tmp_path / "a.txt"
    src.write_bytes(b"abc")
    first = Unit("probe", "first", (str(src),))
    second = Unit("probe", "second", (str(tmp_path / "first.out"),))
    RUNS.clear()
    execute_unit(copy_upper, layout, first, "v1")
    execute_unit(copy_upper, layout, second, "v1")
    src.write_bytes(b"ABC")  # other bytes, same upper-case output
    assert execute_unit(copy_upper, layout, first, "v1").state == "done"
    assert execute_unit(copy_upper, layout, second, "v1").state == "cached"
    assert RUNS == {"first": 2, "second": 1}


def test_sidecar_records_what_was_read_and_written(tmp_path: Path) -> None:
    """The sidecar lists each input and output with its sha256, named relative to the release."""
    import hashlib
    import json

    from lsdr.tasks.sidecars import sidecar_path

    layout = ReleaseLayout(tmp_path)
    src = tmp_path / "a.txt"
    src.write_bytes(b"abc")
    unit = Unit("probe", "record", (str(src),))
    execute_unit(copy_upper, layout, unit, "v1")
    doc = json.loads(sidecar_path(layout, "probe", "record").read_text())
    assert [i[:2] for i in doc["inputs"]] == [
        ["a.txt", "sha256:" + hashlib.sha256(b"abc").hexdigest()]
    ]
    assert [o[:2] for o in doc["outputs"]] == [
        ["record.out", "sha256:" + hashlib.sha256(b"ABC").hexdigest()]
    ]


def test_a_release_copied_elsewhere_keeps_its_units_done(tmp_path: Path) -> None:
    """Paths count relative to the release: a copy (new stamps, same bytes) is found done."""
    import shutil

    old = tmp_path / "scratch"
    old.mkdir()
    (old / "a.txt").write_bytes(b"abc")
    unit = Unit("probe", "moved", (str(old / "a.txt"),))
    RUNS.clear()
    execute_unit(copy_upper, ReleaseLayout(old), unit, "v1")
    new = tmp_path / "cfs"
    shutil.copytree(old, new)
    moved = Unit("probe", "moved", (str(new / "a.txt"),))
    result = execute_unit(copy_upper, ReleaseLayout(new), moved, "v1")
    assert result.state == "cached" and result.outputs == (str(new / "moved.out"),)
    assert RUNS == {"moved": 1}


def test_a_missing_input_that_appears_reruns_the_unit(tmp_path: Path) -> None:
    """A unit may depend on a file's absence (a per-CCD calib before the merged one exists)."""
    layout = ReleaseLayout(tmp_path)
    src = tmp_path / "a.txt"
    src.write_bytes(b"abc")
    later = tmp_path / "later.txt"
    unit = Unit("probe", "absent", (str(src), str(later)))
    execute_unit(copy_upper, layout, unit, "v1")
    assert settle(layout, unit, "v1").result is not None
    later.write_bytes(b"now here")
    assert settle(layout, unit, "v1").result is None


def test_header_digest_follows_the_primary_header_not_the_pixels(tmp_path: Path) -> None:
    """Discovery's view of an image: new pixels change nothing, a header card does."""
    path = tmp_path / "img.fits"

    def write(pixels: float, expnum: int) -> None:
        with fitsio.FITS(str(path), "rw", clobber=True) as f:
            f.write(None, header={"EXPNUM": expnum})
            f.write(np.full((8, 8), pixels, np.float32), extname="CCD1")

    write(1.0, 100)
    first = digests.header_digest(path)
    whole = digests.content_digest(path)
    write(2.0, 100)
    assert digests.header_digest(path) == first
    assert digests.content_digest(path) != whole
    write(2.0, 101)
    assert digests.header_digest(path) != first
    assert first.startswith("header:")


def test_a_stamp_taken_in_the_racy_window_is_not_trusted(tmp_path: Path) -> None:
    """A file changed just now is hashed but its stamp dropped; a unit's own output is kept."""
    path = tmp_path / "fresh.txt"
    path.write_bytes(b"new")
    digests._MEMO.clear()
    record, hashed = digests.digest_file(path)
    assert hashed and record.stamp is None
    record, hashed = digests.digest_file(path)
    assert hashed  # hashed again: nothing vouched for it
    trusted, _ = digests.digest_file(path, trusted=True)
    assert trusted.stamp is not None
