"""The CLI's options that are not phase options, checked in the CLI process before anything starts.

The phase options are checked by their models (:mod:`lsdr.phase_flags`); here are the settings
given as flags, the publish destination, the simulator's and the output directory's.  Each
check hands an option's value to the domain's own validator (``survey/``, the settings model in
``infra/settings.py``) and turns its error into one line naming the option and the value.
The commands call them before the Prefect server, the Dask cluster or any file of the release
is touched, so a bad option exits with status 2 and writes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsdr.survey.core.errors import UsageError

if TYPE_CHECKING:
    from lsdr.survey.core.bricks import RaDecBox
    from lsdr.survey.simulate.config import SimulationConfig

SETTING_OPTIONS: dict[str, str] = {
    "n_workers": "--workers",
    "unit_threads": "--threads",
    "batch_size": "--batch-size",
    "lock_wait": "--wait",
}
"""The option of ``lsdr run`` that overrides each setting, for naming it in an error."""


def option_error(option: str, value: object, err: Exception) -> UsageError:
    """``err`` as an error of ``option``: ``--width 0: brick size 0x3600 must be positive``.

    A text value that the reason already quotes is not repeated (``--brick: '9999p999' is
    not a brick of the Legacy Surveys grid``).
    """
    reason = str(err)
    if isinstance(value, str) and repr(value) in reason:
        return UsageError(f"{option}: {reason}")
    shown: object = value
    if isinstance(value, str):
        shown = repr(value)
    elif isinstance(value, float):
        shown = f"{value:g}"  # "--pixscale 0", not "--pixscale 0.0"
    return UsageError(f"{option} {shown}: {reason}")


def _check(option: str, value: object, check: Callable[[], object]) -> None:
    """Run a domain check of ``value``; its :class:`UsageError` becomes the option's error."""
    try:
        check()
    except UsageError as err:
        raise option_error(option, value, err) from None


def timeout(seconds: float | None) -> float | None:
    """``--timeout``: seconds above 0 (None: not given, the ``timeouts`` setting applies)."""
    if seconds is not None and not seconds > 0:
        raise option_error("--timeout", seconds, UsageError("a timeout must be above 0 seconds"))
    return seconds


def cameras(names: list[str] | None) -> list[str] | None:
    """``--camera``: each a camera lsdr knows (90prime, mosaic, decam)."""
    from lsdr.survey.core.cameras import get_camera

    for name in names or []:
        _check("--camera", name, partial(get_camera, name))
    return names


def destination(release_dir: Path, where: str | None) -> str | None:
    """``--destination``: something rsync takes as a destination, outside the release."""
    if where is None:
        return None
    from lsdr.survey.core.layout import ReleaseLayout
    from lsdr.survey.posttractor.publish import check_destination

    _check("--destination", where, partial(check_destination, ReleaseLayout(release_dir), where))
    return where


def setting_overrides(overrides: dict[str, Any]) -> None:
    """Settings given as options (``--workers``, ``--threads``, ``--batch-size``): each valid."""
    from lsdr.infra.settings import check_setting

    for name, value in overrides.items():
        option = SETTING_OPTIONS.get(name, name)
        _check(option, value, partial(check_setting, name, value))


def simulation(
    camera_names: list[str] | None,
    bands: list[str] | None,
    passes: int,
    region: RaDecBox,
    seed: int,
    binning: int,
    workers: int,
) -> SimulationConfig:
    """``lsdr simulate`` and ``lsdr demo``: a survey the simulator can make, each option named.

    The simulator checks its configuration before it writes anything; this names the option
    of each refused value (``--workers 0: workers 0 must be at least 1``).  A negative seed,
    which numpy's ``SeedSequence`` refuses only once the simulation has started, is refused
    here.
    """
    from lsdr.survey.simulate.config import SimulationConfig, parse_passes

    cameras(camera_names)
    if seed < 0:
        raise UsageError(f"--seed {seed}: the seed must be a non-negative integer")
    _check("--binning", binning, partial(SimulationConfig, binning=binning))
    _check("--workers", workers, partial(SimulationConfig, workers=workers))
    specs = parse_passes(camera_names, bands, passes)
    _check("--passes", passes, partial(SimulationConfig, passes=specs))
    return SimulationConfig(
        seed=seed, region=region, passes=specs, binning=binning, workers=workers
    )


