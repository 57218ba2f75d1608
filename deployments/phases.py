"""One deployable flow per phase: the phase on a cluster of the release's profile.

A phase flow (``flows/tractor.py`` …) runs its units on the task runner it is given; run alone,
Prefect would give it a thread pool.  Each flow here is what a deployment of one phase runs: it
reads the release's settings (its ``lsdr.yaml``, the environment, the run's ``settings``), opens
the profile's Dask cluster (``local``, ``local-slurm``, a NERSC site) and runs the phase on it as
a sub-flow.  The parameters are the phase's options model (``survey/core/phase_options.py``),
so the UI's form shows its typed, documented fields with their defaults, and the server refuses
a wrong type when the run is created.  Flow names are ``run-<phase>``, as ``lsdr run <phase>``;
``run-release`` and ``run-pretractor`` run those chains the same way.

The options a run is given are laid over the ones the release last ran with, field by field
(:func:`lsdr.tasks.recorded.deployed_options`): a click with the form's defaults, or a REST call
naming only ``bricks``, makes the release's bricks on the release's own grid, not on the
model's default one.  Each holds the release's lock while it runs (``infra/release_lock.py``;
``run-release`` and ``run-pretractor`` through their chains' flows).
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from lsdr.flows.report import PhaseResult, ReleaseResult
from lsdr.survey.core.phase_options import (
    BricksOptions,
    BrightneighborsOptions,
    DepthcutOptions,
    DepthOptions,
    DiscoverOptions,
    ExternalOptions,
    KdtreeOptions,
    MergeOptions,
    PackageOptions,
    PhaseOptions,
    PretractorOptions,
    PublishOptions,
    ReleaseOptions,
    SummaryOptions,
    SweepsOptions,
    TractorOptions,
    ZeropointsOptions,
)

Settings = dict[str, Any] | None
"""A run's settings overrides (``n_workers``, ``engine``, ``cluster`` …; ``docs/settings.md``)."""


def run_deployed(
    phase: str, release_dir: str, options: PhaseOptions | None, settings: Settings
) -> PhaseResult:
    """Run ``phase`` with ``options`` (over the release's record) on a cluster of its settings.

    The release's lock is taken first (exclusive; refused or waited for, ``lock_wait``), then
    the ledger checked and the release's record read, so a refused run starts no cluster and
    no unit.
    """
    from lsdr.flows.phases import run_phase
    from lsdr.flows.settings import writing_release
    from lsdr.infra.cluster import dask_cluster

    s = _settings(release_dir, settings)
    with writing_release(s):
        chosen = _chosen(phase, s, options)
        with dask_cluster(s) as address:
            return run_phase(phase, s, address, chosen)


def _settings(release_dir: str, settings: Settings) -> Any:
    """The run's settings, the release directory checked first."""
    from pathlib import Path

    from lsdr.flows.settings import settings_for
    from lsdr.survey.core.layout import check_release_dir

    return settings_for(str(check_release_dir(Path(release_dir)).root), settings)


def _chosen(phase: str, s: Any, options: PhaseOptions | None) -> Any:
    """The run's options laid over the release's record (read, with the release held)."""
    from lsdr.survey.core.layout import ReleaseLayout
    from lsdr.tasks.recorded import deployed_options

    return deployed_options(phase, ReleaseLayout(s.release_dir), s, options)


@flow(name="run-release")
def run_release(
    release_dir: str, options: ReleaseOptions | None = None, settings: Settings = None
) -> ReleaseResult:
    """``release``: every phase in order; the options over the ones the release last ran with."""
    from lsdr.flows.release import release
    from lsdr.flows.settings import writing_release

    s = _settings(release_dir, settings)
    with writing_release(s):
        chosen = _chosen("release", s, options)
        overrides = s.model_dump(mode="json", exclude={"release_dir"})
        result: ReleaseResult = release.fn(str(s.release_dir), chosen, overrides)
    return result


@flow(name="run-pretractor")
def run_pretractor(
    release_dir: str, options: PretractorOptions | None = None, settings: Settings = None
) -> list[PhaseResult]:
    """``pretractor``: discover … bricks (and the depth cut when asked), on one cluster."""
    from lsdr.flows.pretractor import pretractor
    from lsdr.flows.settings import writing_release

    s = _settings(release_dir, settings)
    with writing_release(s):
        chosen = _chosen("pretractor", s, options)
        overrides = s.model_dump(mode="json", exclude={"release_dir"})
        result: list[PhaseResult] = pretractor.fn(str(s.release_dir), chosen, overrides)
    return result


