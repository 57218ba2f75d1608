"""Every path of a release directory, in legacypipe's names; nothing else builds paths.

A release directory doubles as legacypipe's ``--survey-dir`` (images, calibs, CCD tables, brick
table, reference catalogues) and ``--outdir`` (tractor, coadd, metrics, …), so the real
``runbrick`` and the lite engine read and write the same files.  Brick names are validated
against the grid before they become part of a path; image names are checked to stay inside
``images/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lsdr.survey.core.bricks import is_custom_brickname, validate_brickname
from lsdr.survey.core.errors import UsageError

COADD_TYPES = (
    "image",
    "invvar",
    "model",
    "blobmodel",
    "chi2",
    "depth",
    "galdepth",
    "nexp",
    "psfsize",
)
"""Per-band coadd products (``legacysurvey-<brick>-<type>-<band>.fits.fz``)."""
JPEG_TYPES = ("image", "model", "blobmodel", "resid", "wise", "wisemodel", "wiseresid")
"""Colour JPEG products (``legacysurvey-<brick>-<type>.jpg``)."""


def checked_brick(brick: str) -> str:
    """A brick name safe to use in a path: on the grid, or a runbrick ``custom-`` name."""
    if isinstance(brick, str) and is_custom_brickname(brick):
        return brick
    return validate_brickname(brick)


def checked_sweep_version(version: str) -> str:
    """A sweep version safe as ``sweep/<version>/``: one plain directory name (``10.0``)."""
    return _word(version)


def brick_dir_prefix(brick: str) -> str:
    """``<bri>``: the first three characters of a brick name (``cus`` for custom bricks)."""
    return checked_brick(brick)[:3]


def image_relpath(image: str | PurePosixPath) -> PurePosixPath:
    """Validate an image path relative to ``images/`` (no absolute paths, no ``..``)."""
    rel = PurePosixPath(image)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise UsageError(f"image path {str(image)!r} must be relative to images/ without '..'")
    return rel


def image_base(image: str | PurePosixPath) -> str:
    """legacypipe's ``base`` of an image: its basename up to the first dot."""
    return image_relpath(image).name.split(".")[0]


def companion_relpath(image: str | PurePosixPath, kind: str) -> PurePosixPath:
    """The ``ood`` (data quality) or ``oow`` (weight) companion of an ``ooi``/``oki`` image."""
    if kind not in ("ood", "oow"):
        raise UsageError(f"companion kind must be 'ood' or 'oow', not {kind!r}")
    rel = image_relpath(image)
    for tag in ("_ooi_", "_oki_"):
        if tag in rel.name:
            return rel.with_name(rel.name.replace(tag, f"_{kind}_"))
    raise UsageError(f"{str(image)!r} is not a CP image name (no _ooi_ or _oki_)")


