"""Validate a simulated release's tractor catalogues against its truth catalogue.

Runs the lite runbrick on the given bricks (unless ``--no-run`` or their catalogue exists and
``--reuse`` is given), matches the catalogues to ``truth/truth.fits`` and prints the acceptance
numbers; writes them as JSON and the completeness and flux-residual PNGs to ``--out``.
Run: ``.venv/bin/python bench/validate_release.py --release DIR --bricks 1804p325 1801p322
--width 3600 [--threads 2] [--reuse] [--out docs/validation]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.simulate.validate import (
    Thresholds,
    plot_completeness,
    plot_flux_ratio,
    plot_flux_residuals,
    validate_bricks,
)


def run_bricks(
    layout: ReleaseLayout, bricks: list[str], width: int, threads: int, reuse: bool
) -> dict[str, float]:
    """Run the lite runbrick on each brick; wall seconds per brick (0 when reused)."""
    from lsdr.survey.runbrick.options import RunbrickOptions
    from lsdr.survey.runbrick.stages import run_brick

    seconds: dict[str, float] = {}
    for brick in bricks:
        if reuse and layout.tractor(brick).exists():
            seconds[brick] = 0.0
            continue
        t0 = time.perf_counter()
        opts = RunbrickOptions(width=width, height=width, threads=threads, force_all=True)
        run_brick(layout, brick, opts)
        seconds[brick] = time.perf_counter() - t0
        print(f"ran {brick} ({width}x{width}) in {seconds[brick]:.1f} s", flush=True)
    return seconds


def _clean(value: Any) -> Any:
    """JSON-safe values (NaN → None)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def main() -> None:
    """Parse the arguments, run and validate the bricks, write numbers and plots."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", type=Path, required=True, help="simulated release root")
    parser.add_argument("--bricks", nargs="+", required=True, help="brick names")
    parser.add_argument("--width", type=int, default=3600, help="brick grid size (pixels)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reuse", action="store_true", help="keep existing catalogues")
    parser.add_argument("--no-run", action="store_true", help="only validate existing output")
    parser.add_argument("--out", type=Path, default=Path("docs/validation"))
    args = parser.parse_args()

    layout = ReleaseLayout(args.release)
    seconds: dict[str, float] = {}
    if not args.no_run:
        seconds = run_bricks(layout, args.bricks, args.width, args.threads, args.reuse)
    metrics, match = validate_bricks(layout, args.bricks, width=args.width)
    args.out.mkdir(parents=True, exist_ok=True)
    plot_completeness(match, args.out / "completeness.png")
    plot_flux_residuals(match, args.out / "flux-residuals.png")
    plot_flux_ratio(match, args.out / "flux-ratio.png")
    report = {
        "release": str(args.release),
        "width": args.width,
        "run_seconds": seconds,
        "thresholds": dataclasses.asdict(Thresholds()),
        "metrics": dataclasses.asdict(metrics),
        "passed": metrics.passed(),
    }
    (args.out / "metrics.json").write_text(json.dumps(_clean(report), indent=2) + "\n")
    for key, value in dataclasses.asdict(metrics).items():
        print(f"{key:24s} {value}")
    print(f"all checks pass: {metrics.passed()}")


if __name__ == "__main__":
    main()
