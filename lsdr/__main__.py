"""Allow ``python -m lsdr``."""

from lsdr.cli import app

app()
