"""Science engines: the :class:`Engine` protocol (``base``), ``lite`` (``lite``), the registry.

A task asks the registry for the unit's engine and calls one of its methods; see ``base`` for
which steps are an engine's and which stay engine-free, and docs/architecture.md ("Engines").
"""

from lsdr.survey.engines.base import (
    Engine,
    MatchOptions,
    MergeTablesOptions,
    Outcome,
    UnitOutput,
    ZeropointOptions,
)
from lsdr.survey.engines.registry import (
    DEFAULT_ENGINE,
    engine_reference,
    get_engine,
    known_engines,
    register_engine,
    unregister_engine,
)

__all__ = [
    "DEFAULT_ENGINE",
    "Engine",
    "MatchOptions",
    "MergeTablesOptions",
    "Outcome",
    "UnitOutput",
    "ZeropointOptions",
    "engine_reference",
    "get_engine",
    "known_engines",
    "register_engine",
    "unregister_engine",
]
