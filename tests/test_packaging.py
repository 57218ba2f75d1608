"""Every package directory is in the distribution: the package list follows the file tree.

The expectations come from the tree (each directory with an ``__init__.py`` under a root that
pyproject's ``package-dir`` maps), not from ``setup.py``, which derives the list.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RESOLVED = """
import json
from distutils.core import run_setup
dist = run_setup("setup.py", stop_after="config")
print(json.dumps(sorted(dist.packages)))
"""
"""Print the packages setuptools resolves for the distribution (pyproject + setup.py)."""


def tree_packages() -> set[str]:
    """Import names of the package directories under the mapped roots, from the file tree."""
    with (ROOT / "pyproject.toml").open("rb") as stream:
        mapping = tomllib.load(stream)["tool"]["setuptools"]["package-dir"]
    found = set()
    for name, directory in mapping.items():
        top = ROOT / directory
        for init in top.rglob("__init__.py"):
            rel = init.parent.relative_to(top)
            found.add(".".join([name, *rel.parts]))
    return found


def test_the_tree_has_the_known_packages() -> None:
    """A sanity check of the expectation itself: the mapped roots and some subpackages."""
    assert {"lsdr", "lsdr.survey", "lsdr.survey.runbrick", "lsdr.infra.profiles"} <= (
        tree_packages()
    )


def test_setuptools_resolves_every_package_directory() -> None:
    """The distribution's package list (as setuptools resolves it) is the tree's packages."""
    result = subprocess.run(
        [sys.executable, "-c", RESOLVED],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert set(json.loads(result.stdout.splitlines()[-1])) == tree_packages()


def test_the_installed_distribution_imports_every_package() -> None:
    """The editable install exposes each package directory under its ``lsdr.`` name."""
    for name in sorted(tree_packages()):
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, name
        assert Path(spec.origin).resolve().is_relative_to(ROOT), (name, spec.origin)
