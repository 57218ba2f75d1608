"""Compare two releases made by ``lsdr demo`` by value, file by file; report what differs.

Issue 15 (a refactor) asks that the demo's catalogues, images and tables hold the same values
before and after: FITS tables are compared column by column, FITS images (tile-compressed ones
on their decompressed pixels) pixel by pixel, header cards by value, text after replacing A's
absolute root by B's, and PNG/JPEG pictures on their decoded pixels (reported apart, as
"images for people").  Files only in one release are differences too.

Importable by tests (``tests/`` is on ``sys.path``): :func:`compare_releases` returns a
:class:`Comparison`.  As a command: ``python tests/release_values.py A B`` prints, per
differing file, what differs and exits 0 if all is equal, 1 otherwise.

It imports nothing from lsdr on purpose: the code it checks is the code being refactored.
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import fitsio
import numpy as np

FILES = "files"
"""Category of a file that is only in one of the two releases."""
VALUES = "values"
"""Category of a difference in a product's values: FITS data or cards, text, other bytes."""
PICTURES = "images for people"
"""Category of a difference in a PNG/JPEG picture (or in its checksum): reported apart."""

RUN_STATE_DIRS = frozenset({"state", "checkpoints", "pickles"})
"""Top-level directories left out entirely, even from the set of files: the run's state (ledger,
Prefect database and its ``-wal``/``-shm`` files, provenance sidecars with times and hosts) and
runbrick's intermediate checkpoints and pickles, which are not products of the release."""

NOT_BY_VALUE_DIRS = frozenset({"images", "gaia", "truth", "logs"})
"""Top-level directories whose files are compared as a set of names only, not by content:
the simulated inputs (``images/`` is most of the release's bytes), the simulator's record
(``truth/simulation.json`` holds absolute paths and the inputs' mtimes) and the logs (they
record the run: times, paths; the tarball's gzip header and members carry mtimes, so its
checksum listing ``logs/*.sha256sum`` changes with every run)."""

FITS_SUFFIXES = (".fits", ".fit", ".fits.gz", ".fit.gz", ".fits.fz", ".fz")
"""Names of FITS files (``.fits.fz`` is tile-compressed, ``.gz`` gzipped whole)."""
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")
"""Names of pictures for people (JPEG colour coadds, PNG plots)."""
TEXT_SUFFIXES = (".txt", ".md", ".sha256sum", ".json", ".csv", ".yaml", ".yml", ".toml")
"""Names of text products (``bricks.txt``, ``image-list.txt``, checksum listings, …)."""

SKIPPED_CARDS = frozenset({"CHECKSUM", "DATASUM", "ZHECKSUM", "ZDATASUM"})
"""Header cards never compared: FITS digests of an HDU's bytes (none of the demo's products has
them today).  They change with any byte, including a compressed heap that may legitimately
differ for equal pixels, and what they guard is compared here directly.

No card of the demo's products embeds the release's absolute path (string values are still
compared after replacing A's root by B's), and the only time-like cards (``PROCDATE``,
``DATE-OBS``, ``MJD-OBS``, ``MJD_MIN``…) hold the simulated exposures' fixed dates, so they are
compared like any other card."""

COMPRESSED_STORAGE_CARDS = frozenset({"PCOUNT", "THEAP"})
"""Cards of a tile-compressed HDU's binary table that describe the compressed byte stream (the
heap's size and start), not the image: skipped, since the decompressed pixels are compared.
For the same reason the ``(maxlen)`` of a variable-length ``TFORMn`` (the longest compressed
tile, e.g. ``1PB(2014)``) is dropped before comparing."""

FREE_TEXT_CARDS = frozenset({"COMMENT", "HISTORY", ""})
"""Cards without a keyword value: compared as an ordered list of texts."""

_VARIABLE_TFORM = re.compile(r"^(\d*[PQ][A-Z])\(\d+\)$")
_CHECKSUM_LINE = re.compile(r"^([0-9a-fA-F]{32,128}) [ *](.+)$")
_SHOWN = 5
"""How many changed lines of a text file one difference shows."""


