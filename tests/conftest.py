"""Shared fixtures: the real legacypipe build, when the tests need it."""

from __future__ import annotations

import os

import pytest

from lsdr.infra.legacypipe_build import LegacypipeBuild, find_build


@pytest.fixture(scope="session")
def legacypipe() -> LegacypipeBuild:
    """The real legacypipe built from ../shared/vendor.

    Skipped when it is not built, unless LSDR_REQUIRE_LEGACYPIPE=1 (as in CI, which builds it
    first): then its absence is a failure, never a silent skip.
    """
    build = find_build()
    if build is None:
        message = "real legacypipe not built: run infra/scripts/build-legacypipe.sh"
        if os.environ.get("LSDR_REQUIRE_LEGACYPIPE") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return build
