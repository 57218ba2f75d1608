"""Allow ``python -m lsdr``."""

from lsdr.cli import main

main()
