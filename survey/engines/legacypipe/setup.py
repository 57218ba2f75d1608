"""Which legacypipe a worker runs and how: the install, its version, the launcher, the variables.

With the ``none`` launcher the command runs here, with the build of ``vendor/``
(``infra/scripts/build-legacypipe.sh``): its Python, its ``PYTHONPATH`` (the Tractor,
legacypipe, unwise_psf) and its dust maps.  With a container launcher it runs inside the image,
whose Python finds legacypipe at ``legacypipe_py`` (``/src/legacypipe/py`` in
``legacysurvey/legacypipe`` images) and whose version must then be configured.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from lsdr.infra.launchers.base import Launcher
from lsdr.infra.launchers.environment import LaunchEnvironment, ReferenceCatalogues
from lsdr.infra.launchers.registry import DEFAULT_LAUNCHER, get_launcher
from lsdr.infra.legacypipe_build import LegacypipeBuild, default_prefix, find_build
from lsdr.survey.core.errors import MissingDependencyError, UsageError
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.engines.legacypipe.install import LegacypipeInstall
from lsdr.survey.engines.legacypipe.versions import LegacypipeVersion

IMAGE_PY_DIR = Path("/src/legacypipe/py")
"""legacypipe's ``py/`` in the ``legacysurvey/legacypipe`` images (its batch scripts set
``LEGACYPIPE_DIR=/src/legacypipe``)."""

BUILD_HINT = "make legacypipe (infra/scripts/build-legacypipe.sh)"
"""How to make the build the ``none`` launcher runs."""


@dataclass(frozen=True)
class LegacypipeSetup:
    """One worker's legacypipe: where, which version, through which launcher.

    Built from the settings the engine takes (``LegacypipeEngine.SETTINGS``); nothing is looked
    up until a command needs it, so naming the engine never fails for a missing build.
    """

    launcher: str = DEFAULT_LAUNCHER
    image: str | None = None
    prefix: Path | None = None
    """The build's prefix (``none`` launcher); None = the build script's own."""
    py_dir: Path = IMAGE_PY_DIR
    """legacypipe's ``py/`` inside the image (container launchers)."""
    version: str | None = None
    """legacypipe's ``git describe``; None = the build's own (``none`` launcher only)."""
    extra_env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check the launcher and image now (a typo fails before any unit runs)."""
        get_launcher(self.launcher, self.image or "")
        if self.version is not None:
            LegacypipeVersion.parse(self.version)
        elif self.contained:
            raise UsageError(
                f"legacypipe_version is not set: with the {self.launcher} launcher lsdr cannot "
                "ask the image; set it to the image's git describe (DR11.1.0-28-g93e2d828)"
            )

    @property
    def contained(self) -> bool:
        """Whether commands run inside a container image."""
        return self.launcher != DEFAULT_LAUNCHER

    @cached_property
    def runner(self) -> Launcher:
        """The launcher commands go through."""
        return get_launcher(self.launcher, self.image or "")

    @cached_property
    def build(self) -> LegacypipeBuild:
        """The build of ``vendor/`` the ``none`` launcher runs (missing: environment error)."""
        where = self.prefix or default_prefix()
        found = find_build(where)
        if found is None:
            raise MissingDependencyError(
                "executable",
                f"{where}/venv/bin/python",
                install=BUILD_HINT,
                reason="the real legacypipe is not built there",
            )
        return found

    @cached_property
    def install(self) -> LegacypipeInstall:
        """legacypipe's ``py/`` and the Python that runs it, as the command sees them."""
        if self.contained:
            return LegacypipeInstall(self.py_dir, "python")
        return LegacypipeInstall(self.build.package_dir, str(self.build.python))

    @cached_property
    def describe(self) -> LegacypipeVersion:
        """The configured version, or the build's ``git describe`` (as runbrick reports it)."""
        if self.version is not None:
            return LegacypipeVersion.parse(self.version)
        package = self.build.package_dir / "legacypipe"
        try:
            done = subprocess.run(
                ["git", "-C", str(package), "describe"],
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError) as err:
            raise MissingDependencyError(
                "executable",
                "git",
                reason=f"cannot read legacypipe's version in {package} ({err}); "
                "set legacypipe_version",
            ) from err
        return LegacypipeVersion.parse(done.stdout.strip())

    def host_environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """What the launcher program starts from: ``base`` plus the build's own variables."""
        env = dict(base)
        if not self.contained:
            env.update(self.build.env({}))
        env.update(self.extra_env)
        return env

    def environment(self, layout: ReleaseLayout, unit_dir: Path) -> LaunchEnvironment:
        """One unit's environment: the release as survey dir, its reference catalogues.

        In a container the release is mounted writable and what its links point to outside it
        (``images/`` on CFS, shared calibs or catalogues) read-only, each at its own path.
        """
        root = layout.root.resolve()
        linked = {
            target
            for target in (
                p.resolve()
                for p in (*layout.depthcut_linked, *layout.survey_ccds_tables())
                if p.exists()
            )
            if target != root and root not in target.parents
        }
        return LaunchEnvironment(
            survey_dir=layout.root,
            unit_dir=unit_dir,
            references=self.references(layout),
            inputs=tuple(sorted(linked)) if self.contained else (),
            outputs=(layout.root,) if self.contained else (),
        )

    def references(self, layout: ReleaseLayout) -> ReferenceCatalogues:
        """The reference catalogues the release holds (Gaia chunks, Tycho-2) and dust maps.

        ``gaia/chunk-NNNNN.fits`` (nside 32, ring) and ``tycho2.kd.fits`` where legacypipe's
        test cases and lite's simulator put them; the dust maps of the build (``none``).
        """
        gaia = layout.gaia_dir
        has_gaia = gaia.is_dir() and any(gaia.glob("chunk-*.fits"))
        dust = None if self.contained else self.build.prefix / "dust"
        return ReferenceCatalogues(
            dust_dir=dust,
            gaia_cat_dir=gaia if has_gaia else None,
            gaia_cat_ver="2" if has_gaia else None,
            gaia_cat_prefix="chunk" if has_gaia else None,
            gaia_cat_scheme="ring" if has_gaia else None,
            tycho2_kd_dir=layout.root if layout.tycho2_kd.exists() else None,
        )
