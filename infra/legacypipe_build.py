"""Where the real legacypipe (built from ``../shared/vendor`` by ``build-legacypipe.sh``) lives.

The build script installs into ``/var/cache/lsdr/legacypipe-<hash of the vendored sources>``
unless ``LSDR_LEGACYPIPE_PREFIX`` says otherwise; this module finds that prefix and gives the
environment (``PYTHONPATH``, ``DUST_DIR``) that its Python needs.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENDOR = REPO.parent / "shared" / "vendor"
BUILD_SCRIPT = REPO / "infra" / "scripts" / "build-legacypipe.sh"


def vendor_hash(vendor: Path = VENDOR) -> str:
    """The build script's hash: sha256 of the vendored tarballs then patches, 12 hex digits."""
    digest = hashlib.sha256()
    for pattern in ("*.tar.gz", "*.patch"):
        for path in sorted(vendor.glob(pattern)):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class LegacypipeBuild:
    """A finished build: its prefix, Python and environment."""

    prefix: Path

    @property
    def python(self) -> Path:
        """The build's Python (Debian's, with astrometry.net's libkd and the Tractor)."""
        return self.prefix / "venv" / "bin" / "python"

    @property
    def package_dir(self) -> Path:
        """legacypipe's ``py/`` directory (``legacypipe/queue_calibs.py`` etc. under it)."""
        return self.prefix / "legacypipe" / "py"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for running the build's Python."""
        env = dict(os.environ if base is None else base)
        env["PYTHONPATH"] = os.pathsep.join(
            str(self.prefix / p) for p in ("tractor", "legacypipe/py", "unwise_psf/py")
        )
        env["DUST_DIR"] = str(self.prefix / "dust")
        env["MPLBACKEND"] = "Agg"
        return env


def default_prefix() -> Path:
    """The prefix the build script uses when not told otherwise."""
    configured = os.environ.get("LSDR_LEGACYPIPE_PREFIX")
    if configured:
        return Path(configured)
    return Path("/var/cache/lsdr") / f"legacypipe-{vendor_hash()}"


def find_build(prefix: Path | None = None) -> LegacypipeBuild | None:
    """The finished build at ``prefix`` (default: the build script's), or None."""
    where = prefix or default_prefix()
    if (where / ".built").exists() and (where / "venv" / "bin" / "python").exists():
        return LegacypipeBuild(where)
    return None
