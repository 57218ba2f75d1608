"""The engine seam: the protocol, the registry, the ``engine`` setting, and an extra engine.

The slow tests register a small real engine here (``copy_engine.CopyEngine``, whose runbrick
copies a finished brick's products from a reference release made by the lite engine) and run
the unchanged tractor flow with it on the session's Dask cluster.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from copy_engine import CopyEngine, use_reference
from runbrick_survey import BRICK, prepared_survey, private_copy
from test_cli_exit_status import lsdr, one_error_line, tree
from test_tractor_flow import SIZE, assert_same_catalogue, read_catalogue, run_tractor_flow

from lsdr import __version__
from lsdr.flows.settings import ledger_for
from lsdr.infra.settings import load_settings
from lsdr.survey.core.errors import UsageError
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.phase_options import TractorOptions
from lsdr.survey.engines import (
    Engine,
    Outcome,
    UnitOutput,
    engine_reference,
    get_engine,
    known_engines,
    register_engine,
    unregister_engine,
)
from lsdr.survey.engines.lite import LiteEngine
from lsdr.tasks.execute import execute_unit
from lsdr.tasks.sidecars import read_sidecar, settle, sidecar_path
from lsdr.tasks.tractor import plan_tractor
from lsdr.tasks.unit import Unit, engine_version

COPY_SPEC = "copy_engine:CopyEngine"
"""The copy engine by module:attribute, as the workers import it."""


@pytest.fixture
def copy_registered() -> Iterator[str]:
    """The copy engine registered in this process as ``copy`` for the test, then forgotten."""
    register_engine("copy", CopyEngine)
    try:
        yield "copy"
    finally:
        unregister_engine("copy")


PROTOCOL_MEMBERS = [name for name, _ in inspect.getmembers(Engine) if not name.startswith("_")]


# -- the protocol ---------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", [LiteEngine(), CopyEngine()], ids=["lite", "copy"])
def test_an_engine_has_every_protocol_method_with_its_parameters(engine: object) -> None:
    """Lite (and the copy engine) is an Engine: every method, with the protocol's parameters."""
    assert isinstance(engine, Engine)
    methods = [m for m in PROTOCOL_MEMBERS if inspect.isfunction(getattr(Engine, m))]
    assert {"zeropoints", "merge_calibs", "merge_ccd_tables", "ccds_kdtree", "runbrick"} <= set(
        methods
    )
    assert {"bright_neighbours", "brick_depth", "sweep", "match_external"} <= set(methods)
    for name in methods:
        wanted = inspect.signature(getattr(Engine, name))
        found = inspect.signature(getattr(type(engine), name))
        assert [(p.name, p.kind) for p in found.parameters.values()] == [
            (p.name, p.kind) for p in wanted.parameters.values()
        ], name
    assert isinstance(engine.name, str) and engine.version.startswith(f"{engine.name}-")


def test_an_object_missing_a_method_is_not_an_engine() -> None:
    """A factory whose object lacks the protocol's methods is refused, the missing ones named."""

    class NameOnly:
        name = "name-only"
        version = "name-only-1"

    register_engine("name-only", NameOnly)
    try:
        with pytest.raises(UsageError, match=r"not an engine: it lacks .*runbrick"):
            get_engine("name-only")
    finally:
        unregister_engine("name-only")
    assert not isinstance(NameOnly(), Engine)


def test_a_failed_output_names_its_failure_class() -> None:
    """A failed outcome needs a known failure class; done and no-data carry none."""
    failed = UnitOutput.failed("timeout", "past its budget")
    assert (failed.outcome, failed.failure_class, failed.paths) == (Outcome.FAILED, "timeout", ())
    with pytest.raises(ValueError, match="failure class"):
        UnitOutput((), outcome=Outcome.FAILED)
    with pytest.raises(ValueError, match="no failure class"):
        UnitOutput((), outcome=Outcome.NO_DATA, failure_class="science")


# -- the registry ---------------------------------------------------------------------------------
def test_engines_resolve_by_name_spec_and_registration(copy_registered: str) -> None:
    """Built-in names, module:attribute specs and registered names all give an engine."""
    assert get_engine("lite").version == f"lite-{__version__}"
    assert isinstance(get_engine("lsdr.survey.engines.lite:LiteEngine"), LiteEngine)
    assert isinstance(get_engine(COPY_SPEC), CopyEngine)
    assert isinstance(get_engine(copy_registered), CopyEngine)
    assert known_engines() == ["lite", "legacypipe", "copy"]


