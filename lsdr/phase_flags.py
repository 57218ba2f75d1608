"""``lsdr run``'s flags checked against the phase options models, and the models made from them.

A flag's help comes from its field in :mod:`lsdr.survey.core.phase_options` (with the model's
default); its default is None, "not given", so that each default is written once, in the model
(tests/test_phase_options.py checks every flag's name, type and default against its field).
:func:`phase_options` turns a command's parsed flags into its phase's model (a chain's flags
land in the phase model they belong to) and a refused value into one line naming
the flag and the value (``--width 0: brick size 0x3600 must be positive``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from lsdr.options_check import option_error
from lsdr.survey.core.errors import UsageError
from lsdr.survey.core.phase_options import PHASE_OPTIONS, PhaseOptions

FLAG_NAMES: dict[str, str] = {
    "bricks": "--brick",
    "cameras": "--camera",
    "radius_arcsec": "--radius",
    "fit_budget_s": "--fit-budget",
}
"""A field's flag where it is not ``--<field-with-dashes>`` (a repeatable flag is singular)."""

SHORT_FLAGS: dict[str, str] = {"width": "-W", "height": "-H"}
"""runbrick's one-letter flags."""

NOT_OPTIONS = frozenset(
    {
        "release_dir",
        "verbose",
        "workers",
        "batch_size",
        "threads",
        "engine",
        "launcher",
        "wait",
        "timeout",
    }
)
"""A run command's parameters that are not phase options: the release, settings, the console."""


def flag_name(field: str) -> str:
    """The flag of an options field: ``fit_budget_s`` → ``--fit-budget``."""
    return FLAG_NAMES.get(field, "--" + field.replace("_", "-"))


def default_text(value: object) -> str | None:
    """A model default as the help shows it (None: no default worth showing)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def flag_help(model: type[PhaseOptions], field: str, text: str | None = None) -> str:
    """A flag's help: the field's description (or ``text``) and the model's default."""
    info = model.model_fields[field]
    text = text or info.description or ""
    shown = default_text(info.get_default(call_default_factory=True))
    if shown is not None and "default" not in text.lower():
        text = f"{text} Default: {shown}."
    return text


# -- the flags, as a phase's options ----------------------------------------------------------
def leaf_paths(
    model: type[BaseModel], prefix: tuple[str, ...] = ()
) -> dict[str, list[tuple[str, ...]]]:
    """Every leaf field of ``model`` and its sub-models, by name, with the path to each."""
    paths: dict[str, list[tuple[str, ...]]] = {}
    for name, info in model.model_fields.items():
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            for leaf, found in leaf_paths(sub, (*prefix, name)).items():
                paths.setdefault(leaf, []).extend(found)
        else:
            paths.setdefault(name, []).append((*prefix, name))
    return paths


def field_path(model: type[BaseModel], name: str) -> tuple[str, ...]:
    """Where a command's flag goes in its model: the field itself, or the one leaf so named."""
    if name in model.model_fields:
        return (name,)
    found = leaf_paths(model).get(name, [])
    if len(found) != 1:
        raise KeyError(f"{model.__name__}: no single field {name!r} (found {found})")
    return found[0]


def options_document(phase: str, flags: Mapping[str, Any]) -> dict[str, Any]:
    """The given flags (not None) as the nested dict a deployment would pass for the phase."""
    model = PHASE_OPTIONS[phase]
    doc: dict[str, Any] = {}
    for name, value in flags.items():
        if name in NOT_OPTIONS or value is None or (isinstance(value, list | tuple) and not value):
            continue  # not given (a repeatable flag not given parses as an empty list)
        if isinstance(value, dt.datetime):
            value = value.date()
        *parents, leaf = field_path(model, name)
        target = doc
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return doc


def phase_options(phase: str, flags: Mapping[str, Any]) -> PhaseOptions:
    """``phase``'s options from a run command's flags; a refused value is one :class:`UsageError`.

    ``flags`` are the command's parameters by name (None: not given); the release directory,
    the settings flags and ``--verbose`` are not options and are passed over.
    """
    doc = options_document(phase, flags)
    try:
        return PHASE_OPTIONS[phase].model_validate(doc)
    except ValidationError as err:
        raise _flag_error(err, doc, flags) from None


def _flag_error(err: ValidationError, doc: dict[str, Any], flags: Mapping[str, Any]) -> UsageError:
    """The first refused value of ``err`` as one line naming its flag and value."""
    first = err.errors()[0]
    reason = str(first["msg"]).removeprefix("Value error, ")
    model = _by_name(err.title)
    name: str | None = None
    for part in first["loc"]:
        if not isinstance(part, str) or part not in model.model_fields:
            break
        sub = model.model_fields[part].annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            model = sub
        else:
            name = part
            break
    if name is None:  # the model as a whole refused: name the flag at fault, else them all
        name = _alone_at_fault(model, flags)
    if name is None:
        given = [flag_name(n) for n, v in flags.items() if v is not None and n not in NOT_OPTIONS]
        return UsageError(f"{', '.join(given)}: {reason}" if given else reason)
    value = flags.get(name)
    if isinstance(value, list):  # the one element the reason names, else them all
        value = next((v for v in value if repr(v) in reason), ",".join(map(str, value)))
    if isinstance(value, dt.datetime):
        value = value.date()
    return option_error(flag_name(name), value, UsageError(reason))


def _alone_at_fault(model: type[BaseModel], flags: Mapping[str, Any]) -> str | None:
    """For a refusal of a whole model: the one given flag refused on its own, if any."""
    for name, value in flags.items():
        if name in NOT_OPTIONS or value is None or name not in model.model_fields:
            continue
        if isinstance(value, dt.datetime):
            value = value.date()
        try:
            model.model_validate({name: value})
        except ValidationError:
            return name
    return None


def _by_name(title: str) -> type[BaseModel]:
    """A phase model or one of its sub-models by its class name (a validation error's title)."""
    found: list[type[BaseModel]] = []
    pending: list[type[BaseModel]] = list(PHASE_OPTIONS.values())
    while pending:
        model = pending.pop()
        if model.__name__ == title:
            return model
        found.append(model)
        for info in model.model_fields.values():
            sub = info.annotation
            if isinstance(sub, type) and issubclass(sub, BaseModel) and sub not in found:
                pending.append(sub)
    raise KeyError(title)
