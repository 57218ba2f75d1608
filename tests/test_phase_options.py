"""One options model per phase: the CLI's flags and a deployment's parameters give the same.

Each ``lsdr run <phase>`` command's parsed flags are turned into the phase's options and
compared with the model built from the parameter dict a Prefect deployment would send; every
flag is checked against its field (name, type, no default of its own), so a default written a
second time, in the CLI or a flow, fails here.
"""

from __future__ import annotations

import datetime as dt
import inspect
import typing
from typing import Any

import pytest
import typer
from pydantic import ValidationError

from lsdr.flows.phases import PHASE_FLOWS
from lsdr.flows.pretractor import pretractor
from lsdr.flows.release import release
from lsdr.phase_flags import NOT_OPTIONS, field_path, phase_options
from lsdr.run_cli import run_app
from lsdr.survey.core.phase_options import (
    PHASE_OPTIONS,
    BricksOptions,
    ReleaseOptions,
    TractorOptions,
)

CASES: dict[str, tuple[list[str], dict[str, Any]]] = {
    "discover": (
        ["--camera", "mosaic", "--camera", "90prime", "--date-min", "2017-02-01",
         "--date-max", "2017-03-01"],
        {"cameras": ["mosaic", "90prime"], "date_min": "2017-02-01", "date_max": "2017-03-01"},
    ),
    "zeropoints": (["--no-run-calibs"], {"run_calibs": False}),
    "merge": (["--no-cut", "--no-cut-expnum"], {"cut": False, "cut_expnum": False}),
    "kdtree": ([], {}),
    "bricks": (["--region", "cookbook"], {"region": [180.0, 181.0, 32.0, 33.0]}),
    "depthcut": ([], {}),
    "tractor": (
        ["--brick", "1804p325", "--brick", "1807p325", "-W", "900", "-H", "800",
         "--pixscale", "0.524", "--keep-checkpoints", "--fit-budget", "30",
         "--checkpoint-period", "5", "--no-outliers"],
        {"bricks": ["1804p325", "1807p325"], "width": 900, "height": 800, "pixscale": 0.524,
         "keep_checkpoints": True, "fit_budget_s": 30.0, "checkpoint_period": 5.0,
         "outliers": False},
    ),
    "brightneighbors": (["--brick", "1804p325"], {"bricks": ["1804p325"]}),
    "depth": (["--brick", "1804p325"], {"bricks": ["1804p325"]}),
    "summary": (["--brick", "1804p325"], {"bricks": ["1804p325"]}),
    "sweeps": (["--brick", "1804p325", "--version", "9.1"],
               {"bricks": ["1804p325"], "version": "9.1"}),
    "external": (["--radius", "2.5"], {"radius_arcsec": 2.5}),
    "package": (["--brick", "1804p325"], {"bricks": ["1804p325"]}),
    "publish": (["--destination", "/srv/dr", "--dry-run"],
                {"destination": "/srv/dr", "dry_run": True}),
    "pretractor": (
        ["--region", "180,181,32,33", "--camera", "mosaic", "--date-max", "2017-03-01",
         "--no-run-calibs", "--no-cut", "--depth-cut"],
        {"discover": {"cameras": ["mosaic"], "date_max": "2017-03-01"},
         "zeropoints": {"run_calibs": False}, "merge": {"cut": False},
         "bricks": {"region": [180, 181, 32, 33]}, "depth_cut": True},
    ),
    "nightly": (["--dry-run"], {"dry_run": True}),
    "release": (
        ["--region", "cookbook", "-W", "900", "-H", "900", "--pixscale", "0.524",
         "--destination", "/srv/dr"],
        {"pretractor": {"bricks": {"region": "cookbook"}},
         "tractor": {"width": 900, "height": 900, "pixscale": 0.524},
         "destination": "/srv/dr"},
    ),
}  # fmt: skip
"""Per run command: non-default flags, and the deployment-style parameters that mean the same."""

FLAG_EXCEPTIONS = {
    "bricks": "--brick",
    "cameras": "--camera",
    "radius_arcsec": "--radius",
    "fit_budget_s": "--fit-budget",
}
"""Fields whose flag is not ``--<field>``: repeatable flags are singular, as runbrick's."""