def output_dir(option: str, path: Path) -> Path:
    """``--out``: a directory to write into, or one that does not exist yet (not a file)."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path}: exists and is not a directory")
    return path


def writable_state(release_dir: Path) -> None:
    """The release's ``state/`` is writable (or, before a first run, its parent), else one line.

    Every writer writes there first (the lock, the ledger, the logs): a read-only mount (EROFS)
    or a directory this user may not write (EACCES) is refused before anything starts, naming
    the directory and the fix, rather than as a traceback from the first file opened.
    """
    from lsdr.survey.core.layout import ReleaseLayout

    state = ReleaseLayout(release_dir).state_dir
    where = state if state.exists() else state.parent
    if os.access(where, os.W_OK | os.X_OK):
        return
    if os.statvfs(where).f_flag & os.ST_RDONLY:
        why, fix = "a read-only file system (EROFS)", "remount it read-write"
    else:
        why, fix = (
            f"permission denied to uid {os.geteuid()} (EACCES)",
            "give this user write access",
        )
    raise UsageError(
        f"{where} is not writable ({why}): lsdr writes the release's lock, ledger and logs in "
        f"{state}; {fix}, then rerun"
    )


# -- what the CLI library itself refuses (a value of the wrong type, an unknown option) --------
def library_error_line(err: Exception, argv: Sequence[str]) -> str:
    """One line for a usage error the CLI library raised while parsing ``argv``.

    A bad value names the option and the value as :func:`option_error` does
    (``--width 'abc': input should be a valid integer, …``); any other usage error (an unknown
    option or command, a missing option) is the library's message and where the help is.
    """
    param = getattr(err, "param", None)
    message = str(getattr(err, "message", "") or err)
    if param is not None and _is_bad_value(err):
        value = _bad_value(err, param, argv)
        name = _param_name(param)
        reason = _lower_first(message.removeprefix("Value error, "))  # pydantic's ValueError
        if value is None:
            return f"{name}: {reason}"
        return str(option_error(name, value, UsageError(reason)))
    format_message = getattr(err, "format_message", None)
    text = format_message() if callable(format_message) else message
    ctx = getattr(err, "ctx", None)
    path = getattr(ctx, "command_path", None)
    where = f" (see '{path} --help')" if path else ""
    return f"{_lower_first(' '.join(str(text).split())).rstrip('.')}{where}"


def _is_bad_value(err: Exception) -> bool:
    """A value the library refused (its ``BadParameter``), not a missing option."""
    import typer

    return isinstance(err, typer.BadParameter) and type(err).__name__ != "MissingParameter"


def _param_name(param: object) -> str:
    """An option's long name (``--width``), else its first; an argument's name (``RA``)."""
    opts = [str(o) for o in getattr(param, "opts", None) or []]
    if getattr(param, "param_type_name", "") == "option" and opts:
        return next((o for o in opts if o.startswith("--")), opts[0])
    return str(getattr(param, "metavar", None) or getattr(param, "name", "") or "").upper()


def _bad_value(err: Exception, param: object, argv: Sequence[str]) -> object | None:
    """The value the library refused: from its validation error, else the option's last one."""
    errors = getattr(err.__cause__, "errors", None)
    if callable(errors):
        items = errors()
        given = items[0].get("input") if items else None
        if isinstance(given, str | int | float):
            return given
    opts = [str(o) for o in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]]
    value: str | None = None
    for i, token in enumerate(argv):
        if token == "--":
            break
        for opt in opts:
            if token == opt and i + 1 < len(argv):
                value = argv[i + 1]
            elif opt.startswith("--") and token.startswith(f"{opt}="):
                value = token.partition("=")[2]
            elif not opt.startswith("--") and token.startswith(opt) and token != opt:
                value = token[len(opt) :]  # -Wabc
    return value


def _lower_first(text: str) -> str:
    """``Input should be…`` → ``input should be…`` (not ``RA …``: an initialism stays)."""
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        return text[0].lower() + text[1:]
    return text
