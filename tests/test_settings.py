"""Settings precedence: defaults < release config file < LSDR_* environment < overrides."""

from __future__ import annotations

import pytest

from lsdr.infra.settings import load_settings
from lsdr.survey.core.errors import UsageError


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
