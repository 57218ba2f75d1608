"""What a flow runs with: its settings, and the ledger they name."""

from __future__ import annotations

from typing import Any

from lsdr.infra.ledger import Ledger, default_url
from lsdr.infra.settings import Settings
from lsdr.survey.core.layout import ReleaseLayout


def settings_for(release_dir: str, overrides: dict[str, Any] | None) -> Settings:
    """A flow's settings: the release's file and environment, then the run's overrides."""
    from pathlib import Path

    from lsdr.infra.settings import load_settings

    return load_settings(Path(release_dir), **(overrides or {}))


def ledger_for(settings: Settings) -> Ledger:
    """The ledger the settings name (default: the release's ``state/ledger.sqlite``)."""
    layout = ReleaseLayout(settings.release_dir)
    return Ledger(settings.ledger_url or default_url(layout.state_dir))
