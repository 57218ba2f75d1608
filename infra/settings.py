"""lsdr's settings: one typed model, read once at the edge, with one documented precedence.

Precedence, lowest to highest:

1. the defaults below;
2. the release's config file, ``<release>/lsdr.yaml`` (or the file named by ``LSDR_CONFIG``);
3. environment variables ``LSDR_<FIELD>`` (e.g. ``LSDR_BATCH_SIZE=50``, ``LSDR_ENGINE=lite``);
4. command-line options and flow parameters (passed to :func:`load_settings` as overrides).

Nothing deeper in the code reads the environment: flows and tasks receive a ``Settings``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, TypeAdapter, ValidationError, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from lsdr.survey.engines.registry import DEFAULT_ENGINE
from lsdr.survey.errors import SurveyError, UsageError

CONFIG_NAME = "lsdr.yaml"

ClusterProfile = Literal["local", "local-slurm", "perlmutter-cpu", "cori-haswell", "cori-knl"]


def _default_workers() -> int:
    return max(1, os.cpu_count() or 1)


class Settings(BaseSettings):
    """Everything that decides where and how a release runs (not what the science measures)."""

    model_config = SettingsConfigDict(env_prefix="LSDR_", extra="forbid", frozen=True)

    release_dir: Path = Field(Path("."), description="The release (and survey) directory.")
    engine: str = Field(
        DEFAULT_ENGINE,
        description="Science engine: a known name (lite, lsdr's own) or module:attribute of an "
        "importable engine (survey/engines); checked when the settings are read.",
    )
    cluster: ClusterProfile = Field("local", description="Where Dask workers run.")
    n_workers: int = Field(default_factory=_default_workers, ge=1, description="Dask workers.")
    threads_per_worker: int = Field(1, ge=1, description="Threads per Dask worker.")
    worker_memory: str = Field("auto", description="Dask worker memory limit ('auto', '4GiB').")
    unit_threads: int = Field(1, ge=1, description="Threads a unit (image, brick) may use.")
    unit_memory_limit_mb: int | None = Field(
        None,
        ge=64,
        description="Address-space limit per unit above the worker's own size (MB); "
        "exceeding it raises a real MemoryError (failure class oom).",
    )
    batch_size: int = Field(
        250, ge=1, description="Most units per Prefect task (Prefect costs ~0.1-0.2 s a task)."
    )
    max_attempts: int = Field(
        3, ge=1, description="Starts of a unit before infra failures are final."
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
    return Path(named) if named else Path(release_dir) / CONFIG_NAME


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings in a YAML config file ({} when it does not exist)."""
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise UsageError(f"{path}: not valid YAML ({err})") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return data


def check_setting(name: str, value: Any) -> None:
    """Raise a one-line :class:`UsageError` (pydantic's reason) if ``value`` is bad for ``name``.

    Only the field's own type and bounds, with no file or environment read: the CLI checks an
    option's value this way, naming the option, before it loads anything.
    """
    field = Settings.model_fields[name]
    form: Any = Annotated[field.annotation, field]  # the field's type with its bounds
    try:
        TypeAdapter(form).validate_python(value)
    except ValidationError as err:
        reason = str(err.errors()[0]["msg"])
        raise UsageError(reason[:1].lower() + reason[1:]) from None


def load_settings(release_dir: Path, **overrides: Any) -> Settings:
    """Settings for a release: defaults < config file < ``LSDR_*`` environment < overrides.

    ``None`` overrides mean "not given" and are dropped, so CLI options that default to None
    never mask the file or the environment.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    release_dir = Path(release_dir)
    from_file = read_config_file(config_file(release_dir))
    unknown = set(from_file) - set(Settings.model_fields)
    if unknown:
        raise UsageError(
            f"{config_file(release_dir)}: unknown setting(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(Settings.model_fields)}"
        )
    # The file sits below the environment: drop file keys that the environment sets.
    env_keys = {k[len("LSDR_") :].lower() for k in os.environ if k.startswith("LSDR_")}
    merged = {k: v for k, v in from_file.items() if k not in env_keys}
    merged.update(given)
    merged["release_dir"] = release_dir
    try:
        return Settings(**merged)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"setting {where}: {first['msg']}") from err
