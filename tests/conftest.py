"""Shared fixtures: the real legacypipe build, a Prefect server, a Dask cluster; no skips in CI.

With ``LSDR_REQUIRE_LEGACYPIPE=1`` (CI) no test may skip: what is missing fails the test
(``required_in_ci.unavailable``; ``required_in_ci.legacypipe_test_case`` for the test data in
../shared/data/legacypipe-test), and the hooks of ``required_in_ci`` turn any other skip into a
failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from demo_release import DemoRun, shared_demo
from required_in_ci import pytest_make_collect_report as pytest_make_collect_report
from required_in_ci import pytest_runtest_makereport as pytest_runtest_makereport
from required_in_ci import unavailable
from session_plan import pytest_collection_modifyitems as pytest_collection_modifyitems
from session_plan import pytest_runtest_logreport as pytest_runtest_logreport
from session_plan import pytest_sessionfinish as pytest_sessionfinish
from session_plan import pytest_sessionstart as pytest_sessionstart
from small_survey import SmallRelease, shared_release

from lsdr.infra.legacypipe_build import LegacypipeBuild, find_build


@pytest.fixture(scope="session")
def legacypipe() -> LegacypipeBuild:
    """The real legacypipe built from ../shared/vendor.

    Skipped when it is not built, unless LSDR_REQUIRE_LEGACYPIPE=1 (as in CI, which builds it
    first): then its absence is a failure, never a silent skip.
    """
    build = find_build()
    if build is None:
        unavailable("real legacypipe not built: run infra/scripts/build-legacypipe.sh")
    return build


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prefect server started by lsdr for this test session; its API URL.

    The URL goes into this process's Prefect settings and into the environment, which the
    Dask workers that tests start inherit (so they report to the same server).
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from lsdr.infra.prefect_server import client_environment, running_server

    state = tmp_path_factory.mktemp("prefect-state")
    with running_server(state) as info:
        env = client_environment(info)
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            with temporary_settings(updates={PREFECT_API_URL: info.url}):
                yield info.url
                # Send the last flow logs while the server is still up.
                from prefect.logging.handlers import APILogHandler

                APILogHandler().flush()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@pytest.fixture(scope="session")
def demo_release(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """The demo release, made once for the whole session (all xdist workers) and shared.

    Read it, or change a copy of it (``demo_release.copy_release``).
    """
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    return shared_demo(shared / "shared-demo")


@pytest.fixture(scope="session")
def small_release(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> SmallRelease:
    """The small survey and its release (``tests/small_survey.py``), made once for the session.

    Shared by all xdist workers, as the demo is; read-only: copy them to change them.
    """
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    return shared_release(shared / "shared-small-release")


@pytest.fixture(scope="session")
def dask_address(prefect_api: str) -> Iterator[str]:
    """One LocalCluster (2 single-threaded worker processes) shared by the flow tests.

    Started after the Prefect server so that its workers inherit ``PREFECT_API_URL``.
    """
    from distributed import LocalCluster

    from lsdr.infra.profiles.local import configure_worker_environment

    configure_worker_environment()  # as lsdr's own clusters (and not poisoning this process)
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    try:
        yield str(cluster.scheduler_address)
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def border_release(tmp_path_factory: pytest.TempPathFactory) -> object:
    """Two bricks' lite-runbrick products over the border star (read-only; copy to write)."""
    from border_release import build_border_release

    return build_border_release(tmp_path_factory.getbasetemp() / "border-release")


@pytest.fixture
def fresh_release(tmp_path: Path) -> Path:
    """A release as a survey starts out: one CP image under images/, nothing run yet."""
    root = tmp_path / "release"
    night = root / "images" / "90prime" / "CP20170101"
    night.mkdir(parents=True)
    (night / "ksb_170101_000000_ooi_g_v1.fits.fz").write_bytes(b"not read by these tests")
    return root