def commands() -> dict[str, Any]:
    """The ``lsdr run`` subcommands by name (typer's own click commands)."""
    return dict(typer.main.get_command(run_app).commands)  # type: ignore[attr-defined]


def parsed(phase: str, argv: list[str]) -> dict[str, Any]:
    """The flags ``lsdr run <phase>`` parses from ``argv`` (nothing is run)."""
    command = commands()[phase]
    with command.make_context(phase, ["--release-dir", "/nonexistent", *argv]) as ctx:
        return dict(ctx.params)


def test_every_run_command_has_a_case_and_a_model() -> None:
    """A new phase command without its options model or a case here fails."""
    assert set(commands()) == set(CASES)
    assert set(CASES) <= set(PHASE_OPTIONS)


@pytest.mark.parametrize("phase", sorted(CASES))
def test_cli_flags_and_deployment_parameters_give_the_same_options(phase: str) -> None:
    """The model from the parsed flags equals the model from the deployment's dict."""
    argv, document = CASES[phase]
    from_cli = phase_options(phase, parsed(phase, argv))
    from_deployment = PHASE_OPTIONS[phase].model_validate(document)
    assert from_cli == from_deployment
    assert from_cli.model_dump(mode="json") == from_deployment.model_dump(mode="json")
    if argv:  # the flags changed something: not two defaults compared
        assert from_cli != PHASE_OPTIONS[phase].model_validate(_required_only(document))


def _required_only(document: dict[str, Any]) -> dict[str, Any]:
    """The document's required fields only (publish's destination)."""
    return {k: v for k, v in document.items() if k == "destination"}


def test_no_flag_is_given_is_the_models_defaults() -> None:
    """Flags left out give exactly the model's defaults (the CLI has none of its own)."""
    for phase in CASES:
        if phase == "publish":
            continue
        assert phase_options(phase, parsed(phase, [])) == PHASE_OPTIONS[phase]()


