"""lsdr's settings: one typed model, read once at the edge, with one documented precedence.

Precedence, lowest to highest:

1. the defaults below;
2. the cluster profile's file, ``infra/profiles/<cluster>.yaml``, then ``cluster_file`` (a
   profile file of one's own) over it: the profile's values of the settings it reads;
3. the release's config file, ``<release>/lsdr.yaml`` (or the file named by ``LSDR_CONFIG``);
4. environment variables ``LSDR_<FIELD>`` (e.g. ``LSDR_BATCH_SIZE=50``, ``LSDR_ENGINE=lite``);
5. command-line options and flow parameters (passed to :func:`load_settings` as overrides).

``cluster`` and ``cluster_file`` are themselves read with 3-5 first, since they say which
profile files apply.  Nothing deeper in the code reads the environment: flows and tasks
receive a ``Settings``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from lsdr.infra.profiles.base import ProfileSettingError
from lsdr.infra.profiles.registry import DEFAULT_PROFILE, get_profile, profile_file
from lsdr.survey.core.errors import SurveyError, UsageError
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.engines.registry import DEFAULT_ENGINE

ENV_PREFIX = "LSDR_"


def _default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def _workers(value: Any) -> Any:
    """``auto``: one worker per CPU of this machine; any other value as given."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return _default_workers()
    return value


def _memory_size(value: Any) -> Any:
    """``auto`` or a size with its unit (``4GiB``, ``1.5 GB``): a bare number has no unit."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return value  # the str type refuses it
    if value.strip().lower() == "auto":
        return "auto"
    try:
        float(value)
    except ValueError:
        pass
    else:
        raise PydanticCustomError(
            "memory_unit",
            "{value} has no unit: give one, as in '4GiB' (or 'auto')",
            {"value": value},
        )
    from dask.utils import parse_bytes

    try:
        size = parse_bytes(value)
    except ValueError:
        size = 0
    if size <= 0:
        raise PydanticCustomError(
            "memory_size",
            "'{value}' is not a positive memory size such as '4GiB' (or 'auto')",
            {"value": value},
        )
    return value


def _known_profile(value: str) -> str:
    """A cluster profile of the registry (an unknown one fails before anything starts)."""
    try:
        get_profile(value)
    except UsageError as err:
        raise PydanticCustomError("cluster", "{reason}", {"reason": str(err)}) from None
    return value


def _existing_file(value: Path) -> Path:
    """A file that exists, as an absolute path (flows and workers may run elsewhere)."""
    path = value.expanduser().resolve()
    if not path.is_file():
        raise PydanticCustomError("file", "no such file: {path}", {"path": str(path)})
    return path


WALLTIME = re.compile(
    r"(?:(?P<days>\d+)-)?(?P<hours>\d+):(?P<minutes>[0-5]\d):(?P<seconds>[0-5]\d)"
)
"""A SLURM time limit as lsdr takes it: ``HH:MM:SS`` or ``D-HH:MM:SS`` (hours below 24 then)."""


def _walltime(value: str) -> str:
    """``HH:MM:SS`` or ``D-HH:MM:SS``, above zero: SLURM's time limit of a worker job."""
    match = WALLTIME.fullmatch(value.strip())
    if match is None or (match["days"] is not None and int(match["hours"]) > 23):
        raise PydanticCustomError(
            "walltime",
            "'{value}' is not a walltime: give HH:MM:SS or D-HH:MM:SS, as in '02:00:00'",
            {"value": value},
        )
    if not any(int(part) for part in match.groups(default="0")):
        raise PydanticCustomError(
            "walltime",
            "'{value}' is zero: give a time above it, as in '02:00:00'",
            {"value": value},
        )
    return value.strip()


