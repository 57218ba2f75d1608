"""A process killed in the middle of a ledger write, for the ledger tests.

``python ledger_writer.py RELEASE KEY…`` records every KEY of the ``probe`` phase as failed
through :meth:`lsdr.infra.ledger.Ledger.finish`, one transaction, but stops after the first two
rows are written into it: it prints ``mid-write`` and sleeps until the test kills it.  The rows
it wrote are in the open transaction (flushed to SQLite), never committed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

from lsdr.infra.ledger import Ledger, UnitFinish, default_url

ROWS_BEFORE_THE_KILL = 2


class StallingRows(list[UnitFinish]):
    """The rows to record; iterating them stops for good after the first few."""

    def __iter__(self) -> Iterator[UnitFinish]:
        """Yield the rows; before the third, say so and sleep (the kill comes here)."""
        for i, row in enumerate(list.__iter__(self)):
            if i == ROWS_BEFORE_THE_KILL + 1:  # the second row's UPDATE is flushed by now
                print("mid-write", flush=True)
                time.sleep(600)
            yield row


def main() -> None:
    """Write the rows, stalling in the transaction."""
    root = Path(sys.argv[1])
    rows = StallingRows(
        UnitFinish(key=key, state="failed", failure_class="infra", message="never committed")
        for key in sys.argv[2:]
    )
    Ledger(default_url(root / "state")).finish("probe", rows)


if __name__ == "__main__":
    main()
