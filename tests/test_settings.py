"""Settings precedence: defaults < release config file < LSDR_* environment < overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsdr.infra.settings import load_settings
from lsdr.survey.core.errors import SurveyError, UsageError


def test_defaults(tmp_path, monkeypatch):
    """With no file, environment or override, the documented defaults apply."""
    monkeypatch.delenv("LSDR_BATCH_SIZE", raising=False)
    s = load_settings(tmp_path)
    assert s.batch_size == 250 and s.engine == "lite" and s.release_dir == tmp_path.resolve()


def test_file_then_environment_then_override(tmp_path, monkeypatch):
    """Each source beats the one below it, key by key."""
    (tmp_path / "lsdr.yaml").write_text("batch_size: 7\nmax_attempts: 5\nn_workers: 3\n")
    s = load_settings(tmp_path)
    assert (s.batch_size, s.max_attempts, s.n_workers) == (7, 5, 3)
    monkeypatch.setenv("LSDR_BATCH_SIZE", "11")
    s = load_settings(tmp_path)
    assert (s.batch_size, s.max_attempts) == (11, 5)
    s = load_settings(tmp_path, batch_size=13, max_attempts=None)
    assert (s.batch_size, s.max_attempts) == (13, 5)


def test_unknown_or_invalid_settings_are_usage_errors(tmp_path):
    """A misspelt key in the file or an invalid value names the setting."""
    (tmp_path / "lsdr.yaml").write_text("batchsize: 7\n")
    with pytest.raises(UsageError, match="batchsize"):
        load_settings(tmp_path)
    (tmp_path / "lsdr.yaml").write_text("batch_size: 0\n")
    with pytest.raises(UsageError, match="batch_size"):
        load_settings(tmp_path)
    (tmp_path / "lsdr.yaml").write_text("- a list\n")
    with pytest.raises(UsageError, match="mapping"):
        load_settings(tmp_path)


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({"launcher": "shifter"}, "needs a container image"),
        (
            {"launcher": "shifter", "image": "legacysurvey/legacypipe:DR11.1"},
            "legacypipe_version is not set",
        ),
        ({"legacypipe_version": "DR8.0.0"}, "no known flag set for DR8"),
        ({"legacypipe_version": "latest"}, "is not a 'git describe'"),
    ],
)
def test_legacypipe_engine_settings_are_checked_when_read(
    tmp_path: Path, given: dict[str, str], says: str
) -> None:
    """The engine is made from its settings when they are read: a bad one fails before a run."""
    with pytest.raises(SurveyError) as err:
        load_settings(tmp_path, engine="legacypipe", **given)
    assert says in str(err.value)


def test_legacypipe_in_a_container_with_its_version_is_accepted(tmp_path: Path) -> None:
    """Launcher, image and version given: the settings read, and the engine's version is it."""
    from lsdr.survey.engines.registry import engine_config, get_engine

    settings = load_settings(
        tmp_path,
        engine="legacypipe",
        launcher="podman-hpc",
        image="legacysurvey/legacypipe:DR11.1",
        legacypipe_version="DR11.1.0-28-g93e2d828",
    )
    engine = get_engine("legacypipe", engine_config("legacypipe", settings))
    assert engine.version == "legacypipe-DR11.1.0-28-g93e2d828"
