"""Which flags a legacypipe version's scripts take: the DR6-era cookbook's, or today's.

legacypipe's command lines changed between data releases (``legacy_zeropoints.py
--splinesky --psf --run-calibs`` of the DR6/DR7 cookbook became ``--run-calibs-only`` /
``--no-splinesky``), so every command is built for one :class:`FlagSet`, chosen from the
configured version's ``git describe`` (``DR11.1.0-28-g93e2d828``).

Where the two sets differ: legacy_zeropoints' calib flags and image path (the cookbook's full
path and ``--splinesky --psf --run-calibs``; today's path relative to ``images/`` with
``--survey-dir``, calibs always made), runbrick's production flags (today's add
``--write-stage srcs``), the depth cut (``legacyanalysis/depth-cut.py`` vs
``legacypipe/depthcut.py``) and two script names (``queue-calibs.py``, ``merge-calibs.py`` vs
``queue_calibs.py``, ``legacyzpts/merge_calibs.py``).  Today's set is checked against the
vendored parsers (``tests/test_legacypipe_commands.py``); the cookbook's comes from the cookbook
and is unverified where the cookbook is silent (runbrick's production flags, merge-calibs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from lsdr.survey.core.errors import UsageError

ENGINE_NAME = "legacypipe"
"""The engine name recorded with every command built here."""


class FlagSet(StrEnum):
    """A family of legacypipe releases whose scripts take the same flags."""

    COOKBOOK = "cookbook"
    """DR6/DR7: the flags of legacypipe's ``doc/cookbook.md``."""
    CURRENT = "current"
    """DR9, DR10, DR11 (today's ``get_parser``s)."""


FLAG_SETS: dict[int, FlagSet] = {
    6: FlagSet.COOKBOOK,
    7: FlagSet.COOKBOOK,
    9: FlagSet.CURRENT,
    10: FlagSet.CURRENT,
    11: FlagSet.CURRENT,
}
"""Data-release major number → flag set; DR8 and older than DR6 are unknown, not guessed."""

_DESCRIBE_RE = re.compile(r"^DR(?P<major>\d+)(\.\d+)*(-\d+-g[0-9a-f]+)?(-dirty)?$", re.IGNORECASE)


@dataclass(frozen=True)
class LegacypipeVersion:
    """A configured legacypipe version: its ``git describe`` string and its flag set."""

    describe: str
    """legacypipe's ``git describe`` (``DR10.1.3``, ``DR11.1.0-28-g93e2d828``)."""
    flag_set: FlagSet
    """The flags its scripts take."""

    @classmethod
    def parse(cls, describe: str) -> LegacypipeVersion:
        """The version named by a ``git describe`` string; an unknown one is a UsageError."""
        match = _DESCRIBE_RE.match(describe.strip()) if isinstance(describe, str) else None
        if match is None:
            raise UsageError(
                f"legacypipe version {describe!r} is not a 'git describe' of a data-release "
                "tag (DR<n>[.<m>…][-<k>-g<hash>], e.g. DR11.1.0-28-g93e2d828)"
            )
        major = int(match["major"])
        if major not in FLAG_SETS:
            known = ", ".join(f"DR{n}" for n in FLAG_SETS)
            raise UsageError(
                f"legacypipe version {describe!r}: no known flag set for DR{major} (known: {known})"
            )
        return cls(describe.strip(), FLAG_SETS[major])
