"""The cluster seam: the ClusterProfile protocol, the registry, profile files and their precedence.

One test starts the local profile for real (one worker process, sized by a profile file) and
reads the worker's size back from the scheduler; the CLI tests run the real ``lsdr``.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import pytest
from dask.utils import parse_bytes
from distributed import Client
from test_cli_exit_status import lsdr, one_error_line, tree
from test_site_profiles import fork_pool_sum

from lsdr.infra.cluster import dask_cluster, task_runner
from lsdr.infra.profiles import (
    MEMORY_RESOURCE,
    ClusterProfile,
    LocalProfile,
    get_profile,
    known_profiles,
    profile_file,
    worker_resources,
)
from lsdr.infra.profiles.registry import PROFILE_DIR
from lsdr.infra.settings import Settings, load_settings, profile_settings
from lsdr.survey.core.errors import UsageError

KNOB_VARIABLES = tuple(f"LSDR_{knob.upper()}" for knob in LocalProfile.knobs)
"""The environment variables of the local profile's knobs."""


@pytest.fixture(autouse=True)
def no_cluster_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no ``LSDR_`` variable of the cluster or its knobs set."""
    for name in ("LSDR_CLUSTER", "LSDR_CLUSTER_FILE", "LSDR_CONFIG", *KNOB_VARIABLES):
        monkeypatch.delenv(name, raising=False)


def write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` (its directory made) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# -- the protocol and the registry ----------------------------------------------------------------
PROTOCOL_METHODS = ("worker_memory_mb", "check", "start", "task_runner")


def test_the_local_profile_has_every_protocol_member_with_its_parameters() -> None:
    """LocalProfile is a ClusterProfile: name, knobs, and each method with the same parameters."""
    profile = LocalProfile()
    assert isinstance(profile, ClusterProfile)
    methods = {
        name
        for name, member in inspect.getmembers(ClusterProfile)
        if not name.startswith("_") and inspect.isfunction(member)
    }
    assert methods == set(PROTOCOL_METHODS)
    for name in PROTOCOL_METHODS:
        wanted = inspect.signature(getattr(ClusterProfile, name))
        found = inspect.signature(getattr(LocalProfile, name))
        assert [(p.name, p.kind, p.default) for p in found.parameters.values()] == [
            (p.name, p.kind, p.default) for p in wanted.parameters.values()
        ], name
    assert profile.name == "local"
    assert list(profile.knobs) == [
        "n_workers",
        "threads_per_worker",
        "worker_memory",
        "unit_threads",
        "unit_memory_limit_mb",
    ]
    assert set(profile.knobs) <= set(Settings.model_fields)
    assert all(isinstance(text, str) and text for text in profile.knobs.values())


def test_an_object_without_the_methods_is_not_a_profile() -> None:
    """A class with a name and knobs only does not satisfy the protocol."""

    class NameOnly:
        name = "name-only"
        knobs = "not a mapping either"

    assert not isinstance(NameOnly(), ClusterProfile)


KNOWN = "local, local-slurm, perlmutter-cpu, cori-haswell, cori-knl"
"""The known profiles as an unknown name's error lists them."""


def test_the_registry_knows_local_and_refuses_other_names_in_one_line() -> None:
    """``get_profile('local')`` is a LocalProfile; an unknown name lists the known profiles."""
    assert known_profiles() == [
        "local",
        "local-slurm",
        "perlmutter-cpu",
        "cori-haswell",
        "cori-knl",
    ]
    assert isinstance(get_profile("local"), LocalProfile)
    with pytest.raises(UsageError) as refused:
        get_profile("slurm-local")
    assert str(refused.value) == (
        f"unknown cluster profile 'slurm-local': known profiles are {KNOWN}"
    )


def test_each_profile_ships_one_file_setting_every_knob() -> None:
    """One YAML per known profile, next to its module, giving a valid value to each knob."""
    shipped = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
    assert shipped == sorted(known_profiles())
    for name in known_profiles():
        assert profile_file(name) == PROFILE_DIR / f"{name}.yaml"
        values = profile_settings(name)
        assert list(values) == list(get_profile(name).knobs)
    assert profile_settings("local") == {
        "n_workers": "auto",
        "threads_per_worker": 1,
        "worker_memory": "auto",
        "unit_threads": 1,
        "unit_memory_limit_mb": None,
    }


# -- the settings: precedence ---------------------------------------------------------------------
def test_the_local_file_gives_the_settings_with_no_other_source(tmp_path: Path) -> None:
    """No config, environment or override: local.yaml's values (auto: a worker per CPU)."""
    s = load_settings(tmp_path)
    assert (s.cluster, s.cluster_file) == ("local", None)
    assert (s.n_workers, s.threads_per_worker, s.worker_memory) == (os.cpu_count(), 1, "auto")
    assert (s.unit_threads, s.unit_memory_limit_mb) == (1, None)
    ram_mb = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**20
    assert LocalProfile().worker_memory_mb(s) == ram_mb // s.n_workers