@dataclass(frozen=True)
class ReleaseLayout:
    """The paths of one release rooted at ``root``, for data release ``dr`` (e.g. ``dr10``)."""

    root: Path
    dr: str = "dr10"

    def __post_init__(self) -> None:
        """Store the root as an absolute path so that paths stay valid after a chdir."""
        object.__setattr__(self, "root", Path(self.root).absolute())

    # -- survey inputs --------------------------------------------------------------------
    @property
    def images_dir(self) -> Path:
        """``images/``: CP images, with paths in the CCD tables relative to it."""
        return self.root / "images"

    def image(self, image: str | PurePosixPath) -> Path:
        """An image (or companion) file from its path relative to ``images/``."""
        return self.images_dir / image_relpath(image)

    def image_companion(self, image: str | PurePosixPath, kind: str) -> Path:
        """The ``ood`` or ``oow`` file beside an image."""
        return self.images_dir / companion_relpath(image, kind)

    @property
    def survey_bricks(self) -> Path:
        """``survey-bricks.fits.gz``: the brick grid legacypipe reads."""
        return self.root / "survey-bricks.fits.gz"

    @property
    def gaia_dir(self) -> Path:
        """Gaia-like reference catalogue in HEALPix chunk files (``GAIA_CAT_DIR``)."""
        return self.root / "gaia"

    def gaia_chunk(self, healpix: int) -> Path:
        """One reference chunk, ``gaia/chunk-NNNNN.fits`` (nside 32, ring scheme)."""
        return self.gaia_dir / f"chunk-{int(healpix):05d}.fits"

    @property
    def tycho2_kd(self) -> Path:
        """``tycho2.kd.fits``, the bright-star catalogue (``TYCHO2_KD_DIR``)."""
        return self.root / "tycho2.kd.fits"

    @property
    def truth_dir(self) -> Path:
        """Truth tables of a synthetic survey (not part of a real release)."""
        return self.root / "truth"

    @property
    def truth_catalog(self) -> Path:
        """``truth/truth.fits``: the simulated sources."""
        return self.truth_dir / "truth.fits"

    @property
    def truth_ccds(self) -> Path:
        """``truth/truth-ccds.fits``: true zeropoint, seeing and sky of each simulated CCD."""
        return self.truth_dir / "truth-ccds.fits"

    # -- calibrations ---------------------------------------------------------------------
    @property
    def calib_dir(self) -> Path:
        """``calib/``: the per-CCD and merged PsfEx models, skies and SE catalogues."""
        return self.root / "calib"

    def _calib(self, kind: str, image: str | PurePosixPath, suffix: str) -> Path:
        rel = image_relpath(image)
        return self.calib_dir / kind / rel.parent / f"{image_base(rel)}-{suffix}.fits"

    def _calib_single(self, kind: str, image: str | PurePosixPath, ccd: str, suffix: str) -> Path:
        rel = image_relpath(image)
        base = image_base(rel)
        _check_ccdname(ccd)
        return self.calib_dir / kind / rel.parent / base / f"{base}-{ccd}-{suffix}.fits"

    def psfex_single(self, image: str | PurePosixPath, ccd: str) -> Path:
        """Per-CCD PsfEx model, ``calib/psfex-single/<imgdir>/<base>/<base>-<ccd>-psfex.fits``."""
        return self._calib_single("psfex-single", image, ccd, "psfex")

    def sky_single(self, image: str | PurePosixPath, ccd: str) -> Path:
        """Per-CCD spline sky, ``calib/sky-single/<imgdir>/<base>/<base>-<ccd>-splinesky.fits``."""
        return self._calib_single("sky-single", image, ccd, "splinesky")

    def se_single(self, image: str | PurePosixPath, ccd: str) -> Path:
        """Per-CCD source-extractor catalogue, ``calib/se/<imgdir>/<base>/<base>-<ccd>-se.fits``."""
        return self._calib_single("se", image, ccd, "se")

    def psfex_merged(self, image: str | PurePosixPath) -> Path:
        """Per-exposure merged PsfEx models, ``calib/psfex/<imgdir>/<base>-psfex.fits``."""
        return self._calib("psfex", image, "psfex")

    def sky_merged(self, image: str | PurePosixPath) -> Path:
        """Per-exposure merged spline skies, ``calib/sky/<imgdir>/<base>-splinesky.fits``."""
        return self._calib("sky", image, "splinesky")

    # -- zeropoints and CCD tables --------------------------------------------------------
    def zpt_annotated(self, image: str | PurePosixPath) -> Path:
        """legacy_zeropoints' per-image CCD table, ``zpt/<imgdir>/<base>-annotated.fits``."""
        rel = image_relpath(image)
        return self.root / "zpt" / rel.parent / f"{image_base(rel)}-annotated.fits"

    def zpt_photom(self, image: str | PurePosixPath) -> Path:
        """legacy_zeropoints' per-star table, ``zpt/<imgdir>/<base>-photom.fits``."""
        rel = image_relpath(image)
        return self.root / "zpt" / rel.parent / f"{image_base(rel)}-photom.fits"

    @property
    def image_list(self) -> Path:
        """The discovered image list (paths relative to ``images/``)."""
        return self.root / "image-list.txt"

    def survey_ccds(self, camera: str, band: str) -> Path:
        """``survey-ccds-<camera>-<band>.fits.gz``, one per camera and band as the cookbook merges.

        legacypipe reads every ``survey-ccds*.fits.gz`` when no ``.kd.fits`` exists (never a
        plain ``.fits``), so these are also the fallback when the kd-tree file is missing.
        """
        return self.root / f"survey-ccds-{_word(camera)}-{_word(band)}.fits.gz"

    def survey_ccds_tables(self) -> list[Path]:
        """Every ``survey-ccds*.fits.gz`` in the release directory, sorted: what legacypipe reads.

        The one list of the CCD tables (runbrick, the kd-tree, the brick list, footprints and
        the fingerprints of the units reading them); depth-cut tables live in ``depthcut/``.
        """
        return sorted(self.root.glob("survey-ccds*.fits.gz"))

    def ccds_annotated(self, camera: str, band: str) -> Path:
        """``ccds-annotated-<camera>-<band>.fits.gz``."""
        return self.root / f"ccds-annotated-{_word(camera)}-{_word(band)}.fits.gz"

    @property
    def survey_ccds_kd(self) -> Path:
        """The unified kd-tree CCD file, ``survey-ccds-<dr>.kd.fits``."""
        return self.root / f"survey-ccds-{self.dr}.kd.fits"

    @property
    def depthcut_dir(self) -> Path:
        """``depthcut/``: the depth cut's outputs, and a survey dir for runbrick to use them.

        legacypipe globs ``survey-ccds*.fits.gz`` / ``survey-ccds*.kd.fits`` (not recursively)
        in its survey dir, so the depth-cut tables live here, never beside the full tables
        (which would be read together with them).  Point runbrick's ``--survey-dir`` here to
        use the depth cut (``images``, ``calib``, … are links to the release's own).
        """
        return self.root / "depthcut"

    @property
    def depthcut_linked(self) -> tuple[Path, ...]:
        """What ``depthcut/`` links to: the images, calibs, brick table and reference catalogues."""
        return (self.images_dir, self.calib_dir, self.survey_bricks, self.gaia_dir, self.tycho2_kd)

    @property
    def survey_ccds_depthcut(self) -> Path:
        """The depth-cut CCD table, ``depthcut/survey-ccds-depthcut-<dr>.fits.gz``."""
        return self.depthcut_dir / f"survey-ccds-depthcut-{self.dr}.fits.gz"

    @property
    def survey_ccds_depthcut_kd(self) -> Path:
        """Its kd-tree file, ``depthcut/survey-ccds-depthcut-<dr>.kd.fits``."""
        return self.depthcut_dir / f"survey-ccds-depthcut-{self.dr}.kd.fits"

    @property
    def brick_list(self) -> Path:
        """The brick list of the release's region (one brick name a line)."""
        return self.root / "bricks.txt"

    def depthcut_ccds(self, brick: str) -> Path:
        """Per-brick CCDs kept by the depth cut, ``depthcut/<bri>/ccds-<brick>.fits``."""
        b = checked_brick(brick)
        return self.depthcut_dir / b[:3] / f"ccds-{b}.fits"

    # -- runbrick outputs -----------------------------------------------------------------
    @property
    def tractor_dir(self) -> Path:
        """``tractor/``: every brick's catalogue and checksum file."""
        return self.root / "tractor"

    def tractor(self, brick: str) -> Path:
        """``tractor/<bri>/tractor-<brick>.fits``."""
        b = checked_brick(brick)
        return self.tractor_dir / b[:3] / f"tractor-{b}.fits"

    def tractor_orig(self, brick: str) -> Path:
        """``tractor/<bri>/tractor-<brick>-orig.fits``: the bright-neighbour step's backup."""
        b = checked_brick(brick)
        return self.tractor_dir / b[:3] / f"tractor-{b}-orig.fits"

    def tractor_i(self, brick: str) -> Path:
        """``tractor-i/<bri>/tractor-i-<brick>.fits`` (all internal columns)."""
        b = checked_brick(brick)
        return self.root / "tractor-i" / b[:3] / f"tractor-i-{b}.fits"

    def brick_checksums(self, brick: str) -> Path:
        """``tractor/<bri>/brick-<brick>.sha256sum``."""
        b = checked_brick(brick)
        return self.tractor_dir / b[:3] / f"brick-{b}.sha256sum"

    @property
    def coadds_dir(self) -> Path:
        """``coadd/``: every brick's coadd directory."""
        return self.root / "coadd"

    def coadd_dir(self, brick: str) -> Path:
        """``coadd/<bri>/<brick>/``."""
        b = checked_brick(brick)
        return self.coadds_dir / b[:3] / b

    def coadd(self, brick: str, kind: str, band: str) -> Path:
        """``coadd/<bri>/<brick>/legacysurvey-<brick>-<kind>-<band>.fits.fz``."""
        if kind not in COADD_TYPES:
            raise UsageError(f"unknown coadd product {kind!r}; expected one of {COADD_TYPES}")
        b = checked_brick(brick)
        return self.coadd_dir(b) / f"legacysurvey-{b}-{kind}-{_word(band)}.fits.fz"

    def coadd_maskbits(self, brick: str) -> Path:
        """``legacysurvey-<brick>-maskbits.fits.fz``."""
        b = checked_brick(brick)
        return self.coadd_dir(b) / f"legacysurvey-{b}-maskbits.fits.fz"

    def coadd_maskbits_orig(self, brick: str) -> Path:
        """``legacysurvey-<brick>-maskbits-orig.fits.fz``: the bright-neighbour step's backup."""
        b = checked_brick(brick)
        return self.coadd_dir(b) / f"legacysurvey-{b}-maskbits-orig.fits.fz"

    def coadd_ccds(self, brick: str) -> Path:
        """``legacysurvey-<brick>-ccds.fits``: the CCDs used for the brick."""
        b = checked_brick(brick)
        return self.coadd_dir(b) / f"legacysurvey-{b}-ccds.fits"

    def coadd_depth_table(self, brick: str) -> Path:
        """``legacysurvey-<brick>-depth.fits``: the brick's depth histogram."""
        b = checked_brick(brick)
        return self.coadd_dir(b) / f"legacysurvey-{b}-depth.fits"

    def coadd_jpeg(self, brick: str, kind: str) -> Path:
        """``legacysurvey-<brick>-<kind>.jpg``."""
        if kind not in JPEG_TYPES:
            raise UsageError(f"unknown JPEG product {kind!r}; expected one of {JPEG_TYPES}")
        b = checked_brick(brick)
        return self.coadd_dir(b) / f"legacysurvey-{b}-{kind}.jpg"

    def metrics_dir(self, brick: str) -> Path:
        """``metrics/<bri>/``."""
        return self.root / "metrics" / brick_dir_prefix(brick)

    def metrics(self, brick: str, kind: str) -> Path:
        """A per-brick metrics file: ``blobs``, ``sources``, ``reference``, ``all-models``, …."""
        names = {
            "blobs": "blobs-{b}.fits.gz",
            "sources": "sources-{b}.fits",
            "reference": "reference-{b}.fits",
            "all-models": "all-models-{b}.fits",
            "outlier-mask": "outlier-mask-{b}.fits.fz",
        }
        if kind not in names:
            raise UsageError(f"unknown metrics product {kind!r}; expected one of {list(names)}")
        return self.metrics_dir(brick) / names[kind].format(b=checked_brick(brick))

    @property
    def logs_dir(self) -> Path:
        """``logs/``: the runbrick logs (``logs/<bri>/``) and their tarballs."""
        return self.root / "logs"

    def brick_log_dir(self, bri: str) -> Path:
        """``logs/<bri>/``: the logs of the bricks whose names start with ``bri``."""
        return self.logs_dir / bri

    def brick_log(self, brick: str) -> Path:
        """``logs/<bri>/<brick>.log``."""
        b = checked_brick(brick)
        return self.brick_log_dir(b[:3]) / f"{b}.log"

    def checkpoint(self, brick: str) -> Path:
        """``checkpoints/<bri>/checkpoint-<brick>.pickle`` (shared by all nodes)."""
        b = checked_brick(brick)
        return self.root / "checkpoints" / b[:3] / f"checkpoint-{b}.pickle"

    def pickle_pattern(self, brick: str) -> str:
        """runbrick's ``--pickle`` pattern: ``pickles/<bri>/runbrick-<brick>-%(stage)s.pickle``."""
        b = checked_brick(brick)
        return str(self.root / "pickles" / b[:3] / f"runbrick-{b}-%(stage)s.pickle")

    def stage_pickle(self, brick: str, stage: str) -> Path:
        """The pickle of one runbrick stage of a brick."""
        return Path(self.pickle_pattern(brick) % {"stage": _word(stage)})

    # -- post-processing ------------------------------------------------------------------
    @property
    def sweeps_dir(self) -> Path:
        """``sweep/``: the sweep files of every sweep version."""
        return self.root / "sweep"

    def sweep_dir(self, version: str) -> Path:
        """``sweep/<version>/`` (e.g. ``sweep/10.0``)."""
        return self.sweeps_dir / checked_sweep_version(version)

    def sweep(self, version: str, ra1: float, dec1: float, ra2: float, dec2: float) -> Path:
        """``sweep/<version>/sweep-<ra1><p|m><dec1>-<ra2><p|m><dec2>.fits``."""
        return self.sweep_dir(version) / (
            f"sweep-{_sweep_corner(ra1, dec1)}-{_sweep_corner(ra2, dec2)}.fits"
        )

    @property
    def external_dir(self) -> Path:
        """``external/``: matches to external catalogues."""
        return self.root / "external"

    def external_match(self, catalogue: str) -> Path:
        """``external/survey-<dr>-<catalogue>.fits``."""
        return self.external_dir / f"survey-{self.dr}-{_word(catalogue)}.fits"

    @property
    def brick_summary(self) -> Path:
        """``survey-bricks-<dr>.fits.gz``: per-brick summary of the release."""
        return self.root / f"survey-bricks-{self.dr}.fits.gz"

    def brick_summary_chunk(self, key: str) -> Path:
        """``state/bricksummary/survey-bricks-<key>.fits``: one RA-degree chunk of the summary."""
        if len(key) != 3 or not key.isdigit():
            raise UsageError(f"{key!r} is not an RA-degree chunk key (three digits)")
        return self.state_dir / "bricksummary" / f"survey-bricks-{key}.fits"

    @property
    def depth_histogram(self) -> Path:
        """``<dr>-depth.fits``: the release's depth histogram."""
        return self.root / f"{self.dr}-depth.fits"

    def depth_counts(self, brick: str) -> Path:
        """``state/depth/<bri>/depth-<brick>.fits``: a brick's depth-histogram counts.

        An intermediate of the depth histogram (summed into ``<dr>-depth.fits``), not published.
        """
        b = checked_brick(brick)
        return self.state_dir / "depth" / b[:3] / f"depth-{b}.fits"

    @property
    def plots_dir(self) -> Path:
        """``plots/``: summary plots of the release."""
        return self.root / "plots"

    @property
    def depth_histogram_plot(self) -> Path:
        """``plots/depth-histogram.png``: the plot of the release's depth histogram."""
        return self.plots_dir / "depth-histogram.png"

    def brick_summary_plot(self, stem: str) -> Path:
        """``plots/brick-summary-<stem>.png``: one sky map of the brick summary."""
        return self.plots_dir / f"brick-summary-{_word(stem)}.png"

    def directory_checksums(self, directory: Path) -> Path:
        """The release-convention checksum file of a directory of the release, inside it.

        ``<dir>/legacysurvey_<dr>_<dir with / as _>.sha256sum`` (``tractor/180`` →
        ``tractor/180/legacysurvey_dr10_tractor_180.sha256sum``; the root →
        ``legacysurvey_dr10.sha256sum``), as legacypipe's ``repackchecksum.py`` and
        ``checksumming-*`` scripts name them.
        """
        try:
            rel = Path(directory).absolute().relative_to(self.root)
        except ValueError as err:
            raise UsageError(f"{directory} is not inside the release {self.root}") from err
        parts = [_word(p) for p in rel.parts]
        stem = "_".join([f"legacysurvey_{self.dr}", *parts])
        return self.root / rel / f"{stem}.sha256sum"

    def log_tarball(self, bri: str) -> Path:
        """``logs/legacysurvey_<dr>_logs_<bri>.tar.gz``."""
        if len(bri) != 3 or not bri.isalnum():
            raise UsageError(f"{bri!r} is not a brick directory prefix")
        return self.logs_dir / f"legacysurvey_{self.dr}_logs_{bri}.tar.gz"

    def log_tarballs(self) -> list[Path]:
        """Every ``logs/*.tar.gz``, sorted: the log tarballs a release publishes."""
        return sorted(self.logs_dir.glob("*.tar.gz"))

    # -- orchestration state --------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        """``state/``: the unit ledger, Prefect home and server database."""
        return self.root / "state"

    @property
    def state(self) -> StateLayout:
        """The paths inside ``state/`` (ledger, Prefect server, run logs)."""
        return StateLayout(self.state_dir)

    @property
    def ledger_db(self) -> Path:
        """``state/ledger.sqlite``: the default unit ledger."""
        return self.state.ledger_db

    @property
    def release_lock(self) -> Path:
        """``state/release.lock``: the lock a release's writers hold, with its holders' records."""
        return self.state.release_lock

    @property
    def release_summary(self) -> Path:
        """``state/release-summary.md``: what the last whole-release run made."""
        return self.state_dir / "release-summary.md"

    @property
    def nightly_summary(self) -> Path:
        """``state/nightly-summary.md``: what the last nightly increment found and redid."""
        return self.state_dir / "nightly-summary.md"

    @property
    def config_file(self) -> Path:
        """``lsdr.yaml``: the release's own settings file."""
        return self.root / "lsdr.yaml"

    def gaia_chunks(self) -> list[Path]:
        """Every ``gaia/chunk-*.fits*`` reference chunk, sorted (none without ``gaia/``)."""
        return sorted(self.gaia_dir.glob("chunk-*.fits*")) if self.gaia_dir.exists() else []

    @property
    def provenance_dir(self) -> Path:
        """``state/provenance/``: every unit's provenance sidecar, by phase."""
        return self.state_dir / "provenance"

    def provenance(self, phase: str, digest: str) -> Path:
        """``state/provenance/<phase>/<digest>.json``: one unit's provenance sidecar."""
        return self.provenance_dir / phase / f"{digest}.json"

    def unit_lock(self, phase: str, digest: str) -> Path:
        """``state/locks/<phase>/<digest>.lock``: the lock a unit's runner holds while it runs."""
        return self.state_dir / "locks" / phase / f"{digest}.lock"

    def provenance_records(self) -> list[Path]:
        """Every provenance sidecar, sorted (none before anything has run)."""
        return sorted(self.provenance_dir.glob("*/*.json"))

    @property
    def simulation_record(self) -> Path:
        """``truth/simulation.json``: the configuration and files of the last simulation."""
        return self.truth_dir / "simulation.json"

    def plots(self) -> list[Path]:
        """The release's summary plots (``plots/*.png``), sorted."""
        return sorted(self.plots_dir.glob("*.png")) if self.plots_dir.exists() else []


