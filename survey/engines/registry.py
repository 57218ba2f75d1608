"""Engines by name: the built-in ones, those registered at run time, and ``module:attribute``.

The ``engine`` setting names one: a built-in name (``lite``), a name given to
:func:`register_engine` in this process, or ``package.module:Attribute``, a factory (usually
the class) that is imported and called.  A Dask worker is another process: it knows the
built-in engines and can import a module, not what the flow's process registered.  So a unit
carries a *reference* that resolves in any process (:func:`engine_reference`): a registered
engine travels as the ``module:qualname`` of its factory, when that imports back to the same
factory.  Such a module must be importable on every worker: a ``LocalCluster`` starts its
worker processes with the parent's ``sys.path`` (multiprocessing's spawn); batch-job workers
need it installed, or on ``PYTHONPATH``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import PurePath
from typing import Any, cast

from lsdr.survey.core.errors import MissingDependencyError, SurveyError, UsageError
from lsdr.survey.engines.base import Engine

DEFAULT_ENGINE = "lite"
"""The engine a release runs with unless its settings name another."""

BUILTIN_ENGINES: dict[str, str] = {
    "lite": "lsdr.survey.engines.lite:LiteEngine",
    "legacypipe": "lsdr.survey.engines.legacypipe.engine:LegacypipeEngine",
}
"""Engines known in every process, each by the ``module:attribute`` of its factory."""

EngineFactory = Callable[..., Engine]
"""What makes an engine: its class, or any callable returning one; called without arguments,
or with the settings it names in its ``SETTINGS`` attribute as keywords (:func:`engine_config`)."""

_registered: dict[str, EngineFactory] = {}

_MEMBERS = tuple(
    name for name in dir(Engine) if not name.startswith("_") and name not in dir(object)
)
"""What an engine must have: the protocol's methods and properties."""


def register_engine(name: str, factory: EngineFactory) -> None:
    """Make ``factory``'s engine known as ``name`` in this process (replacing an earlier one)."""
    if not name or ":" in name:
        raise UsageError(f"engine name {name!r} must be a non-empty name without ':'")
    if name in BUILTIN_ENGINES:
        raise UsageError(f"engine {name!r} is built in and cannot be replaced")
    _registered[name] = factory


def unregister_engine(name: str) -> None:
    """Forget an engine registered in this process (nothing if it was not)."""
    _registered.pop(name, None)


def known_engines() -> list[str]:
    """The engine names known here: the built-in ones, then those registered."""
    return [*BUILTIN_ENGINES, *sorted(_registered)]


def engine_settings(name: str) -> tuple[str, ...]:
    """The settings engine ``name`` is made from (its factory's ``SETTINGS``; none for lite)."""
    return tuple(getattr(_factory(name), "SETTINGS", ()))


def engine_config(name: str, settings: object) -> dict[str, Any]:
    """The keywords engine ``name`` is made with: its settings' values, as plain JSON values.

    They travel with every unit to the worker that makes the engine again
    (``tasks/unit.py``), so a flag given to one run reaches its workers.
    """
    config: dict[str, Any] = {}
    for field in engine_settings(name):
        value = getattr(settings, field)
        config[field] = str(value) if isinstance(value, PurePath) else value
    return config


def get_engine(name: str, config: Mapping[str, Any] | None = None) -> Engine:
    """The engine ``name`` refers to (a name or ``module:attribute``), ready to run units.

    ``config``: the keywords of :func:`engine_config`.  An unknown name, a spec that does not
    import, a refused setting, or an object that lacks a method of :class:`Engine` is a
    :class:`UsageError` naming it.
    """
    factory = _factory(name)
    try:
        engine: object = factory(**config) if config else factory()
    except TypeError as err:  # a factory that needs arguments: not an engine class
        raise UsageError(f"engine {name!r}: cannot be made without arguments ({err})") from None
    if not isinstance(engine, Engine):
        missing = [m for m in _MEMBERS if not hasattr(engine, m)]
        raise UsageError(f"engine {name!r} is not an engine: it lacks {', '.join(missing)}")
    return engine


def engine_reference(name: str) -> str:
    """What a unit carries to its worker for engine ``name``: a reference any process resolves.

    A built-in name or a spec as it is; a registered engine as ``module:qualname`` of its
    factory when that imports back to the same factory, else its name (then it runs only in
    this process: a worker reports it as unknown).
    """
    factory = _registered.get(name)
    if factory is None:
        return name
    module = getattr(factory, "__module__", None)
    qualname = getattr(factory, "__qualname__", "")
    if module in (None, "__main__") or not qualname or "<locals>" in qualname:
        return name
    spec = f"{module}:{qualname}"
    try:
        same = _load(spec) is factory
    except SurveyError:
        same = False
    return spec if same else name


def _factory(name: str) -> EngineFactory:
    if name in _registered:
        return _registered[name]
    if name in BUILTIN_ENGINES:
        return _load(BUILTIN_ENGINES[name])
    if ":" in name:
        return _load(name)
    raise UsageError(
        f"unknown engine {name!r}: known engines are {', '.join(known_engines())} "
        "(or name an importable one as module:attribute)"
    )


@cache
def _load(spec: str) -> EngineFactory:
    """Import ``module:attribute`` (dots in the attribute walk into it); the factory found."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"engine {spec!r}: expected module:attribute")
    try:
        found: object = importlib.import_module(module_name)
    except ImportError as err:
        if err.name and (module_name == err.name or module_name.startswith(f"{err.name}.")):
            raise UsageError(
                f"engine {spec!r}: module {module_name} not importable here (an engine named "
                "by module:attribute must be importable on every worker: installed, or on "
                "PYTHONPATH)"
            ) from None
        raise MissingDependencyError("module", err.name or module_name, reason=str(err)) from err
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise UsageError(f"engine {spec!r}: {module_name} has no attribute {attribute}")
        found = getattr(found, part)
    if not callable(found):
        raise UsageError(f"engine {spec!r}: {attribute} is not callable")
    return cast(EngineFactory, found)
