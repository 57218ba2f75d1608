"""The lite runbrick's stage machinery, checkpoints and the per-brick entry point ``run_brick``.

Stages run in legacypipe's order (``tims → refs → outliers → srcs → fitblobs → coadds →
writecat``) on a plain state dict; each stage function takes typed keyword arguments named
after state keys and returns the keys it adds.  As legacypipe's ``runstage``: a requested
stage (``--stage``) always runs; its prerequisite is loaded from its pickle when one exists
(unless ``--force-all``), else run first, recursively; the state after a stage is pickled,
atomically, when the stage is in ``--write-stage``.  The pickle holds the state minus the
context (layout, geometry, bands, options) and is checked to belong to the brick.

Checkpoints (``--checkpoint``) are a pickled list of finished blob results
``{brickname, iblob, bbox, result}``, rewritten atomically every ``period`` seconds when new
results arrived; on reading, an entry is kept only if its brick matches and its bbox equals the
recomputed blob's (legacypipe's ``_check_checkpoints``).
"""

from __future__ import annotations

import inspect
import logging
import os
import pickle
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsdr.survey.core.bricks import is_custom_brickname
from lsdr.survey.core.errors import InputFileError, UsageError
from lsdr.survey.core.fileio import atomic_path
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.runbrick.options import STAGES, RunbrickOptions
from lsdr.survey.runbrick.types import BrickGeometry

log = logging.getLogger("lsdr.survey.runbrick")

StageFn = Callable[..., dict[str, Any]]
BBox = tuple[int, int, int, int]

CONTEXT_KEYS = ("layout", "geom", "bands", "options")
"""State keys that describe the run, not its results: never pickled."""


class NothingToDoError(Exception):
    """No CCD touches the brick (legacypipe's ``NothingToDoError``): a result, not a failure."""


# -- stage chain ------------------------------------------------------------------------------
def call_stage(name: str, fn: StageFn, state: Mapping[str, Any]) -> dict[str, Any]:
    """Call a stage with the state entries its keyword parameters name."""
    kwargs: dict[str, Any] = {}
    for pname, param in inspect.signature(fn).parameters.items():
        if pname in state:
            kwargs[pname] = state[pname]
        elif param.default is inspect.Parameter.empty and param.kind not in (
            inspect.Parameter.VAR_KEYWORD,
            inspect.Parameter.VAR_POSITIONAL,
        ):
            raise UsageError(f"stage {name!r} needs {pname!r}, which no earlier stage provides")
    out = fn(**kwargs)
    if not isinstance(out, dict):
        raise TypeError(f"stage {name!r} returned {type(out).__name__}, not a dict")
    return out


def stage_pickle_path(pattern: str, brick: str, stage: str) -> Path:
    """The pickle file of a stage from a ``%(stage)s`` (and optional ``%(brick)s``) pattern."""
    return Path(pattern % {"brick": brick, "stage": stage})


def write_stage_pickle(path: Path, brick: str, stage: str, state: Mapping[str, Any]) -> Path:
    """Pickle the state after ``stage`` (context keys left out), atomically."""
    payload = {k: v for k, v in state.items() if k not in CONTEXT_KEYS and not k.startswith("_")}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pickle.dump(
            {"brickname": brick, "stage": stage, "state": payload},
            f,
            protocol=pickle.HIGHEST_PROTOCOL,
        )
    return path


def read_stage_pickle(path: Path, brick: str, stage: str) -> dict[str, Any]:
    """The state saved after ``stage``; raises ``InputFileError`` for another brick's pickle."""
    try:
        with open(path, "rb") as f:
            data = pickle.load(f)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError) as err:
        raise InputFileError(f"{path}: cannot read stage pickle ({err})") from err
    if not isinstance(data, dict) or data.get("brickname") != brick or data.get("stage") != stage:
        raise InputFileError(f"{path}: not the {stage!r} pickle of brick {brick}")
    state = data["state"]
    assert isinstance(state, dict)
    return state


def _target(chain: Sequence[str], stage: str) -> str:
    """The chain stage standing for a requested one (the last one at or before it)."""
    if stage in chain:
        return stage
    order = STAGES.index(stage) if stage in STAGES else len(STAGES)
    before = [s for s in chain if s in STAGES and STAGES.index(s) <= order]
    if not before:
        raise UsageError(f"stage {stage!r} is not in the chain {list(chain)}")
    return before[-1]