def test_a_registered_engine_travels_to_workers_as_an_importable_reference(
    copy_registered: str,
) -> None:
    """A registered importable class becomes module:qualname; a local one stays its name."""
    assert engine_reference(copy_registered) == COPY_SPEC
    assert engine_reference("lite") == "lite" and engine_reference(COPY_SPEC) == COPY_SPEC

    class Local(LiteEngine):
        name = "local"

    register_engine("local", Local)
    try:
        assert engine_reference("local") == "local"
    finally:
        unregister_engine("local")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("x", "unknown engine 'x': known engines are lite"),
        ("no_such_module:Engine", "module no_such_module not importable here"),
        ("copy_engine:NoSuchEngine", "copy_engine has no attribute NoSuchEngine"),
        ("copy_engine:REFERENCE_FILE", "REFERENCE_FILE is not callable"),
        ("lsdr.survey.core.bricks:RaDecBox", "cannot be made without arguments"),
    ],
)
def test_an_unknown_or_unusable_engine_is_a_usage_error(name: str, message: str) -> None:
    """Each way of naming a non-engine gives a one-line usage error that says why."""
    with pytest.raises(UsageError, match=message):
        get_engine(name)


def test_a_built_in_engine_cannot_be_replaced() -> None:
    """``register_engine('lite', …)`` is refused, as is a name with ':'."""
    with pytest.raises(UsageError, match="built in"):
        register_engine("lite", CopyEngine)
    with pytest.raises(UsageError, match="without ':'"):
        register_engine("a:b", CopyEngine)


# -- the setting ----------------------------------------------------------------------------------
def test_the_engine_setting_follows_the_settings_precedence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Default lite < lsdr.yaml < LSDR_ENGINE < an override, each checked against the registry."""
    monkeypatch.delenv("LSDR_ENGINE", raising=False)
    assert load_settings(tmp_path).engine == "lite"
    (tmp_path / "lsdr.yaml").write_text(f"engine: {COPY_SPEC}\n")
    assert load_settings(tmp_path).engine == COPY_SPEC
    monkeypatch.setenv("LSDR_ENGINE", "lsdr.survey.engines.lite:LiteEngine")
    assert load_settings(tmp_path).engine == "lsdr.survey.engines.lite:LiteEngine"
    assert load_settings(tmp_path, engine="lite").engine == "lite"
    (tmp_path / "lsdr.yaml").write_text("engine: x\n")
    monkeypatch.delenv("LSDR_ENGINE")
    with pytest.raises(UsageError, match=r"lsdr\.yaml: engine: unknown engine 'x'"):
        load_settings(tmp_path)


@pytest.mark.parametrize("where", ["environment", "file"])
def test_an_unknown_engine_exits_2_with_one_line_before_anything_runs(
    fresh_release: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """``LSDR_ENGINE=x`` or ``engine: x`` in lsdr.yaml: one line, status 2, nothing written."""
    if where == "environment":
        monkeypatch.setenv("LSDR_ENGINE", "x")
    else:
        (fresh_release / "lsdr.yaml").write_text("engine: x\n")
    before = tree(fresh_release)
    line = one_error_line(lsdr("run", "discover", "--release-dir", str(fresh_release)))
    assert "unknown engine 'x': known engines are lite" in line, line
    assert not (fresh_release / "state").exists()
    assert tree(fresh_release) == before


def test_demo_with_an_unknown_engine_simulates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``LSDR_ENGINE=x lsdr demo``: one line, status 2, before the simulation writes anything."""
    monkeypatch.setenv("LSDR_ENGINE", "x")
    line = one_error_line(lsdr("demo", "--out", str(tmp_path / "demo")))
    assert "unknown engine 'x': known engines are lite" in line, line
    assert not (tmp_path / "demo").exists()