@dataclass(frozen=True)
class Difference:
    """One thing that differs: the file (relative to the releases' roots) and what differs."""

    path: str
    what: str
    category: str = VALUES


@dataclass
class Comparison:
    """The outcome of comparing release ``a`` with release ``b``."""

    a: Path
    b: Path
    differences: list[Difference] = field(default_factory=list)
    compared: list[str] = field(default_factory=list)
    """Files present in both releases and compared by content."""
    names_only: list[str] = field(default_factory=list)
    """Files present in both releases compared by name only (:data:`NOT_BY_VALUE_DIRS`)."""

    @property
    def equal(self) -> bool:
        """Whether nothing differs, pictures included."""
        return not self.differences

    @property
    def values_equal(self) -> bool:
        """Whether nothing differs but pictures for people (reported apart, see PICTURES)."""
        return not any(d.category != PICTURES for d in self.differences)

    def in_category(self, category: str) -> list[Difference]:
        """The differences of one category (:data:`FILES`, :data:`VALUES`, :data:`PICTURES`)."""
        return [d for d in self.differences if d.category == category]

    def by_path(self) -> dict[str, list[Difference]]:
        """The differences grouped by file, in order of path."""
        grouped: dict[str, list[Difference]] = {}
        for d in sorted(self.differences, key=lambda d: d.path):
            grouped.setdefault(d.path, []).append(d)
        return grouped


# -- the releases' files ------------------------------------------------------------------


def release_files(root: Path) -> set[str]:
    """Every file of a release, as a POSIX path relative to ``root``, but the run's state."""
    found: set[str] = set()
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        if here == root:
            dirs[:] = [d for d in dirs if d not in RUN_STATE_DIRS]
        for name in names:
            found.add((here / name).relative_to(root).as_posix())
    return found


def _kind(rel: str) -> str:
    """Compare a file as ``names``, ``fits``, ``picture``, ``checksums``, ``text``, ``bytes``."""
    name = rel.rsplit("/", 1)[-1].lower()
    if rel.split("/", 1)[0] in NOT_BY_VALUE_DIRS:
        return "names"
    if name.endswith(FITS_SUFFIXES):
        return "fits"
    if name.endswith(PICTURE_SUFFIXES):
        return "picture"
    if name.endswith(".sha256sum"):
        return "checksums"
    if name.endswith(TEXT_SUFFIXES):
        return "text"
    return "bytes"


def root_replacer(a: Path, b: Path) -> Callable[[str], str]:
    """A function replacing A's absolute root (as given and resolved) by B's in a string."""
    pairs = {str(a.absolute()): str(b.absolute()), str(a.resolve()): str(b.resolve())}
    ordered = sorted(pairs.items(), key=lambda kv: -len(kv[0]))

    def replace(text: str) -> str:
        """``text`` with A's root written as B's."""
        for old, new in ordered:
            text = text.replace(old, new)
        return text

    return replace


def compare_releases(a: Path, b: Path) -> Comparison:
    """Compare release ``a`` with release ``b`` by value (see the module's docstring)."""
    a, b = Path(a), Path(b)
    result = Comparison(a=a, b=b)
    files_a, files_b = release_files(a), release_files(b)
    for rel in sorted(files_a - files_b):
        result.differences.append(Difference(rel, "only in A", FILES))
    for rel in sorted(files_b - files_a):
        result.differences.append(Difference(rel, "only in B", FILES))
    replace = root_replacer(a, b)
    for rel in sorted(files_a & files_b):
        kind = _kind(rel)
        if kind == "names":
            result.names_only.append(rel)
            continue
        result.compared.append(rel)
        result.differences.extend(compare_file(a / rel, b / rel, rel, kind, replace))
    return result


def compare_file(
    a: Path, b: Path, rel: str, kind: str, replace: Callable[[str], str]
) -> list[Difference]:
    """Compare a file of both releases as its ``kind`` asks; an unreadable file is a difference."""
    try:
        if kind == "fits":
            return [Difference(rel, what) for what in compare_fits(a, b, replace)]
        if kind == "picture":
            return [Difference(rel, what, PICTURES) for what in compare_pictures(a, b)]
        if kind == "checksums":
            return compare_checksums(a, b, rel, replace)
        if kind == "text":
            return [Difference(rel, what) for what in compare_text(a, b, replace)]
        return [] if a.read_bytes() == b.read_bytes() else [Difference(rel, "bytes differ")]
    except Exception as error:  # a file that cannot be read is reported, not fatal
        return [Difference(rel, f"could not be compared: {type(error).__name__}: {error}")]


