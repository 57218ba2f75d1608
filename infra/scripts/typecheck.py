"""Run mypy --strict on every lsdr package, over a generated tree that spells the package out.

The packages come from pyproject's ``[tool.setuptools.package-dir]`` (``lsdr.survey`` →
``survey/``), the one list ``setup.py`` also derives the distribution's packages from; the
tree goes where pyproject's ``[tool.mypy] mypy_path`` points (``build/mypy``).  Run it from
``make typecheck``; extra arguments are passed to mypy.

Why a tree of symlinks: mypy finds modules by directory only (``mypy_path``, and the plain
directory entries of ``.pth`` files) and never runs code.  setuptools' editable install of a
renaming ``package-dir`` is an import hook (``__editable___lsdr_*_finder``), which mypy cannot
follow; ``editable_mode=compat`` only adds directories to ``sys.path``, so it cannot make
``survey/`` importable as ``lsdr.survey``; ``editable_mode=strict`` builds a link tree mypy could
read, but file by file, so every new module needs a reinstall (and the whole venv install
becomes strict).  One symlink per mapped directory picks up new modules and subpackages with no
step at all; only the tree's top (``build/mypy/lsdr/``) is generated here, every run.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository (this file is ``infra/scripts/typecheck.py``)."""


def read_config(root: Path) -> tuple[dict[str, str], Path]:
    """pyproject's ``package-dir`` mapping and the tree directory (``mypy_path``)."""
    with (root / "pyproject.toml").open("rb") as stream:
        tool = tomllib.load(stream)["tool"]
    return dict(tool["setuptools"]["package-dir"]), root / tool["mypy"]["mypy_path"]


def build_tree(root: Path, mapping: dict[str, str], tree: Path) -> list[str]:
    """Make ``tree`` spell the import packages out; return the top-level package names.

    A top-level package (``lsdr`` = ``lsdr/``) becomes a real directory of links to its
    directory's entries, so that its mapped subpackages can sit beside them; every other mapped
    package (``lsdr.survey`` = ``survey/``) becomes one relative link to its directory.
    """
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    names = sorted(mapping, key=lambda name: name.count("."))
    tops = [name for name in names if "." not in name]
    for name in names:
        source = root / mapping[name]
        target = tree.joinpath(*name.split("."))
        if not target.parent.is_dir() or target.parent.is_symlink():
            raise SystemExit(f"typecheck: {name}: its parent package is not mapped at the top")
        if "." in name:
            target.symlink_to(_relative(source, target.parent))
            continue
        target.mkdir()
        mapped = {n.rsplit(".", 1)[-1] for n in names if n.startswith(f"{name}.")}
        for entry in sorted(source.iterdir()):
            if entry.name not in mapped and entry.name != "__pycache__":
                (target / entry.name).symlink_to(_relative(entry, target))
    return tops


def _relative(path: Path, start: Path) -> Path:
    """``path`` relative to the directory ``start`` (both absolute), for a movable tree."""
    return Path(*[".."] * len(start.relative_to(ROOT).parts), path.relative_to(ROOT))


def main(argv: list[str]) -> int:
    """Build the tree, run mypy on each top-level package (subpackages included), then here.

    mypy takes packages or files in one run, not both: this script is checked in a second.
    """
    mapping, tree = read_config(ROOT)
    tops = build_tree(ROOT, mapping, tree)
    mypy = [sys.executable, "-m", "mypy", *argv]
    packages = [arg for top in tops for arg in ("-p", top)]
    status = subprocess.call([*mypy, *packages], cwd=ROOT)
    return status or subprocess.call([*mypy, str(Path(__file__).relative_to(ROOT))], cwd=ROOT)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