def run_stages(
    chain: Mapping[str, StageFn],
    state: dict[str, Any],
    options: RunbrickOptions,
    pickle_pattern: str,
) -> dict[str, Any]:
    """Run the requested stages of ``chain`` (ordered: each stage's prerequisite is the previous).

    ``state`` must hold the context (at least ``geom``); it is updated in place and returned,
    with ``_stages_run`` and ``_stages_loaded`` listing what was computed and what was read.
    """
    names = list(chain)
    brick = state["geom"].brickname
    forced = {_target(names, s) for s in options.stages}
    done: set[str] = set()
    state.setdefault("_stages_run", [])
    state.setdefault("_stages_loaded", [])

    def runstage(name: str) -> None:
        if name in done:
            return
        path = stage_pickle_path(pickle_pattern, brick, name)
        if not options.force_all and name not in forced and path.exists():
            log.info("%s: stage %s loaded from %s", brick, name, path)
            state.update(read_stage_pickle(path, brick, name))
            state["_stages_loaded"].append(name)
            done.add(name)
            return
        i = names.index(name)
        if i > 0:
            runstage(names[i - 1])
        t0 = time.monotonic()
        state.update(call_stage(name, chain[name], state))
        state["_stages_run"].append(name)
        done.add(name)
        log.info("%s: stage %s took %.1f s", brick, name, time.monotonic() - t0)
        if name in options.write_stages:
            write_stage_pickle(path, brick, name, state)
            log.info("%s: stage %s pickled to %s", brick, name, path)

    for stage in options.stages:
        runstage(_target(names, stage))
    return state


# -- checkpoints ------------------------------------------------------------------------------
def read_checkpoint(path: Path, brickname: str, bboxes: Mapping[int, BBox]) -> dict[int, Any]:
    """Finished blob results of a checkpoint that still apply: same brick, same blob bbox.

    A missing or unreadable checkpoint gives no results (the blobs are simply refitted).
    """
    if not path.exists():
        return {}
    try:
        with open(path, "rb") as f:
            entries = pickle.load(f)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError) as err:
        log.warning("%s: unreadable checkpoint ignored (%s)", path, err)
        return {}
    out: dict[int, Any] = {}
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or entry.get("brickname") != brickname:
            continue
        iblob = entry.get("iblob")
        if not isinstance(iblob, int) or iblob not in bboxes:
            continue
        if tuple(entry.get("bbox", ())) == tuple(bboxes[iblob]):
            out[iblob] = entry.get("result")
    log.info("%s: %d of %d checkpointed blobs kept", path, len(out), len(entries))
    return out


def write_checkpoint(path: Path, brickname: str, results: Mapping[int, tuple[BBox, Any]]) -> Path:
    """Write ``{iblob: (bbox, result)}`` as a checkpoint, atomically."""
    entries = [
        {"brickname": brickname, "iblob": int(i), "bbox": tuple(bbox), "result": result}
        for i, (bbox, result) in sorted(results.items())
    ]
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pickle.dump(entries, f, protocol=pickle.HIGHEST_PROTOCOL)
    return path


@dataclass
class Checkpointer:
    """Collects finished blobs and rewrites the checkpoint every ``period`` seconds."""

    path: Path | None
    brickname: str
    period: float = 600.0
    results: dict[int, tuple[BBox, Any]] = field(default_factory=dict)
    last_write: float = field(default_factory=time.monotonic)
    dirty: bool = False

    def add(self, iblob: int, bbox: BBox, result: Any) -> None:
        """Record a finished blob; write the checkpoint if the period has passed."""
        self.results[int(iblob)] = (tuple(bbox), result)  # type: ignore[assignment]
        self.dirty = True
        if time.monotonic() - self.last_write >= self.period:
            self.flush()

    def flush(self) -> None:
        """Write the checkpoint now if there are unsaved results."""
        if self.path is None or not self.dirty:
            return
        write_checkpoint(self.path, self.brickname, self.results)
        self.last_write = time.monotonic()
        self.dirty = False


# -- the brick ----------------------------------------------------------------------------------
@dataclass
class BrickResult:
    """What ``run_brick`` did for a brick."""

    brick: str
    status: str
    """"done", "nothing-to-do" or "skipped"."""
    products: tuple[Path, ...] = ()
    n_ccds: int = 0
    stages_run: tuple[str, ...] = ()
    stages_loaded: tuple[str, ...] = ()
    seconds: float = 0.0
    notes: tuple[str, ...] = ()
    fit_stats: Mapping[str, float] = field(default_factory=dict)
    """fitblobs' counts: blobs fitted, resumed from the checkpoint, bailed out; seconds."""


def stage_outliers() -> dict[str, Any]:
    """Stage ``outliers`` switched off (legacypipe's ``--no-outliers``): the tims as they are."""
    return {}