# -- FITS ---------------------------------------------------------------------------------


def compare_fits(a: Path, b: Path, replace: Callable[[str], str] = str) -> list[str]:
    """What differs between two FITS files, HDU by HDU: cards, table columns, image pixels."""
    out: list[str] = []
    with fitsio.FITS(str(a)) as fa, fitsio.FITS(str(b)) as fb:
        if len(fa) != len(fb):
            out.append(f"number of HDUs: A {len(fa)}, B {len(fb)}")
        for i in range(min(len(fa), len(fb))):
            ha, hb = fa[i], fb[i]
            label = f"HDU {i}" + (f" ({ha.get_extname()})" if ha.get_extname() else "")
            out.extend(f"{label} {what}" for what in _compare_hdu(ha, hb, replace))
    return out


def _is_compressed(hdu: Any) -> bool:
    """Whether an HDU is a tile-compressed image."""
    return bool(getattr(hdu, "is_compressed", lambda: False)())


def _compare_hdu(ha: Any, hb: Any, replace: Callable[[str], str]) -> list[str]:
    """What differs between two HDUs: their type, cards and data."""
    type_a, type_b = ha.get_exttype(), hb.get_exttype()
    if type_a != type_b:
        return [f"type: A {type_a}, B {type_b}"]
    out: list[str] = []
    if _is_compressed(ha) != _is_compressed(hb):
        out.append(f"tile-compressed: A {_is_compressed(ha)}, B {_is_compressed(hb)}")
    out.extend(compare_headers(ha, hb, replace))
    if type_a == "IMAGE_HDU":
        out.extend(compare_pixels(ha.read(), hb.read()))
    else:
        out.extend(compare_tables(read_table(ha), read_table(hb)))
    return out


def _header_cards(hdu: Any) -> tuple[dict[str, list[Any]], list[str]]:
    """An HDU's cards to compare: keyword values by name, and the free texts in order."""
    compressed = _is_compressed(hdu)
    keyed: dict[str, list[Any]] = {}
    free: list[str] = []
    for record in hdu.read_header().records():
        name = (record.get("name") or "").upper()
        value = record.get("value")
        if name in SKIPPED_CARDS or (compressed and name in COMPRESSED_STORAGE_CARDS):
            continue
        if name in FREE_TEXT_CARDS:
            free.append(str(value if value is not None else record.get("card_string", "")))
            continue
        if compressed and name.startswith("TFORM") and isinstance(value, str):
            value = _VARIABLE_TFORM.sub(r"\1", value.strip())
        keyed.setdefault(name, []).append(value)
    return keyed, free


def _same_card_value(x: Any, y: Any, replace: Callable[[str], str]) -> bool:
    """Whether two card values are equal (strings stripped, with A's root written as B's).

    Booleans only equal booleans; numbers are equal by value, NaN equal to NaN.
    """
    if isinstance(x, bool) or isinstance(y, bool):
        return type(x) is type(y) and x == y
    if isinstance(x, int | float) and isinstance(y, int | float):
        return x == y or (math.isnan(x) and math.isnan(y))
    if isinstance(x, str) and isinstance(y, str):
        return replace(x).strip() == y.strip()
    return x == y


