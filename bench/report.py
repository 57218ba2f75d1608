"""Printing and saving a benchmark's report (shared by the scripts in bench/)."""

from __future__ import annotations

import json
from pathlib import Path


def emit(report: dict[str, float | int | str], json_path: Path | None) -> None:
    """Print one aligned line per measure; save the report as JSON when asked."""
    for key, value in report.items():
        if isinstance(value, float):
            print(f"{key:32s} {value:,.4g}")
        elif isinstance(value, int):
            print(f"{key:32s} {value:,}")
        else:
            print(f"{key:32s} {value}")
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2))