@dataclass(frozen=True)
class StateLayout:
    """The paths inside a state directory (a release's ``state/``, or any directory given).

    The Prefect server and the ledger are handed a state directory, not a release, so this is
    its own class; :attr:`ReleaseLayout.state` is the one of a release.  ``root`` is kept as
    given (not made absolute), as the callers' paths were.
    """

    root: Path

    def unit_scratch(self, phase: str, key: str) -> Path:
        """``units/<phase>/<key>/``: a launched command's private caches while its unit runs."""
        return Path(self.root) / "units" / _word(phase) / _word(key)

    @property
    def ledger_db(self) -> Path:
        """``ledger.sqlite``: the default unit ledger."""
        return Path(self.root) / "ledger.sqlite"

    @property
    def release_lock(self) -> Path:
        """``release.lock``: the release's writers' lock (``infra/release_lock.py``)."""
        return Path(self.root) / "release.lock"

    @property
    def prefect_home(self) -> Path:
        """``prefect/``: the Prefect server's ``PREFECT_HOME``."""
        return Path(self.root) / "prefect"

    @property
    def prefect_profiles(self) -> Path:
        """``prefect/profiles.toml``: the server's ``PREFECT_PROFILES_PATH``."""
        return self.prefect_home / "profiles.toml"

    @property
    def server_record(self) -> Path:
        """``server.json``: the record of the running Prefect server (pid, port, URL)."""
        return Path(self.root) / "server.json"

    @property
    def server_log(self) -> Path:
        """``prefect-server.log``: the Prefect server's output."""
        return Path(self.root) / "prefect-server.log"

    @property
    def worker_record(self) -> Path:
        """``worker.json``: the record of the release's running Prefect worker (pid, pool)."""
        return Path(self.root) / "worker.json"

    @property
    def worker_log(self) -> Path:
        """``prefect-worker.log``: the Prefect worker's output (and its flow runs')."""
        return Path(self.root) / "prefect-worker.log"

    @property
    def server_lock(self) -> Path:
        """``server.lock``: held while a server is started or stopped."""
        return Path(self.root) / "server.lock"

    @property
    def server_database(self) -> Path:
        """``prefect.db``: the Prefect server's SQLite database."""
        return Path(self.root) / "prefect.db"

    @property
    def run_logs_dir(self) -> Path:
        """``logs/``: one log file per run (``run-<UTC time>.log``) and the logging config."""
        return Path(self.root) / "logs"

    @property
    def run_logging_config(self) -> Path:
        """``logs/logging.yml``: the Prefect logging config lsdr writes at every run."""
        return self.run_logs_dir / "logging.yml"