# -- units ----------------------------------------------------------------------------------------
def refuse(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """A unit whose engine reports a failure without raising (as a command's exit status)."""
    return UnitOutput.failed("science", f"{unit.key}: the command exited with status 1")


def test_a_failed_outcome_is_recorded_as_its_class_and_not_retried(tmp_path: Path) -> None:
    """The sidecar records the failure, its class and the engine; a rerun does not retry it."""
    layout = ReleaseLayout(tmp_path)
    unit = Unit("probe", "k", engine=COPY_SPEC)
    result = execute_unit(refuse, layout, unit, "copy-v1")
    assert (result.state, result.failure_class) == ("failed", "science")
    assert result.message == "k: the command exited with status 1"
    sidecar = read_sidecar(sidecar_path(layout, "probe", "k"))
    assert sidecar is not None
    assert (sidecar["engine"], sidecar["engine_version"]) == (COPY_SPEC, "copy-v1")
    again = settle(layout, unit, "copy-v1").result
    assert again is not None and again.state == "failed" and again.failure_class == "science"


# -- the tractor flow with an extra engine ------------------------------------------------------
def release_files(layout: ReleaseLayout, brick: str) -> dict[str, str]:
    """The tractor unit's outputs (relative to the release) with their recorded digests."""
    sidecar = read_sidecar(sidecar_path(layout, "tractor", brick))
    assert sidecar is not None and sidecar["state"] == "done", sidecar
    return {str(item[0]): str(item[1]) for item in sidecar["outputs"]}


@pytest.mark.slow
def test_a_registered_engine_runs_the_tractor_flow_unchanged(
    tmp_path_factory: pytest.TempPathFactory, dask_address: str, copy_registered: str
) -> None:
    """The copy engine, registered here, runs the tractor flow on the workers as lite's copy.

    Same catalogue column by column and same bytes in every product; the ledger has the brick
    done; the sidecar names the engine; under lite the copied brick is not done (the engine is
    part of its identity); a brick the reference lacks is a science failure, not retried.
    """
    prepared = prepared_survey(tmp_path_factory)
    reference = private_copy(prepared, tmp_path_factory.mktemp("lite") / "release")
    assert run_tractor_flow(reference.root, dask_address).counts.done == 1

    copied = private_copy(prepared, tmp_path_factory.mktemp("copied") / "release")
    use_reference(copied, reference)
    summary = run_tractor_flow(copied.root, dask_address, settings={"engine": copy_registered})
    assert summary.counts.model_dump() == {"done": 1, "cached": 0, "failed": 0}, summary

    assert_same_catalogue(
        read_catalogue(copied.tractor(BRICK)), read_catalogue(reference.tractor(BRICK))
    )
    files = release_files(copied, BRICK)
    assert files == release_files(reference, BRICK)
    assert any("coadd/" in f and "maskbits" in f for f in files), sorted(files)
    row = ledger_for(load_settings(copied.root)).get("tractor", BRICK)
    assert row is not None and (row.state, row.attempts) == ("done", 1)
    sidecar = read_sidecar(sidecar_path(copied, "tractor", BRICK))
    assert sidecar is not None and sidecar["pid"] != os.getpid(), "it ran on a worker"
    assert (sidecar["engine"], sidecar["engine_version"]) == (COPY_SPEC, f"copy-{__version__}")
    assert sidecar["summary"]["status"] == "done" and sidecar["summary"]["copied"] == len(files)
    reference_sidecar = read_sidecar(sidecar_path(reference, "tractor", BRICK))
    assert reference_sidecar is not None and reference_sidecar["engine"] == "lite"

    (unit,) = plan_tractor(copied, [BRICK], TractorOptions(width=SIZE, height=SIZE))
    done = settle(copied, unit, engine_version(copy_registered)).result
    assert done is not None and done.state == "cached"
    assert settle(copied, unit, engine_version("lite")).result is None

    empty = private_copy(prepared, tmp_path_factory.mktemp("no-reference") / "release")
    use_reference(empty, prepared)  # no tractor run there: nothing to copy
    for _ in range(2):
        failed = run_tractor_flow(empty.root, dask_address, settings={"engine": copy_registered})
        ((key, failure_class, message),) = failed.failed
        assert (key, failure_class) == (BRICK, "science") and "no finished brick" in message
    row = ledger_for(load_settings(empty.root)).get("tractor", BRICK)
    assert row is not None and row.attempts == 1, "a science failure must not rerun blindly"
    assert not empty.tractor(BRICK).exists()