def test_profile_file_then_config_then_environment_then_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each source beats the one below it, key by key, down to the LocalCluster's arguments."""
    own = write(
        tmp_path / "profiles" / "small.yaml",
        "n_workers: 3\nthreads_per_worker: 2\nworker_memory: 1GiB\nunit_threads: 2\n",
    )
    write(tmp_path / "lsdr.yaml", "cluster_file: profiles/small.yaml\nunit_threads: 4\n")
    s = load_settings(tmp_path)
    assert s.cluster_file == own
    assert (s.n_workers, s.threads_per_worker, s.worker_memory, s.unit_threads) == (
        3,
        2,
        "1GiB",
        4,  # lsdr.yaml beats the profile file
    )

    monkeypatch.setenv("LSDR_N_WORKERS", "4")
    monkeypatch.setenv("LSDR_WORKER_MEMORY", "2GiB")
    s = load_settings(tmp_path)
    assert (s.n_workers, s.threads_per_worker, s.worker_memory) == (4, 2, "2GiB")

    s = load_settings(tmp_path, n_workers=5, worker_memory=None)
    assert (s.n_workers, s.threads_per_worker, s.worker_memory) == (5, 2, "2GiB")
    profile = get_profile(s.cluster)
    resources = worker_resources(profile, s)
    assert resources == {MEMORY_RESOURCE: 2048}
    assert LocalProfile().cluster_kwargs(s, resources) == {
        "n_workers": 5,
        "threads_per_worker": 2,
        "processes": True,
        "memory_limit": "2GiB",
        "resources": {MEMORY_RESOURCE: 2048},
        "dashboard_address": ":0",
    }
    runner = task_runner(s)
    assert runner.cluster_class == "distributed.LocalCluster"
    assert runner.cluster_kwargs == LocalProfile().cluster_kwargs(s, resources)
    assert task_runner(s, "tcp://127.0.0.1:1").address == "tcp://127.0.0.1:1"


def test_the_profile_file_is_chosen_by_the_same_precedence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``cluster_file`` in lsdr.yaml is relative to it; in the environment, to the current one."""
    write(tmp_path / "lsdr.yaml", "cluster_file: mine.yaml\n")
    write(tmp_path / "mine.yaml", "n_workers: 2\n")
    elsewhere = write(tmp_path / "elsewhere" / "mine.yaml", "n_workers: 6\n")
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert load_settings(tmp_path).n_workers == 2
    monkeypatch.setenv("LSDR_CLUSTER_FILE", "mine.yaml")
    s = load_settings(tmp_path)
    assert (s.cluster_file, s.n_workers) == (elsewhere, 6)
    monkeypatch.delenv("LSDR_CLUSTER_FILE")
    assert load_settings(tmp_path, cluster_file=str(elsewhere)).n_workers == 6


def test_settings_passed_to_a_flow_come_back_the_same(tmp_path: Path) -> None:
    """A flow's ``settings`` parameter (a JSON dump) rebuilds the same Settings and profile."""
    write(tmp_path / "mine.yaml", "n_workers: 2\nworker_memory: 700MiB\n")
    s = load_settings(tmp_path, cluster_file=tmp_path / "mine.yaml")
    dumped = s.model_dump(mode="json", exclude={"release_dir"})
    assert load_settings(tmp_path, **dumped) == s


# -- the settings: refused values -----------------------------------------------------------------
BAD_PROFILE_FILES = [
    ("n_workers: 0\n", "n_workers: input should be greater than or equal to 1"),
    ("n_workers: -2\n", "n_workers: input should be greater than or equal to 1"),
    ("n_workers: many\n", "n_workers: input should be a valid integer"),
    ("worker_memory: 4\n", "worker_memory: 4 has no unit: give one, as in '4GiB' (or 'auto')"),
    ("worker_memory: '4.5'\n", "worker_memory: 4.5 has no unit"),
    ("worker_memory: 4 apples\n", "worker_memory: '4 apples' is not a positive memory size"),
    ("worker_memory: 0GB\n", "worker_memory: '0GB' is not a positive memory size"),
    ("threads_per_worker: null\n", "threads_per_worker: input should be a valid integer"),
    (
        "workers: 2\nbatch_size: 7\n",
        "unknown key(s) batch_size, workers for cluster profile 'local'; its keys: n_workers, ",
    ),
    ("- a list\n", "expected a mapping of settings, got list"),
    ("n_workers: [1\n", "not valid YAML"),
]
"""A profile file's text and what its one-line error says after the file's name."""


@pytest.mark.parametrize(("text", "message"), BAD_PROFILE_FILES)
def test_a_bad_profile_file_is_one_line_naming_the_file_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    """Zero or negative workers, memory without a unit, an unknown key: the file and key named."""
    own = write(tmp_path / "mine.yaml", text)
    with pytest.raises(UsageError) as refused:
        load_settings(tmp_path, cluster_file=own)
    line = str(refused.value)
    assert line.startswith(f"{own}: {message}"), line
    assert "\n" not in line