def _unwrap(annotation: Any) -> Any:
    """``X | None`` → ``X``."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, __import__("types").UnionType):
        return args[0] if len(args) == 1 else annotation
    return annotation


@pytest.mark.parametrize("phase", sorted(CASES))
def test_each_flag_is_its_fields_flag_without_a_default_of_its_own(phase: str) -> None:
    """Name, type, no default (None: the model's), and the model's default in the help."""
    model = PHASE_OPTIONS[phase]
    for param in commands()[phase].params:
        assert param.name is not None
        if param.name in NOT_OPTIONS:
            continue
        path = field_path(model, param.name)  # every other flag is a field of the phase
        leaf_model: Any = model
        for part in path[:-1]:
            leaf_model = leaf_model.model_fields[part].annotation
        info = leaf_model.model_fields[path[-1]]
        assert param.default is None, f"{phase} {param.opts}: a default of the CLI's own"
        expected_flag = FLAG_EXCEPTIONS.get(path[-1], "--" + path[-1].replace("_", "-"))
        assert expected_flag in param.opts, (phase, param.opts)
        field_type = _unwrap(info.annotation)
        origin = typing.get_origin(field_type)
        parsed_as = param.type_descriptor.annotation  # what the CLI parses the flag as
        if field_type is dt.date:
            assert parsed_as is dt.datetime
        elif origin is list:
            assert param.multiple and parsed_as == list[str]
        elif origin is tuple:  # a region: one text the model parses; a zoom: its four numbers
            assert parsed_as is str or parsed_as == field_type, (phase, param.name)
        else:
            assert parsed_as is field_type, (phase, param.name)
        if field_type is bool:
            assert param.secondary_opts == ["--no-" + expected_flag.removeprefix("--")]
        default = info.get_default(call_default_factory=True)
        help_text = " ".join(str(getattr(param, "help", "") or "").split())
        if isinstance(default, bool):
            assert f"Default: {'on' if default else 'off'}." in help_text, help_text
        elif isinstance(default, int | float | str) and not isinstance(default, bool):
            assert str(default) in help_text, (phase, param.name, help_text)


@pytest.mark.parametrize("phase", sorted(PHASE_FLOWS))
def test_flows_take_their_options_model_and_no_loose_defaults(phase: str) -> None:
    """A phase flow's parameters: the release, its options model (default None), the settings."""
    signature = inspect.signature(PHASE_FLOWS[phase].fn)
    assert list(signature.parameters) == ["release_dir", "options", "settings"]
    options = signature.parameters["options"]
    hints = typing.get_type_hints(PHASE_FLOWS[phase].fn)
    assert PHASE_OPTIONS[phase] in typing.get_args(hints["options"]) or (
        hints["options"] is PHASE_OPTIONS[phase]
    )
    assert options.default is None or phase == "publish"


def test_chains_take_their_models() -> None:
    """pretractor and release take their chain models, made of the phases' models."""
    for chain in (pretractor, release):
        assert list(inspect.signature(chain.fn).parameters) == [
            "release_dir",
            "options",
            "settings",
            "dask_address",
        ]
    defaults = ReleaseOptions()
    assert defaults.tractor == TractorOptions()
    assert defaults.pretractor.bricks == BricksOptions()


def test_deployment_parameters_are_validated_by_the_flow() -> None:
    """Prefect validates a run's parameters against the model: unknown or bad fields refused."""
    from lsdr.flows.tractor import tractor

    good = tractor.validate_parameters(
        {"release_dir": "/r", "options": {"bricks": ["1804p325"], "width": 900}}
    )
    assert good["options"] == TractorOptions(bricks=["1804p325"], width=900)
    for bad in ({"widht": 900}, {"width": 0}, {"bricks": ["../1804p325"]}):
        with pytest.raises(Exception, match=r"validation error|widht|brick|positive"):
            tractor.validate_parameters({"release_dir": "/r", "options": bad})


def test_the_flow_parameter_schema_shows_the_models_fields_and_defaults() -> None:
    """What a deployment's form shows: the options' fields, typed, with their defaults."""
    from prefect.utilities.callables import parameter_schema

    from lsdr.flows.tractor import tractor

    schema = parameter_schema(tractor.fn).model_dump()
    definitions = schema["definitions"]
    fields = definitions["TractorOptions"]["properties"]
    assert fields["width"]["default"] == 3600
    assert fields["pixscale"]["default"] == 0.262
    assert fields["outliers"]["default"] is True
    assert definitions["TractorOptions"]["additionalProperties"] is False


@pytest.mark.parametrize(
    ("model", "document", "message"),
    [
        (TractorOptions, {"width": 0}, "brick size 0x3600 must be positive"),
        (TractorOptions, {"checkpoint_period": -1}, "checkpoint period"),
        (TractorOptions, {"bricks": ["1804p325/../x"]}, "not a brick"),
        (BricksOptions, {"region": "10,20,1,0"}, "dec"),
        (BricksOptions, {"region": [1, 2]}, "expected 'ra_min,ra_max,dec_min,dec_max'"),
        (ReleaseOptions, {"tractor": {"widht": 900}}, "Extra inputs are not permitted"),
        (ReleaseOptions, {"nightly": True}, "Extra inputs are not permitted"),
    ],
)
def test_refused_values(model: Any, document: dict[str, Any], message: str) -> None:
    """The domain's own checks refuse bad values; unknown fields are refused, not ignored."""
    with pytest.raises(ValidationError, match=message):
        model.model_validate(document)


def test_a_refused_flag_names_the_flag_and_value() -> None:
    """A chain command's bad flag is named as the flag, not as the model's nested field."""
    from lsdr.survey.core.errors import UsageError

    with pytest.raises(UsageError, match=r"^--height 0: brick size 3600x0 must be positive$"):
        phase_options("release", parsed("release", ["-H", "0"]))
    with pytest.raises(UsageError, match=r"--date-min.*2020-01-02.*after"):
        phase_options(
            "discover", parsed("discover", ["--date-min", "2020-01-02", "--date-max", "2020-01-01"])
        )
