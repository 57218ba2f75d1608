"""Phase ``external``: match the release to external catalogues (SDSS quasars, spectra…)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from lsdr.flows.runner import phase_summary, release_bricks, run_units, settings_for
from lsdr.survey.layout import ReleaseLayout
from lsdr.tasks.postprocess import external_unit, plan_external

MATCH_RADIUS_ARCSEC = 1.5
"""match-external-catalog.py's default radius."""


@flow(name="external")
def external(
    release_dir: str,
    bricks: list[str] | None = None,
    catalogues: list[dict[str, Any]] | None = None,
    radius_arcsec: float = MATCH_RADIUS_ARCSEC,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One matched file per external catalogue, row-aligned with it.

    ``catalogues``: the list to match (name, path, copycols, ra/dec columns); default the
    release's ``external-catalogues.yaml`` if there is one, else the cookbook's five SDSS
    catalogues under ``external-input/``.
    """
    from lsdr.survey.external import catalogue_from_dict, release_catalogues

    s = settings_for(release_dir, settings)
    layout = ReleaseLayout(s.release_dir)
    cats = (
        [catalogue_from_dict(c) for c in catalogues]
        if catalogues is not None
        else release_catalogues(layout.root)
    )
    names = release_bricks(s.release_dir, bricks)
    report = run_units(
        "external", external_unit, plan_external(layout, names, cats, radius_arcsec), s
    )
    return phase_summary(report, external_dir=str(layout.external_dir))
