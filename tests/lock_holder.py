"""A process that holds a release's lock through lsdr's own code, for the lock tests.

``python lock_holder.py RELEASE [shared|exclusive] [COMMAND]`` takes ``state/release.lock``
as a writer does (:func:`lsdr.infra.release_lock.release_lock`, recording COMMAND as its
command line), prints ``held`` once it holds it, and holds it until its standard input is
closed (then lets go, as a finished run does) or it is killed (then the kernel lets go, as
for a crashed run).
"""

from __future__ import annotations

import sys
from pathlib import Path

from lsdr.infra.release_lock import LockMode, release_lock
from lsdr.survey.core.layout import ReleaseLayout


def main() -> None:
    """Hold the lock until stdin closes."""
    root = Path(sys.argv[1])
    mode = LockMode(sys.argv[2]) if len(sys.argv) > 2 else LockMode.EXCLUSIVE
    command = sys.argv[3] if len(sys.argv) > 3 else None
    with release_lock(ReleaseLayout(root).release_lock, str(root), mode, command=command):
        print("held", flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