def compare_headers(ha: Any, hb: Any, replace: Callable[[str], str] = str) -> list[str]:
    """What differs between two HDUs' header cards (values, not comments; see SKIPPED_CARDS)."""
    keyed_a, free_a = _header_cards(ha)
    keyed_b, free_b = _header_cards(hb)
    out: list[str] = []
    for name in keyed_a:
        if name not in keyed_b:
            out.append(f"card {name} only in A ({_show(keyed_a[name])})")
            continue
        xs, ys = keyed_a[name], keyed_b[name]
        if len(xs) != len(ys) or not all(
            _same_card_value(x, y, replace) for x, y in zip(xs, ys, strict=True)
        ):
            out.append(f"card {name}: A {_show(xs)}, B {_show(ys)}")
    out.extend(
        f"card {name} only in B ({_show(keyed_b[name])})"
        for name in keyed_b.keys() - keyed_a.keys()
    )
    texts_a = [replace(t).strip() for t in free_a]
    texts_b = [t.strip() for t in free_b]
    if texts_a != texts_b:
        out.append(f"COMMENT/HISTORY cards differ: {_first_text_change(texts_a, texts_b)}")
    return out


def _show(values: Sequence[Any]) -> str:
    """Card values as shown in a report: one value bare, repeated keywords as a list."""
    return repr(values[0]) if len(values) == 1 else repr(list(values))


def read_table(hdu: Any) -> np.ndarray:
    """A table HDU's rows; binary ``A`` columns (libkd's tree blobs) are read as raw bytes.

    fitsio decodes every ``A`` column to ``str`` on Python 3 and has no switch to keep bytes,
    so a column that is not ASCII is read through its low-level reader.
    """
    try:
        return hdu.read()
    except UnicodeDecodeError:
        dtype, _offsets, isvar = hdu.get_rec_dtype()
        if np.any(isvar):
            raise
        rows = np.zeros(hdu.get_nrows(), dtype=dtype)
        hdu._FITS.read_as_rec(hdu._ext + 1, 1, hdu.get_nrows(), rows)
        return rows


def compare_tables(ta: np.ndarray | None, tb: np.ndarray | None) -> list[str]:
    """What differs between two tables: column names and order, rows, dtypes, values."""
    if ta is None or tb is None:
        return [] if ta is None and tb is None else ["data: one side has no rows"]
    names_a, names_b = list(ta.dtype.names or ()), list(tb.dtype.names or ())
    out: list[str] = []
    if names_a != names_b:
        only_a = [n for n in names_a if n not in names_b]
        only_b = [n for n in names_b if n not in names_a]
        if only_a or only_b:
            out.append(f"columns only in A {only_a}, only in B {only_b}")
        else:
            out.append("columns in another order")
    if len(ta) != len(tb):
        out.append(f"rows: A {len(ta)}, B {len(tb)}")
        return out
    for name in [n for n in names_a if n in names_b]:
        what = compare_arrays(ta[name], tb[name], what="rows")
        if what:
            out.append(f"column {name}: {what}")
    return out


def compare_pixels(pa: np.ndarray | None, pb: np.ndarray | None) -> list[str]:
    """What differs between two images' pixels (``None`` for an HDU without data)."""
    if pa is None or pb is None:
        return [] if pa is None and pb is None else ["pixels: one side has no data"]
    what = compare_arrays(pa, pb, what="pixels")
    return [f"pixels: {what}"] if what else []