def check_release_dir(root: Path) -> ReleaseLayout:
    """The layout of ``root`` if it is a release directory, else a one-line :class:`UsageError`.

    A release directory holds the survey to reduce, ``images/`` (the CP images, as a real
    survey and the simulator have them), or what lsdr wrote there, ``state/`` (every run and
    ``lsdr server up`` write it first).  A directory with neither (a typo, ``/tmp``) is refused
    before anything reads or writes it.
    """
    layout = ReleaseLayout(root)
    if not layout.root.exists():
        raise UsageError(f"release directory {root} does not exist")
    if not layout.root.is_dir():
        raise UsageError(f"release directory {root} is not a directory")
    if not (layout.images_dir.is_dir() or layout.state_dir.is_dir()):
        raise UsageError(
            f"{root} is not a release directory: it has no images/ (the CP images) and no "
            "state/ (what lsdr writes)"
        )
    return layout


def _check_ccdname(ccd: str) -> str:
    return _word(ccd)


def _word(value: str) -> str:
    """A path component made of letters, digits, ``.``, ``_`` and ``-`` only."""
    ok = value and value not in (".", "..") and all(c.isalnum() or c in "._-" for c in value)
    if not ok:
        raise UsageError(f"{value!r} cannot be part of a file name")
    return value


def _sweep_corner(ra: float, dec: float) -> str:
    """``RRR[p|m]DDD`` as generate-sweep-files names a box corner (``%03g`` and ``%+04g``)."""
    dec_text = f"{dec:+04g}".replace("+", "p").replace("-", "m")
    return f"{ra:03g}{dec_text}"