@pytest.mark.parametrize("where", ["file", "environment", "override"])
def test_an_unknown_profile_names_where_it_was_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """``cluster: slurm`` in lsdr.yaml, ``LSDR_CLUSTER`` or an override: one line, the source."""
    overrides = {}
    if where == "file":
        write(tmp_path / "lsdr.yaml", "cluster: slurm\n")
        source = f"{tmp_path / 'lsdr.yaml'}: cluster"
    elif where == "environment":
        monkeypatch.setenv("LSDR_CLUSTER", "slurm")
        source = "LSDR_CLUSTER"
    else:
        overrides = {"cluster": "slurm"}
        source = "setting cluster"
    with pytest.raises(UsageError) as refused:
        load_settings(tmp_path, **overrides)
    assert str(refused.value) == (
        f"{source}: unknown cluster profile 'slurm': known profiles are {KNOWN}"
    )


def test_a_missing_profile_file_is_named(tmp_path: Path) -> None:
    """``cluster_file`` naming no file: the config file, the key and the path it looked for."""
    write(tmp_path / "lsdr.yaml", "cluster_file: nowhere.yaml\n")
    with pytest.raises(UsageError) as refused:
        load_settings(tmp_path)
    assert str(refused.value) == (
        f"{tmp_path / 'lsdr.yaml'}: cluster_file: no such file: {tmp_path / 'nowhere.yaml'}"
    )


def test_knob_values_from_the_environment_are_checked_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``LSDR_WORKER_MEMORY=4`` has no unit; ``LSDR_N_WORKERS=auto`` is one worker per CPU."""
    monkeypatch.setenv("LSDR_WORKER_MEMORY", "4")
    with pytest.raises(UsageError, match=r"^LSDR_WORKER_MEMORY: 4 has no unit"):
        load_settings(tmp_path)
    monkeypatch.delenv("LSDR_WORKER_MEMORY")
    monkeypatch.setenv("LSDR_N_WORKERS", "auto")
    assert load_settings(tmp_path, n_workers=None).n_workers == os.cpu_count()


# -- one real start -------------------------------------------------------------------------------
def test_the_local_profile_starts_workers_sized_by_its_profile_file(tmp_path: Path) -> None:
    """One worker process from a profile file: threads, memory limit and MEMORY_MB as written."""
    own = write(
        tmp_path / "one-worker.yaml",
        "n_workers: 1\nthreads_per_worker: 2\nworker_memory: 1.5GiB\n",
    )
    write(tmp_path / "lsdr.yaml", f"cluster_file: {own.name}\n")
    settings = load_settings(tmp_path)
    with dask_cluster(settings) as address, Client(address) as client:
        worker_pid = client.submit(os.getpid, resources={MEMORY_RESOURCE: 1536}).result()
        assert worker_pid != os.getpid()
        assert client.submit(sum, [1, 2, 3]).result() == 6
        workers = list(client.scheduler_info(n_workers=-1)["workers"].values())
    assert len(workers) == 1
    [worker] = workers
    assert worker["nthreads"] == 2
    assert worker["memory_limit"] == parse_bytes("1.5GiB")
    assert worker["resources"] == {MEMORY_RESOURCE: 1536}


def test_a_unit_on_a_local_worker_may_start_a_process_pool(tmp_path: Path) -> None:
    """The lite fit's fork pool (a brick with ``unit_threads`` > 1) starts in a local worker.

    Dask's workers are daemonic by default, and multiprocessing refuses children there.
    """
    settings = load_settings(tmp_path, n_workers=1)
    with dask_cluster(settings) as address, Client(address) as client:
        assert client.submit(fork_pool_sum, pure=False).result() == 6


# -- the CLI: refused before anything starts ------------------------------------------------------
@pytest.mark.parametrize("where", ["environment", "file"])
def test_an_unknown_profile_exits_2_with_one_line(
    fresh_release: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """``LSDR_CLUSTER=slurm`` or ``cluster: slurm``: one line naming it, status 2, no write."""
    if where == "environment":
        monkeypatch.setenv("LSDR_CLUSTER", "slurm")
        source = "LSDR_CLUSTER"
    else:
        config = write(fresh_release / "lsdr.yaml", "cluster: slurm\n")
        source = f"{config}: cluster"
    before = tree(fresh_release)
    line = one_error_line(lsdr("run", "discover", "--release-dir", str(fresh_release)))
    assert line == (
        f"lsdr: error: {source}: unknown cluster profile 'slurm': known profiles are {KNOWN}"
    )
    assert not (fresh_release / "state").exists()
    assert tree(fresh_release) == before


def test_a_bad_profile_file_exits_2_with_one_line(fresh_release: Path) -> None:
    """A profile file with ``worker_memory: 4``: one line naming the file and key, status 2."""
    own = write(fresh_release / "mine.yaml", "n_workers: 1\nworker_memory: 4\n")
    write(fresh_release / "lsdr.yaml", "cluster_file: mine.yaml\n")
    before = tree(fresh_release)
    line = one_error_line(lsdr("run", "discover", "--release-dir", str(fresh_release)))
    assert (
        line
        == f"lsdr: error: {own}: worker_memory: 4 has no unit: give one, as in '4GiB' (or 'auto')"
    )
    assert not (fresh_release / "state").exists()
    assert tree(fresh_release) == before
