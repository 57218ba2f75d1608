"""Phase ``external``: match the release to external catalogues (SDSS quasars, spectra…)."""

from __future__ import annotations

import logging
from typing import Any

from prefect import flow

from lsdr.flows.planning import release_bricks
from lsdr.flows.report import ExternalResult, phase_summary
from lsdr.flows.runner import run_units
from lsdr.flows.settings import settings_for
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.phase_options import ExternalOptions
from lsdr.tasks.external import external_unit, plan_external

log = logging.getLogger("lsdr.flows")


@flow(name="external")
def external(
    release_dir: str,
    options: ExternalOptions | None = None,
    settings: dict[str, Any] | None = None,
) -> ExternalResult:
    """One matched file per external catalogue, row-aligned with it.

    ``catalogues``: the list to match (name, path, copycols, ra/dec columns); default the
    release's ``external-catalogues.yaml`` if there is one, else the cookbook's five SDSS
    catalogues under ``external-input/``.
    """
    from lsdr.survey.posttractor.external import catalogue_from_dict, release_catalogues

    o = options or ExternalOptions()
    s = settings_for(release_dir, settings)
    layout = ReleaseLayout(s.release_dir)
    cats = (
        [catalogue_from_dict(c) for c in o.catalogues]
        if o.catalogues is not None
        else release_catalogues(layout.root)
    )
    names, left_out = release_bricks(s, o.bricks, "external")
    if not names:  # no catalogue to match against: nothing to do, not a failure of each match
        log.warning("external: no brick with a tractor catalogue; no catalogue matched")
    units = plan_external(layout, names, cats, o.radius_arcsec) if names else []
    report = run_units("external", external_unit, units, s)
    return phase_summary(
        report,
        result=ExternalResult,
        left_out=left_out,
        left_out_what="brick",
        external_dir=str(layout.external_dir),
    )