def default_chain() -> dict[str, StageFn]:
    """runbrick's stages in order: tims → refs → outliers → srcs → fitblobs → coadds → writecat."""
    from lsdr.survey.runbrick.catalog import stage_writecat
    from lsdr.survey.runbrick.coadds import stage_coadds
    from lsdr.survey.runbrick.detect import stage_srcs
    from lsdr.survey.runbrick.fit import stage_fitblobs
    from lsdr.survey.runbrick.outliers import stage_outliers as mask_outliers
    from lsdr.survey.runbrick.refs import stage_refs
    from lsdr.survey.runbrick.tims import stage_tims

    def tims_or_nothing(**kwargs: Any) -> dict[str, Any]:
        out = stage_tims(**kwargs)
        if not out["tims"]:
            raise NothingToDoError("no CCD touches the brick")
        return out

    tims_or_nothing.__signature__ = inspect.signature(stage_tims)  # type: ignore[attr-defined]
    return {
        "tims": tims_or_nothing,
        "refs": stage_refs,
        "outliers": mask_outliers,
        "srcs": stage_srcs,
        "fitblobs": stage_fitblobs,
        "coadds": stage_coadds,
        "writecat": stage_writecat,
    }


def tractor_reads(path: Path) -> bool:
    """Whether a tractor catalogue exists and its header and rows read (``--skip``)."""
    import fitsio

    if not path.exists():
        return False
    try:
        with fitsio.FITS(str(path)) as f:
            f[1].read_header()
            f[1].read(rows=[0]) if f[1].get_nrows() else None
    except (OSError, ValueError, IndexError):
        return False
    return True


def brick_geometry(brickname: str, options: RunbrickOptions) -> BrickGeometry:
    """The grid of a brick, or of ``options.radec`` when ``brickname`` is its ``custom-`` name.

    Raises ``UsageError`` when a custom name comes without ``radec`` or names another target,
    or when a grid brick is given with ``radec`` (runbrick takes only one of ``--brick`` and
    ``--radec``); ``BrickNameError`` for a name that is neither.
    """
    o = options
    if o.radec is None:
        if is_custom_brickname(brickname):
            raise UsageError(f"custom brick {brickname!r} needs its target: options.radec")
        return BrickGeometry.for_brick(
            brickname, width=o.width, height=o.height, pixscale=o.pixscale, zoom=o.zoom
        )
    if brickname != o.brickname:
        raise UsageError(
            f"brick {brickname!r} is not the target radec={o.radec!r}, which is "
            f"{o.brickname!r} (runbrick takes only one of --brick and --radec)"
        )
    ra, dec = o.radec
    return BrickGeometry.for_target(
        ra, dec, width=o.width, height=o.height, pixscale=o.pixscale, zoom=o.zoom
    )


def run_brick(
    layout: ReleaseLayout,
    brickname: str,
    options: RunbrickOptions,
    chain: Mapping[str, StageFn] | None = None,
) -> BrickResult:
    """Run the lite runbrick on a brick or target (``brick_geometry``); no CCD: "nothing-to-do"."""
    t0 = time.monotonic()
    if options.skip and tractor_reads(layout.tractor(brickname)):
        log.info("%s: tractor catalogue exists; skipping", brickname)
        return BrickResult(brickname, "skipped", (layout.tractor(brickname),))
    geom = brick_geometry(brickname, options)
    if chain is None:
        chain = default_chain()
    pattern = options.pickle_pattern or layout.pickle_pattern(brickname)
    state: dict[str, Any] = {
        "layout": layout,
        "geom": geom,
        "bands": tuple(options.bands),
        "options": options,
    }
    handler = _brick_log_handler(layout, brickname)
    try:
        run_stages(chain, state, options, pattern)
    except NothingToDoError as err:
        log.info("%s: nothing to do (%s)", brickname, err)
        return BrickResult(
            brickname, "nothing-to-do", seconds=time.monotonic() - t0, notes=(str(err),)
        )
    finally:
        if handler is not None:
            logging.getLogger("lsdr.survey.runbrick").removeHandler(handler)
            handler.close()
    products: list[Path] = []
    for key in ("outlier_products", "coadd_products", "catalog_products"):
        products.extend(Path(p) for p in state.get(key, ()))
    return BrickResult(
        brick=brickname,
        status="done",
        products=tuple(products),
        n_ccds=len(state.get("tims", ())),
        stages_run=tuple(state["_stages_run"]),
        stages_loaded=tuple(state["_stages_loaded"]),
        seconds=time.monotonic() - t0,
        fit_stats=dict(state.get("fit_stats", {})),
    )


def _brick_log_handler(layout: ReleaseLayout, brickname: str) -> logging.Handler | None:
    """Append the runbrick log of this brick to ``logs/<bri>/<brick>.log``."""
    path = layout.brick_log(brickname)
    try:
        os.makedirs(path.parent, exist_ok=True)
        handler = logging.FileHandler(path)
    except OSError:
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.setLevel(logging.INFO)
    logger = logging.getLogger("lsdr.survey.runbrick")
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    return handler