@flow(name="run-discover")
def run_discover(
    release_dir: str, options: DiscoverOptions | None = None, settings: Settings = None
) -> PhaseResult:
    """``discover``: the CP images of each camera, nights and duplicates trimmed."""
    return run_deployed("discover", release_dir, options, settings)


@flow(name="run-zeropoints")
def run_zeropoints(
    release_dir: str, options: ZeropointsOptions | None = None, settings: Settings = None
) -> PhaseResult:
    """``zeropoints``: per image, zeropoints and its PSF and spline-sky calibs."""
    return run_deployed("zeropoints", release_dir, options, settings)


@flow(name="run-merge")
def run_merge(
    release_dir: str, options: MergeOptions | None = None, settings: Settings = None
) -> PhaseResult:
    """``merge``: survey-ccds and ccds-annotated with the cuts; calibs merged per exposure."""
    return run_deployed("merge", release_dir, options, settings)


@flow(name="run-kdtree")
def run_kdtree(
    release_dir: str, options: KdtreeOptions | None = None, settings: Settings = None
) -> PhaseResult:
    """``kdtree``: the kd-tree CCD file of the merged table."""
    return run_deployed("kdtree", release_dir, options, settings)


@flow(name="run-bricks")
def run_bricks(
    release_dir: str, options: BricksOptions | None = None, settings: Settings = None
) -> PhaseResult:
    """``bricks``: the brick list of a region (default every brick the CCDs touch)."""
    return run_deployed("bricks", release_dir, options, settings)


@flow(name="run-depthcut")
def run_depthcut(
    release_dir: str, options: DepthcutOptions | None = None, settings: Settings = None
) -> PhaseResult:
    """``depthcut``: per brick, the CCDs needed for the target depth."""
    return run_deployed("depthcut", release_dir, options, settings)


@flow(name="run-tractor")
def run_tractor(
    release_dir: str, options: TractorOptions | None = None, settings: Settings = None
) -> PhaseResult:
    """``tractor``: runbrick on each brick (checkpoints, fit budget, bail-out)."""
    return run_deployed("tractor", release_dir, options, settings)


@flow(name="run-brightneighbors")
def run_brightneighbors(
    release_dir: str, options: BrightneighborsOptions | None = None, settings: Settings = None
) -> PhaseResult:
    """``brightneighbors``: neighbouring bricks' bright stars in each brick's maskbits."""
    return run_deployed("brightneighbors", release_dir, options, settings)


@flow(name="run-depth")
def run_depth(
    release_dir: str, options: DepthOptions | None = None, settings: Settings = None
) -> PhaseResult:
    """``depth``: the release's depth histogram."""
    return run_deployed("depth", release_dir, options, settings)


@flow(name="run-summary")
def run_summary(
    release_dir: str, options: SummaryOptions | None = None, settings: Settings = None
) -> PhaseResult:
    """``summary``: the survey-bricks table and its sky-map plots."""
    return run_deployed("summary", release_dir, options, settings)


@flow(name="run-sweeps")
def run_sweeps(
    release_dir: str, options: SweepsOptions | None = None, settings: Settings = None
) -> PhaseResult:
    """``sweeps``: the sweep files, one per 5°×5° box."""
    return run_deployed("sweeps", release_dir, options, settings)


@flow(name="run-external")
def run_external(
    release_dir: str, options: ExternalOptions | None = None, settings: Settings = None
) -> PhaseResult:
    """``external``: the release matched to external catalogues."""
    return run_deployed("external", release_dir, options, settings)


@flow(name="run-package")
def run_package(
    release_dir: str, options: PackageOptions | None = None, settings: Settings = None
) -> PhaseResult:
    """``package``: checksums, log tarballs, the release directory's layout."""
    return run_deployed("package", release_dir, options, settings)


@flow(name="run-publish")
def run_publish(
    release_dir: str, options: PublishOptions, settings: Settings = None
) -> PhaseResult:
    """``publish``: the release copied to its destination (refused when units failed)."""
    return run_deployed("publish", release_dir, options, settings)


PHASE_DEPLOYMENTS: dict[str, Any] = {
    "discover": run_discover,
    "zeropoints": run_zeropoints,
    "merge": run_merge,
    "kdtree": run_kdtree,
    "bricks": run_bricks,
    "depthcut": run_depthcut,
    "tractor": run_tractor,
    "brightneighbors": run_brightneighbors,
    "depth": run_depth,
    "summary": run_summary,
    "sweeps": run_sweeps,
    "external": run_external,
    "package": run_package,
    "publish": run_publish,
}
"""The deployable flow of each phase, by the phase's name (``prefect.yaml`` lists the same)."""
