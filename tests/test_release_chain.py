"""The release chain's bookkeeping: in-place updates keep a unit done; the release summary."""

from __future__ import annotations

import time
from pathlib import Path

from lsdr.flows.release import summary_markdown
from lsdr.survey.layout import ReleaseLayout
from lsdr.tasks.units import (
    Unit,
    UnitResult,
    amend_outputs,
    done_result,
    fingerprint,
    write_sidecar,
)


def test_amended_outputs_keep_the_unit_done(tmp_path: Path) -> None:
    """A later phase rewrites a done unit's output: done again only after the re-stamp."""
    layout = ReleaseLayout(tmp_path)
    product = tmp_path / "maskbits.fits"
    product.write_bytes(b"original")
    unit = Unit("tractor", "1804p325")
    fp = fingerprint(unit, "test")
    write_sidecar(layout, UnitResult("tractor", "1804p325", "done", fp, outputs=(str(product),)))
    assert done_result(layout, unit, fp) is not None
    time.sleep(0.01)
    product.write_bytes(b"updated by brightneighbors")
    assert done_result(layout, unit, fp) is None
    assert amend_outputs(layout, "tractor", "1804p325", [product])
    assert done_result(layout, unit, fp) is not None
    assert not amend_outputs(layout, "tractor", "1801p325", [product])  # no sidecar: nothing


def test_release_summary_lists_phases_failures_and_products(tmp_path: Path) -> None:
    """Units per phase, each failure with its class, the products that exist, the plots."""
    layout = ReleaseLayout(tmp_path)
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "depth-histogram.png").write_bytes(b"png")
    layout.brick_summary.write_bytes(b"x")
    results = [
        {"phase": "tractor", "counts": {"done": 14, "cached": 0, "failed": 1},
         "failed": [["1801p320", "science", "truncated image c4d.fits.fz"]]},
        {"phase": "publish", "counts": {"done": 0, "cached": 0, "failed": 0}, "failed": [],
         "skipped": "failed units in tractor"},
    ]  # fmt: skip
    text = summary_markdown(layout, results)
    assert "| tractor | 14 | 0 | 1 |" in text
    assert "- tractor 1801p320 [science]: truncated image c4d.fits.fz" in text
    assert "- publish not run: failed units in tractor" in text
    assert f"- brick summary: `{layout.brick_summary}`" in text
    assert "depth-histogram.png" in text
    assert "sweeps" not in text  # no sweep directory: not listed as a product
