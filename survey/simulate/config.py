"""What to simulate: the passes (camera, band, exposures), the region and the source densities."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from lsdr.survey.core import bricks as grid
from lsdr.survey.core.cameras import get_camera
from lsdr.survey.core.errors import UsageError

DEMO_BINNING = 2
"""Binning of the demo survey: 0.908″ pixels for 90Prime, 0.524″ for Mosaic (see docs)."""


@dataclass(frozen=True, slots=True)
class PassSpec:
    """Exposures of one camera and band: how many dithered passes tile the region."""

    camera: str
    band: str
    passes: int


DEFAULT_PASSES = (
    PassSpec("90prime", "g", 2),
    PassSpec("90prime", "r", 2),
    PassSpec("mosaic", "z", 2),
)


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate.  Defaults give the cookbook's worked example at the demo binning."""

    seed: int = 1
    region: grid.RaDecBox = field(default_factory=lambda: grid.RaDecBox(180.0, 181.0, 32.0, 33.0))
    passes: tuple[PassSpec, ...] = DEFAULT_PASSES
    binning: int = DEMO_BINNING
    star_density: float = 1500.0
    """Stars per square degree, r 15–24 (plus the bright stars)."""
    galaxy_density: float = 6000.0
    """Galaxies per square degree, r 18–24.5."""
    bright_star_density: float = 6.0
    """Stars per square degree with r 10–13: saturated cores, bleed trails, mask circles."""
    border_star: bool = True
    """Place a very bright star (r = 9) on a brick border of the region, and an r = 16.5
    galaxy on the same border at the edge of its BRIGHT circle (the bright-neighbour case)."""
    margin: float = 0.05
    """Degrees of sky simulated around the region's bricks."""
    cosmic_rays_per_mpix: float = 30.0
    """Cosmic rays per million native-size pixels per 100 s of exposure."""
    flagged_cr_fraction: float = 0.9
    """Fraction of cosmic rays the CP flagged in ``ood`` (the rest are left for outlier masks)."""
    reprocessed: int = 1
    """Exposures written twice, also as an older CP processing (discover keeps the newest)."""
    workers: int = 2

    def __post_init__(self) -> None:
        """Reject settings that cannot make a survey."""
        if self.binning < 1 or self.binning > 16:
            raise UsageError(f"binning {self.binning} must be between 1 and 16")
        if self.workers < 1:
            raise UsageError(f"workers {self.workers} must be at least 1")
        if not self.passes:
            raise UsageError("no camera/band to simulate")
        for spec in self.passes:
            camera = get_camera(spec.camera)
            camera.band(spec.band)
            if spec.passes < 1:
                raise UsageError(f"{spec.camera} {spec.band}: passes must be at least 1")
        for label, value in (
            ("star_density", self.star_density),
            ("galaxy_density", self.galaxy_density),
            ("bright_star_density", self.bright_star_density),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise UsageError(f"{label} {value} must be a non-negative number")


def parse_passes(
    cameras: Sequence[str] | None, bands: Sequence[str] | None, passes: int
) -> tuple[PassSpec, ...]:
    """PassSpecs for cameras given by name (each with all its bands, or only those asked for).

    With no cameras: the worked example's 90Prime g, r and Mosaic z (filtered by ``bands``).
    """
    if cameras:
        pairs = [(get_camera(n).name, b) for n in cameras for b in get_camera(n).band_names]
    else:
        pairs = [(s.camera, s.band) for s in DEFAULT_PASSES]
    specs = tuple(PassSpec(c, b, passes) for c, b in pairs if not bands or b in bands)
    if not specs:
        raise UsageError(f"none of the bands {list(bands or [])} is a band of the chosen cameras")
    return specs