def _unequal(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Element-wise inequality: NaN equals NaN, strings compared stripped."""
    if x.dtype.kind == "U":
        return np.char.strip(x) != np.char.strip(y)
    if x.dtype.kind in "fc":
        both_nan = np.isnan(x) & np.isnan(y)
        return ~((x == y) | both_nan)
    if x.dtype.kind == "V":
        return np.asarray(
            [a.tobytes() != b.tobytes() for a, b in zip(x.ravel(), y.ravel(), strict=True)]
        ).reshape(x.shape)
    return np.asarray(x != y)


def compare_arrays(x: np.ndarray, y: np.ndarray, what: str = "values") -> str | None:
    """How two arrays (a column or an image) differ, or ``None`` if equal.

    For a column (``what="rows"``) the first axis counts rows; for an image every pixel counts
    and the first differing one is given in numpy ``[row, col]`` order with FITS' 1-based x, y.
    """
    if x.dtype != y.dtype:
        return f"dtype A {x.dtype.str}, B {y.dtype.str}"
    if x.shape != y.shape:
        return f"shape A {x.shape}, B {y.shape}"
    if x.size == 0:
        return None
    neq = _unequal(x, y)
    if not neq.any():
        return None
    first = tuple(int(i) for i in np.argwhere(neq)[0])
    if what == "rows":
        rows = neq.reshape(len(neq), -1).any(axis=1)
        count = f"{int(rows.sum())} of {len(rows)} rows differ"
    else:
        count = f"{int(neq.sum())} of {neq.size} {what} differ"
    text = f"{count}; first at {_where(first, what)}: A {_value(x[first])}, B {_value(y[first])}"
    if x.dtype.kind in "iuf":
        with np.errstate(invalid="ignore", over="ignore"):
            delta = np.where(neq, np.abs(x.astype(np.float64) - y.astype(np.float64)), np.nan)
        if np.isfinite(delta).any():
            worst = tuple(int(i) for i in np.unravel_index(np.nanargmax(delta), delta.shape))
            text += f"; max |A-B| {delta[worst]:.6g} at {_where(worst, what)}"
    return text


def _where(index: tuple[int, ...], what: str) -> str:
    """An element's place: 'row r [element …]' in a column, '[i, j] (FITS x, y)' in an image."""
    if what == "rows":
        return f"row {index[0]}" + (f" element {list(index[1:])}" if len(index) > 1 else "")
    place = f"{list(index)}"
    if len(index) == 2 and what == "pixels":
        place += f" (FITS x={index[1] + 1} y={index[0] + 1})"
    return place


def _value(value: Any) -> str:
    """A table or pixel value as shown in a report: numbers bare, strings quoted."""
    item = value.item() if isinstance(value, np.generic) else value
    return repr(item) if isinstance(item, str | bytes) else str(value)


# -- text, checksum listings, pictures --------------------------------------------------


def _first_text_change(lines_a: Sequence[str], lines_b: Sequence[str]) -> str:
    """The first few changes between two lists of lines, as 'line n: A …, B …'."""
    ops = [
        op for op in difflib.SequenceMatcher(a=lines_a, b=lines_b).get_opcodes() if op[0] != "equal"
    ]
    parts = []
    for tag, i1, i2, j1, j2 in ops[:_SHOWN]:
        at = f"line {i1 + 1}" if i2 - i1 <= 1 else f"lines {i1 + 1}-{i2}"
        if tag == "insert":
            parts.append(f"after line {i1}: only in B {list(lines_b[j1:j2])!r}")
        elif tag == "delete":
            parts.append(f"{at}: only in A {list(lines_a[i1:i2])!r}")
        else:
            parts.append(f"{at}: A {list(lines_a[i1:i2])!r}, B {list(lines_b[j1:j2])!r}")
    more = f"; and {len(ops) - _SHOWN} more changes" if len(ops) > _SHOWN else ""
    return "; ".join(parts) + more


def compare_text(a: Path, b: Path, replace: Callable[[str], str] = str) -> list[str]:
    """What differs between two text files once A's absolute root is written as B's."""
    text_a = replace(a.read_text(errors="replace"))
    text_b = b.read_text(errors="replace")
    if text_a == text_b:
        return []
    lines_a, lines_b = text_a.splitlines(), text_b.splitlines()
    if lines_a == lines_b:
        return ["line endings or final newline differ"]
    return [f"{len(lines_a)} vs {len(lines_b)} lines; {_first_text_change(lines_a, lines_b)}"]


def _checksum_entries(text: str) -> list[tuple[str, str]] | None:
    """The (name, digest) entries of a ``sha256sum`` listing, or ``None`` if it is not one."""
    entries = []
    for line in text.splitlines():
        if not line.strip():
            continue
        match = _CHECKSUM_LINE.match(line)
        if match is None:
            return None
        entries.append((match.group(2), match.group(1).lower()))
    return entries


def compare_checksums(
    a: Path, b: Path, rel: str, replace: Callable[[str], str] = str
) -> list[Difference]:
    """What differs between two checksum listings, entry by entry.

    A differing digest of a picture is filed under :data:`PICTURES`, like the picture itself.
    """
    text_a, text_b = replace(a.read_text(errors="replace")), b.read_text(errors="replace")
    if text_a == text_b:
        return []
    entries_a, entries_b = _checksum_entries(text_a), _checksum_entries(text_b)
    if entries_a is None or entries_b is None:
        return [Difference(rel, what) for what in compare_text(a, b, replace)]
    digests_a, digests_b = dict(entries_a), dict(entries_b)
    out: list[Difference] = []
    for name, digest in entries_a:
        category = PICTURES if name.lower().endswith(PICTURE_SUFFIXES) else VALUES
        if name not in digests_b:
            out.append(Difference(rel, f"entry {name} only in A", category))
        elif digests_b[name] != digest:
            what = f"entry {name}: digest A {digest[:12]}…, B {digests_b[name][:12]}…"
            out.append(Difference(rel, what, category))
    for name, _digest in entries_b:
        if name not in digests_a:
            category = PICTURES if name.lower().endswith(PICTURE_SUFFIXES) else VALUES
            out.append(Difference(rel, f"entry {name} only in B", category))
    if not out:
        out.append(Difference(rel, "same entries, other order or spacing"))
    return out


def _decoded(path: Path) -> tuple[str, tuple[int, int], np.ndarray] | None:
    """A picture's mode, size and pixels (PIL), or ``None`` if PIL is not installed."""
    try:
        from PIL import Image
    except ImportError:
        return None
    with Image.open(path) as image:
        return image.mode, image.size, np.asarray(image)


def compare_pictures(a: Path, b: Path) -> list[str]:
    """What differs between two PNG/JPEG pictures' decoded pixels (bytes without PIL).

    Metadata is not compared: Matplotlib's PNGs carry only a ``Software`` text chunk (its
    version, no time), the JPEG coadds a bare JFIF header.
    """
    da, db = _decoded(a), _decoded(b)
    if da is None or db is None:
        return [] if a.read_bytes() == b.read_bytes() else ["bytes differ (PIL not installed)"]
    (mode_a, size_a, pix_a), (mode_b, size_b, pix_b) = da, db
    if (mode_a, size_a) != (mode_b, size_b):
        return [f"picture: A {mode_a} {size_a}, B {mode_b} {size_b}"]
    what = compare_arrays(pix_a, pix_b, what="pixel values")
    return [f"decoded pixels: {what}"] if what else []


# -- the command ----------------------------------------------------------------------------


def _dirs(names: Iterable[str]) -> str:
    """Directory names as a report lists them: ``a/, b/``."""
    return ", ".join(f"{name}/" for name in sorted(names))


def report(result: Comparison, out: TextIO = sys.stdout) -> None:
    """Print a comparison: per differing file, grouped by category, what differs."""
    print(f"A: {result.a}\nB: {result.b}", file=out)
    print(
        f"compared by content: {len(result.compared)} files; by name only: "
        f"{len(result.names_only)} (in {_dirs(NOT_BY_VALUE_DIRS)}); "
        f"not compared: {_dirs(RUN_STATE_DIRS)}",
        file=out,
    )
    for category in (FILES, VALUES, PICTURES):
        grouped = {
            path: [d for d in diffs if d.category == category]
            for path, diffs in result.by_path().items()
        }
        grouped = {path: diffs for path, diffs in grouped.items() if diffs}
        print(f"\n{category}: {len(grouped) or 'no'} differing files", file=out)
        for path, diffs in grouped.items():
            if category == FILES:
                print(f"  {path}: {diffs[0].what}", file=out)
                continue
            print(f"  {path}", file=out)
            for d in diffs:
                print(f"    {d.what}", file=out)
    verdict = "equal" if result.equal else ("values equal" if result.values_equal else "differ")
    print(f"\n{verdict}", file=out)


def main(argv: Iterable[str] | None = None) -> int:
    """``python tests/release_values.py A B``: print what differs; 0 if all equal, else 1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="release directory A (e.g. before the change)")
    parser.add_argument("b", type=Path, help="release directory B (e.g. after the change)")
    parser.add_argument(
        "--values-only",
        action="store_true",
        help="exit 0 when only pictures for people differ (still reported)",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    for root in (args.a, args.b):
        if not root.is_dir():
            parser.error(f"{root} is not a directory")
    result = compare_releases(args.a, args.b)
    report(result)
    equal = result.values_equal if args.values_only else result.equal
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
