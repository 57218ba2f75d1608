"""The package list, derived from the directories: pyproject's ``package-dir`` is the one source.

``[tool.setuptools.package-dir]`` maps each top-level import package to its directory
(``lsdr.survey`` → ``survey/``).  setuptools' own ``packages.find`` cannot honour that mapping
(it would find ``survey`` and ``survey.engines``, not ``lsdr.survey``), so this walks each
mapped directory for packages (directories with an ``__init__.py``, below one).  A new
subpackage needs nothing but its directory.  ``infra/scripts/typecheck.py`` reads the same
mapping to build mypy's tree.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent


def mapped_packages(root: Path) -> list[str]:
    """Every import package under the ``package-dir`` roots of ``root/pyproject.toml``."""
    with (root / "pyproject.toml").open("rb") as stream:
        mapping = tomllib.load(stream)["tool"]["setuptools"]["package-dir"]
    found: set[str] = set()
    for name, directory in mapping.items():
        stack = [(name, root / directory)]
        while stack:
            package, path = stack.pop()
            if not (path / "__init__.py").is_file():
                continue
            found.add(package)
            stack.extend((f"{package}.{d.name}", d) for d in path.iterdir() if d.is_dir())
    return sorted(found)


setup(packages=mapped_packages(HERE))