def _duration(value: Any) -> Any:
    """A Dask duration with its unit (``110m``, ``5m``, ``1h``), at least zero."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return value  # the str type refuses it
    from dask.utils import parse_timedelta

    try:
        seconds = parse_timedelta(value)
    except (ValueError, KeyError):
        seconds = None
    if seconds is None or seconds < 0 or not any(c.isalpha() for c in value):
        raise PydanticCustomError(
            "duration",
            "'{value}' is not a duration with its unit, as in '110m' or '1h'",
            {"value": value},
        )
    return value.strip()


def _image(value: str) -> str:
    """``repository:tag`` as the launchers take it (no space or shell metacharacter, a tag)."""
    from lsdr.infra.launchers.image import parse_image

    try:
        parse_image(value)
    except UsageError as err:
        raise PydanticCustomError("image", "{reason}", {"reason": str(err)}) from None
    return value


def _known_launcher(value: str) -> str:
    """A container launcher of the registry (``none``, ``shifter``, ``podman-hpc``, …)."""
    from lsdr.infra.launchers.registry import known_launchers

    if value not in known_launchers():
        raise PydanticCustomError(
            "launcher",
            "unknown container launcher '{value}': known launchers are {known}",
            {"value": value, "known": ", ".join(known_launchers())},
        )
    return value


UNIT_PHASES = (
    "discover",
    "zeropoints",
    "merge-calibs",
    "merge",
    "kdtree",
    "bricks",
    "depthcut",
    "tractor",
    "brightneighbors",
    "depth",
    "depth-merge",
    "summary",
    "summary-merge",
    "sweeps",
    "external",
    "verify",
    "checksums",
    "logs",
    "publish",
)
"""The phases whose units the ledger records (``lsdr status``'s names): what ``timeouts`` keys."""
COMMAND_UNIT_PHASES: dict[str, tuple[str, ...]] = {
    "merge": ("merge-calibs", "merge"),
    "depth": ("depth", "depth-merge"),
    "summary": ("summary", "summary-merge"),
    "package": ("verify", "checksums", "logs"),
}
"""The phases of the units an ``lsdr run`` command runs, where not only its own name."""


def unit_phases(command: str) -> tuple[str, ...]:
    """The phases of the units ``lsdr run <command>`` runs (``merge``: merge-calibs, merge)."""
    return COMMAND_UNIT_PHASES.get(command, (command,))


def command_of(phase: str) -> str:
    """The ``lsdr run`` command that runs a phase's units (``merge-calibs``: ``merge``)."""
    return next((c for c, phases in COMMAND_UNIT_PHASES.items() if phase in phases), phase)


def _phase_timeouts(value: dict[str, float]) -> dict[str, float]:
    """Each key a phase whose units run (``merge-calibs``, ``tractor``…), each timeout above 0 s."""
    for phase, seconds in value.items():
        if phase not in UNIT_PHASES:
            raise PydanticCustomError(
                "timeouts",
                "unknown phase '{phase}': the phases are {known}",
                {"phase": phase, "known": ", ".join(UNIT_PHASES)},
            )
        if not seconds > 0:
            raise PydanticCustomError(
                "timeouts",
                "{phase}: timeout {seconds} s must be above 0",
                {"phase": phase, "seconds": seconds},
            )
    return value


WorkerCount = Annotated[int, BeforeValidator(_workers)]
MemorySize = Annotated[str, BeforeValidator(_memory_size)]
ProfileName = Annotated[str, AfterValidator(_known_profile)]
ProfileFile = Annotated[Path, AfterValidator(_existing_file)]
Walltime = Annotated[str, AfterValidator(_walltime)]
Duration = Annotated[str, BeforeValidator(_duration)]
ImageReference = Annotated[str, AfterValidator(_image)]
LauncherName = Annotated[str, AfterValidator(_known_launcher)]
PhaseTimeouts = Annotated[dict[str, float], AfterValidator(_phase_timeouts)]


class Settings(BaseSettings):
    """Everything that decides where and how a release runs (not what the science measures)."""

    model_config = SettingsConfigDict(env_prefix="LSDR_", extra="forbid", frozen=True)

    release_dir: Path = Field(Path("."), description="The release (and survey) directory.")
    engine: str = Field(
        DEFAULT_ENGINE,
        description="Science engine: a known name (lite, lsdr's own) or module:attribute of an "
        "importable engine (survey/engines); checked when the settings are read.",
    )
    cluster: ProfileName = Field(
        DEFAULT_PROFILE,
        description="Cluster profile: where Dask workers run (infra/profiles/); checked when "
        "the settings are read.",
    )
    cluster_file: ProfileFile | None = Field(
        None,
        description="A profile file of one's own: its keys override the profile's own file "
        "(relative to lsdr.yaml when given there).",
    )
    n_workers: WorkerCount = Field(
        default_factory=_default_workers, ge=1, description="Dask workers ('auto': one per CPU)."
    )
    threads_per_worker: int = Field(1, ge=1, description="Threads per Dask worker.")
    worker_memory: MemorySize = Field(
        "auto", description="Dask worker memory limit with its unit ('4GiB'), or 'auto'."
    )
    unit_threads: int = Field(1, ge=1, description="Threads a unit (image, brick) may use.")
    unit_memory_limit_mb: int | None = Field(
        None,
        ge=64,
        description="Address-space limit per unit above the worker's own size (MB); "
        "exceeding it raises a real MemoryError (failure class oom).",
    )
    nodes: int = Field(1, ge=1, description="SLURM worker jobs, one node each (a fixed pool).")
    bricks_per_node: int = Field(
        1, ge=1, description="Worker processes per SLURM job: bricks a node runs at once."
    )
    account: str | None = Field(
        None, description="SLURM account charged (--account); none: the user's default."
    )
    qos: str = Field(
        "regular", description="SLURM quality of service (--qos); the site's profile checks it."
    )
    walltime: Walltime = Field(
        "02:00:00", description="Time limit of each SLURM job: HH:MM:SS or D-HH:MM:SS."
    )
    worker_lifetime: Duration = Field(
        "110m", description="A SLURM worker leaves gracefully after this (dask --lifetime)."
    )
    lifetime_stagger: Duration = Field(
        "5m", description="Random spread of worker_lifetime (dask --lifetime-stagger)."
    )
    launcher: LauncherName = Field(
        "none",
        description="How the science commands run: none (here), shifter, podman-hpc, apptainer "
        "or docker (infra/launchers/).",
    )
    image: ImageReference | None = Field(
        None, description="legacypipe's container image, repository:tag (none: no image)."
    )
    legacypipe_prefix: Path | None = Field(
        None,
        description="The legacypipe build the none launcher runs (infra/scripts/build-legacypipe.sh"
        "'s prefix); default $LSDR_LEGACYPIPE_PREFIX, else /var/cache/lsdr/legacypipe-<hash>.",
    )
    legacypipe_py: Path = Field(
        Path("/src/legacypipe/py"),
        description="legacypipe's py/ directory inside the container image (container launchers).",
    )
    legacypipe_version: str | None = Field(
        None,
        description="legacypipe's git describe (DR11.1.0-28-g93e2d828): picks its flag set; "
        "default the build's own (required with a container launcher).",
    )
    batch_size: int = Field(
        250, ge=1, description="Most units per Prefect task (Prefect costs ~0.1-0.2 s a task)."
    )
    max_attempts: int = Field(
        3, ge=1, description="Starts of a unit before infra failures are final."
    )
    timeouts: PhaseTimeouts = Field(
        default_factory=dict,
        description="Seconds a unit of a phase may run, by phase ({tractor: 14400}); past it the "
        "unit is stopped and fails as class timeout (bricks: rerun from the checkpoint with "
        "--bail-out). A phase not named has no timeout.",
    )
    space_backoff: Duration = Field(
        "1m",
        description="A unit that found its file system full (ENOSPC, EDQUOT) is resubmitted "
        "after this wait, doubled at each next one, once that file system has "
        "space_min_free_mb free (flows/space_policy.py).",
    )
    space_backoffs: int = Field(
        3,
        ge=0,
        description="Waits for free space before a unit whose file system stays full is a "
        "recorded infra failure.",
    )
    space_min_free_mb: int = Field(
        1024,
        ge=0,
        description="Free space (MB, df's Available) a full file system must have again before "
        "its units are resubmitted.",
    )
    ledger_url: str | None = Field(
        None, description="SQLAlchemy URL of the unit ledger; default state/ledger.sqlite."
    )
    prefect_api_url: str | None = Field(
        None,
        description="Prefect server API; default: the release's own server (lsdr server up).",
    )
    progress: bool = Field(
        True, description="A live progress table on a terminal (else a line per finished phase)."
    )
    lock_wait: bool = Field(
        False,
        description="When another writer holds the release's lock (state/release.lock), wait "
        "for it rather than refuse (lsdr's --wait; infra/release_lock.py).",
    )
    interrupt_grace_s: float = Field(
        20.0,
        ge=0,
        description="After Ctrl-C or SIGTERM, seconds the running units may take to finish "
        "before they are stopped (SLURM's KillWait, 30 s by default, bounds it; "
        "flows/interrupt.py).",
    )
    reprocess_max_bricks: int = Field(
        1000,
        ge=1,
        description="Most bricks a reprocess-region request may cover unless it sets "
        "allow_large (docs/reprocess.md).",
    )

    @field_validator("release_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        """An engine the registry resolves here (an unknown one fails before anything runs)."""
        from lsdr.survey.engines.registry import get_engine

        try:
            get_engine(value)
        except SurveyError as err:
            raise PydanticCustomError("engine", "{reason}", {"reason": str(err)}) from None
        return value

    @model_validator(mode="after")
    def _engine_accepts(self) -> Settings:
        """The engine made with its settings (the launcher, legacypipe's version…) accepts them."""
        from lsdr.survey.engines.registry import engine_config, get_engine

        config = engine_config(self.engine, self)
        if config:
            try:
                get_engine(self.engine, config)
            except SurveyError as err:
                raise PydanticCustomError("engine", "{reason}", {"reason": str(err)}) from None
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Overrides beat the environment, which beats the config file (passed as init)."""
        return (init_settings, env_settings)


def config_file(release_dir: Path) -> Path:
    """The config file that applies to a release: ``$LSDR_CONFIG`` or ``<release>/lsdr.yaml``."""
    named = os.environ.get("LSDR_CONFIG")
    return Path(named) if named else ReleaseLayout(release_dir).config_file


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings in a YAML config file ({} when it does not exist)."""
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise UsageError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return data


def check_setting(name: str, value: Any) -> Any:
    """``value`` as setting ``name`` holds it; a one-line :class:`UsageError` if it is bad.

    Only the field's own type and bounds, with no file or environment read: the CLI checks an
    option's value this way, naming the option, before it loads anything.
    """
    field = Settings.model_fields[name]
    form: Any = Annotated[field.annotation, field]  # the field's type with its bounds
    try:
        return TypeAdapter(form).validate_python(value)
    except ValidationError as err:
        reason = str(err.errors()[0]["msg"])
        raise UsageError(reason[:1].lower() + reason[1:]) from None


def profile_settings(cluster: str, own: Path | None = None) -> dict[str, Any]:
    """The settings a cluster profile's files give: its own file, then ``own`` over it.

    Every key must be a knob of the profile and every value valid for its setting; an error
    names the file and the key, before anything starts.
    """
    return _profile_values(cluster, own)[0]


def _profile_values(cluster: str, own: Path | None) -> tuple[dict[str, Any], dict[str, Path]]:
    """:func:`profile_settings`, with the file that gave each key (for errors that name it)."""
    profile = get_profile(cluster)
    values: dict[str, Any] = {}
    origins: dict[str, Path] = {}
    for path in (profile_file(cluster), own):
        if path is None:
            continue
        data = read_config_file(path)
        unknown = sorted(set(data) - set(profile.knobs))
        if unknown:
            raise UsageError(
                f"{path}: unknown key(s) {', '.join(unknown)} for cluster profile "
                f"{profile.name!r}; its keys: {', '.join(profile.knobs)}"
            )
        for key, value in data.items():
            try:
                check_setting(key, value)
            except UsageError as err:
                raise UsageError(f"{path}: {key}: {err}") from None
        values.update(data)
        origins.update(dict.fromkeys(data, path))
    return values, origins


def _environment() -> dict[str, str]:
    """The ``LSDR_*`` variables by setting name (``LSDR_N_WORKERS`` -> ``n_workers``)."""
    return {
        k[len(ENV_PREFIX) :].lower(): v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)
    }


@dataclass(frozen=True)
class _Sources:
    """The sources above the profile files, highest first: overrides, environment, config file."""

    given: dict[str, Any]
    environment: dict[str, str]
    config: Path
    from_file: dict[str, Any]
    from_profile: dict[str, Path]
    """The profile file that gave each key (the files below the config file)."""

    def _source(self, name: str) -> tuple[str, Any] | None:
        """Setting ``name`` from the highest source that gives it, with that source's label.

        A relative ``cluster_file`` in the config file is relative to that file.
        """
        if name in self.given:
            return f"setting {name}", self.given[name]
        if name in self.environment:
            return f"{ENV_PREFIX}{name.upper()}", self.environment[name]
        if name in self.from_file:
            value = self.from_file[name]
            if name == "cluster_file" and value is not None:
                value = self.config.parent / Path(str(value)).expanduser()
            return f"{self.config}: {name}", value
        return None

    def where(self, name: str) -> str:
        """Where setting ``name`` was given, for an error: variable, file and key, or override."""
        source = self._source(name)
        if source is not None:
            return source[0]
        if name in self.from_profile:
            return f"{self.from_profile[name]}: {name}"
        return f"setting {name}"

    def chosen(self, name: str) -> Any:
        """Setting ``name`` from these sources, checked (its default if none gives it).

        For ``cluster`` and ``cluster_file``, which say which profile files to read first.
        """
        source = self._source(name)
        if source is None:
            return Settings.model_fields[name].get_default(call_default_factory=True)
        where, value = source
        try:
            return check_setting(name, value)
        except UsageError as err:
            raise UsageError(f"{where}: {err}") from None


MAPPING_SETTINGS = ("timeouts",)
"""Settings that are a mapping merged key by key over the sources rather than replaced: a
``--timeout`` for one phase keeps the file's timeouts of the others."""


def _merged_mappings(sources: _Sources, from_profile: dict[str, Any]) -> dict[str, Any]:
    """Each mapping setting some source gives, merged key by key, each checked where given.

    The profile's, then the config file's, the environment's (JSON) and the overrides' keys.
    """
    out: dict[str, Any] = {}
    for name in MAPPING_SETTINGS:
        layers: list[tuple[str, Any]] = []
        if name in from_profile:
            layers.append((sources.where(name), from_profile[name]))
        if name in sources.from_file:
            layers.append((f"{sources.config}: {name}", sources.from_file[name]))
        if name in sources.environment:
            where = f"{ENV_PREFIX}{name.upper()}"
            try:
                layers.append((where, json.loads(sources.environment[name])))
            except ValueError:
                raise UsageError(
                    f"{where}: not a JSON mapping, as in '{{\"tractor\": 14400}}'"
                ) from None
        if name in sources.given:
            layers.append((f"setting {name}", sources.given[name]))
        if not layers:
            continue
        combined: dict[str, Any] = {}
        for where, value in layers:
            try:
                combined.update(check_setting(name, value))
            except UsageError as err:
                raise UsageError(f"{where}: {err}") from None
        out[name] = combined
    return out


def load_settings(release_dir: Path, **overrides: Any) -> Settings:
    """Settings for a release: defaults < profile files < config file < ``LSDR_*`` < overrides.

    The profile files are the ``cluster`` profile's own, then ``cluster_file``; those two
    settings are read first, from the config file, the environment and the overrides.
    ``None`` overrides mean "not given" and are dropped, so CLI options that default to None
    never mask the file or the environment.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    release_dir = Path(release_dir)
    config = config_file(release_dir)
    from_file = read_config_file(config)
    unknown = set(from_file) - set(Settings.model_fields)
    if unknown:
        raise UsageError(
            f"{config}: unknown setting(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(Settings.model_fields)}"
        )
    sources = _Sources(given, _environment(), config, from_file, {})
    profile = {name: sources.chosen(name) for name in ("cluster", "cluster_file")}
    from_profile, origins = _profile_values(profile["cluster"], profile["cluster_file"])
    sources.from_profile.update(origins)
    # Each file sits below the environment: drop the files' keys that the environment sets.
    merged = {
        k: v for k, v in {**from_profile, **from_file}.items() if k not in sources.environment
    }
    merged.update(given)
    merged.update(profile)
    merged.update(_merged_mappings(sources, from_profile))
    merged["release_dir"] = release_dir
    try:
        settings = Settings(**merged)
    except ValidationError as err:
        first = err.errors()[0]
        name = ".".join(str(p) for p in first["loc"]) or "engine"  # the engine's own checks
        raise UsageError(f"{sources.where(name)}: {first['msg']}") from err
    try:
        get_profile(settings.cluster).check(settings)
    except ProfileSettingError as err:
        raise UsageError(f"{sources.where(err.key)}: {err.reason}") from None
    return settings
