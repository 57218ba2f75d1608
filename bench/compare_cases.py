"""lite against legacypipe on legacypipe's own test cases: ``lsdr compare`` over all of them.

Each case of ``bench_engines.CASES`` (copied to a scratch directory first) is run by ``lsdr
runbrick --zoom`` with each engine into its own output tree; the trees of one engine are then
merged into one directory (the bricks differ, so nothing collides) and ``lsdr compare`` reads
the two.  Run: ``cd bench && ../.venv/bin/python compare_cases.py --out DIR --report PATH``
(~1 minute; ``--cases NAME…`` for some of them, ``--keep DIR`` to keep the runs).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_engines import CASES, DATA, ENGINES, runbrick_command, writable_copy

PRODUCTS = ("tractor", "coadd")
"""What ``lsdr compare`` reads of a run (the rest of each tree is left behind)."""


def run_cases(scratch: Path, names: list[str]) -> None:
    """Each case with each engine; then one tree per engine holding every case's products."""
    for case in (c for c in CASES if c.name in names):
        survey = writable_copy(DATA / case.name, scratch / "data" / case.name)
        for engine in ENGINES:
            out = scratch / f"{engine}-{case.name}"
            done = subprocess.run(
                runbrick_command(case, survey, out, engine), capture_output=True, text=True
            )
            if done.returncode != 0:
                sys.exit(f"{case.name} {engine}: runbrick failed:\n{done.stderr}")
            for product in PRODUCTS:
                if (out / product).is_dir():
                    shutil.copytree(out / product, scratch / engine / product, dirs_exist_ok=True)
            print(f"{case.name} {case.brick}: {engine} done", flush=True)


def main() -> None:
    """Run the cases, then ``lsdr compare`` on the two merged trees."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="compare.json and the plots")
    parser.add_argument("--report", type=Path, help="the Markdown report (default OUT/compare.md)")
    parser.add_argument("--cases", nargs="*", default=[c.name for c in CASES])
    parser.add_argument(
        "--keep", type=Path, help="keep the runs here (a new directory; default: a temporary one)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lsdr-compare-cases-") as tmp:
        scratch = args.keep or Path(tmp)
        if args.keep and args.keep.exists():
            sys.exit(f"--keep {args.keep}: exists already")
        run_cases(scratch, args.cases)
        cmd = [sys.executable, "-m", "lsdr", "compare", str(scratch / "lite")]
        cmd += [str(scratch / "legacypipe"), "--out", str(args.out), "--no-truth"]
        if args.report:
            cmd += ["--report", str(args.report)]
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
