"""NERSC site profiles: the batch scripts they generate, what they refuse, their precedence.

Golden tests build the real ``dask_jobqueue.SLURMCluster`` from each profile's arguments and
compare ``job_script()`` line by line with a script written out here.  Two things vary from run
to run and are normalised: the Python interpreter (this venv's) and the scheduler's address.
The scheduler binds to loopback (``scheduler_options={"host": "127.0.0.1"}``) because this
machine has no ``hsn0`` or ``ipogif0``; that changes only the address, which is normalised, not
the workers' ``--interface``.  Constructing the cluster starts its scheduler only: nothing is
scaled, so no job is submitted.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dask_jobqueue.slurm import SLURMCluster
from test_cli_exit_status import lsdr, one_error_line, tree

from lsdr.infra.cluster import task_runner
from lsdr.infra.profiles import SlurmProfile, get_profile, worker_resources
from lsdr.infra.profiles.registry import PROFILE_DIR
from lsdr.infra.profiles.slurm import (
    KEEP_GLIBC_MALLOC,
    SLURM_KNOBS,
    WORKERS_MAY_FORK,
    walltime_seconds,
)
from lsdr.infra.settings import Settings, load_settings
from lsdr.survey.core.errors import UsageError

SITES = ("perlmutter-cpu", "cori-haswell", "cori-knl")
"""The SLURM site profiles."""

FIXED = {
    "account": "desi",
    "qos": "regular",
    "walltime": "02:00:00",
    "worker_lifetime": "110m",
    "lifetime_stagger": "5m",
    "launcher": "shifter",
    "image": "legacysurvey/legacypipe:DR10.3.4",
}
"""The settings every golden script is made with, beside each site's bricks and threads."""

BRICKS = {"perlmutter-cpu": (4, 32), "cori-haswell": (2, 16), "cori-knl": (4, 17)}
"""Bricks per node and threads per brick of each site's golden script: a whole node."""


@pytest.fixture(autouse=True)
def no_cluster_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no ``LSDR_`` variable of the cluster or its knobs set."""
    for name in ("CLUSTER", "CLUSTER_FILE", "CONFIG", *(k.upper() for k in SLURM_KNOBS)):
        monkeypatch.delenv(f"LSDR_{name}", raising=False)


def write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` (its directory made) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def config(release: Path, values: dict[str, Any]) -> Path:
    """``release/lsdr.yaml`` giving ``values``, one ``key: value`` line each."""
    lines = [f"{key}: {'null' if value is None else repr(value)}" for key, value in values.items()]
    return write(release / "lsdr.yaml", "\n".join(lines) + "\n")


def site_settings(release: Path, site: str, **changes: Any) -> Settings:
    """The golden settings of ``site`` from ``release/lsdr.yaml``, with ``changes`` over them."""
    bricks, threads = BRICKS[site]
    values = {"cluster": site, **FIXED, "bricks_per_node": bricks, "unit_threads": threads}
    config(release, {**values, **changes})
    return load_settings(release)


def slurm_profile(settings: Settings) -> SlurmProfile:
    """The settings' profile, which these tests expect to be a SLURM one."""
    profile = get_profile(settings.cluster)
    assert isinstance(profile, SlurmProfile)
    return profile


@pytest.fixture
def job_script() -> Iterator[Any]:
    """Render a settings' batch script from a real ``SLURMCluster``, normalised; close it after."""
    clusters: list[SLURMCluster] = []

    def render(settings: Settings) -> list[str]:
        profile = slurm_profile(settings)
        kwargs = profile.cluster_kwargs(settings, worker_resources(profile, settings))
        kwargs["scheduler_options"] = {**kwargs["scheduler_options"], "host": "127.0.0.1"}
        cluster = SLURMCluster(**kwargs)
        clusters.append(cluster)
        script = cluster.job_script().replace(sys.executable, "PYTHON")
        return re.sub(r"tcp://127\.0\.0\.1:\d+", "tcp://SCHEDULER", script).splitlines()

    yield render
    for cluster in clusters:
        cluster.close()


KEEP_MALLOC = (
    "export DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON=\"{'MALLOC_TRIM_THRESHOLD_': None}\""
)
"""Every script's prologue: workers keep glibc's malloc defaults, as the local profile's do."""
MAY_FORK = "export DASK_DISTRIBUTED__WORKER__DAEMON=False"
"""... and are not daemonic processes, so a unit may start processes (the lite fit's pool)."""


def worker_line(memory_limit: str, workers: int, memory_mb: int, tail: str) -> str:
    """The worker command of a golden script, one thread per worker process."""
    return (
        "PYTHON -m distributed.cli.dask_worker tcp://SCHEDULER --name dummy-name --nthreads 1 "
        f"--memory-limit {memory_limit} --nworkers {workers} --nanny --death-timeout 60 "
        f"--resources MEMORY_MB={memory_mb} {tail}"
    )


# -- golden batch scripts -------------------------------------------------------------------------
GOLDEN = {
    "perlmutter-cpu": [
        "#!/usr/bin/env bash",
        "",
        "#SBATCH -J lsdr-worker",
        "#SBATCH -n 1",
        "#SBATCH --cpus-per-task=128",
        "#SBATCH --mem=0",
        "#SBATCH -t 02:00:00",
        "#SBATCH -C cpu",
        "#SBATCH --qos=regular",
        "#SBATCH --account=desi",
        "#SBATCH --image=docker:legacysurvey/legacypipe:DR10.3.4",
        KEEP_MALLOC,
        MAY_FORK,
        worker_line(
            "119.21GiB", 4, 122070, "--lifetime 110m --lifetime-stagger 5m --interface hsn0"
        ),
    ],
    "cori-haswell": [
        "#!/usr/bin/env bash",
        "",
        "#SBATCH -J lsdr-worker",
        "#SBATCH -n 1",
        "#SBATCH --cpus-per-task=32",
        "#SBATCH --mem=0",
        "#SBATCH -t 02:00:00",
        "#SBATCH -C haswell",
        "#SBATCH --qos=regular",
        "#SBATCH --account=desi",
        "#SBATCH --image=docker:legacysurvey/legacypipe:DR10.3.4",
        KEEP_MALLOC,
        MAY_FORK,
        worker_line(
            "59.60GiB", 2, 61035, "--lifetime 110m --lifetime-stagger 5m --interface ipogif0"
        ),
    ],
    "cori-knl": [
        "#!/usr/bin/env bash",
        "",
        "#SBATCH -J lsdr-worker",
        "#SBATCH -n 1",
        "#SBATCH --cpus-per-task=68",
        "#SBATCH --mem=0",
        "#SBATCH -t 02:00:00",
        "#SBATCH -C knl",
        "#SBATCH --qos=regular",
        "#SBATCH --account=desi",
        "#SBATCH --image=docker:legacysurvey/legacypipe:DR10.3.4",
        KEEP_MALLOC,
        MAY_FORK,
        worker_line(
            "22.35GiB", 4, 22888, "--lifetime 110m --lifetime-stagger 5m --interface ipogif0"
        ),
    ],
}
"""Each site's batch script for the golden settings, written out by hand."""


@pytest.mark.parametrize("site", SITES)
def test_each_site_profile_renders_its_batch_script(
    tmp_path: Path, job_script: Any, site: str
) -> None:
    """Constraint, QOS, account and image as directives (no ``-p``), a thread per brick worker."""
    settings = site_settings(tmp_path, site)
    lines = job_script(settings)
    for number, (found, wanted) in enumerate(zip(lines, GOLDEN[site], strict=False), start=1):
        assert found == wanted, f"line {number}"
    assert len(lines) == len(GOLDEN[site])
    assert not any(line.startswith("#SBATCH -p") for line in lines)


def test_the_cookbook_worked_example_on_cori_haswell(tmp_path: Path, job_script: Any) -> None:
    """``qdo launch dr6-example 2 --cores_per_worker 16 --walltime=48:00:00 ... -C haswell``.

    The shipped cori-haswell file alone: two jobs of two 16-thread bricks per 32-core node.
    """
    write(tmp_path / "lsdr.yaml", "cluster: cori-haswell\n")
    settings = load_settings(tmp_path)
    assert (settings.nodes, settings.bricks_per_node, settings.unit_threads) == (2, 2, 16)
    assert job_script(settings) == [
        "#!/usr/bin/env bash",
        "",
        "#SBATCH -J lsdr-worker",
        "#SBATCH -n 1",
        "#SBATCH --cpus-per-task=32",
        "#SBATCH --mem=0",
        "#SBATCH -t 48:00:00",
        "#SBATCH -C haswell",
        "#SBATCH --qos=regular",
        KEEP_MALLOC,
        MAY_FORK,
        worker_line(
            "59.60GiB", 2, 61035, "--lifetime 2860m --lifetime-stagger 10m --interface ipogif0"
        ),
    ]
    assert slurm_profile(settings).adapt_kwargs(settings) == {"minimum_jobs": 2, "maximum_jobs": 2}


def test_podman_hpc_and_the_shared_qos_on_perlmutter(tmp_path: Path, job_script: Any) -> None:
    """podman-hpc adds no ``--image``; ``shared`` books the CPUs' share of memory, not ``0``."""
    settings = site_settings(
        tmp_path, "perlmutter-cpu", launcher="podman-hpc", qos="shared", bricks_per_node=1
    )
    assert job_script(settings) == [
        "#!/usr/bin/env bash",
        "",
        "#SBATCH -J lsdr-worker",
        "#SBATCH -n 1",
        "#SBATCH --cpus-per-task=32",
        "#SBATCH --mem=120G",
        "#SBATCH -t 02:00:00",
        "#SBATCH -C cpu",
        "#SBATCH --qos=shared",
        "#SBATCH --account=desi",
        KEEP_MALLOC,
        MAY_FORK,
        "PYTHON -m distributed.cli.dask_worker tcp://SCHEDULER --name dummy-name --nthreads 1 "
        "--memory-limit 119.21GiB --nanny --death-timeout 60 --resources MEMORY_MB=122070 "
        "--lifetime 110m --lifetime-stagger 5m --interface hsn0",
    ]


def fork_pool_sum() -> int:
    """What a unit that starts a process pool computes (the lite fitblobs' fork pool)."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(2) as pool:
        return sum(pool.map(abs, [-1, -2, -3]))


def test_the_prologue_keeps_glibc_defaults_and_lets_units_fork_in_a_real_worker() -> None:
    """Run by bash before a real nanny worker, the prologue's lines take effect in the worker.

    MALLOC_TRIM_THRESHOLD_ is left unset and the worker is not daemonic, so a unit's process
    pool starts. A worker started the same way without it gets Dask's 65536 and is daemonic (a
    pool there fails: "daemonic processes are not allowed to have children").
    """
    import multiprocessing

    from distributed import Client, LocalCluster

    environment = {
        k: v
        for k, v in os.environ.items()
        if k != "MALLOC_TRIM_THRESHOLD_" and not k.startswith("DASK_")
    }
    prologue = "\n".join((KEEP_GLIBC_MALLOC, WORKERS_MAY_FORK))
    with (
        LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        worker = (
            f"exec {shlex.quote(sys.executable)} -m distributed.cli.dask_worker "
            f"{cluster.scheduler_address} --nthreads 1 --nanny --death-timeout 30 --name"
        )
        started = [
            subprocess.Popen(["bash", "-c", f"{lines}\n{worker} {name}"], env=environment)
            for name, lines in (("plain", ""), ("kept", prologue))
        ]
        try:
            client.wait_for_workers(2, timeout=60)
            names = {a: w["name"] for a, w in client.scheduler_info()["workers"].items()}
            found = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
            seen = {names[address]: value for address, value in found.items()}
            daemonic = client.run(lambda: multiprocessing.current_process().daemon)
            daemons = {names[address]: value for address, value in daemonic.items()}
            kept = next(a for a, name in names.items() if name == "kept")
            # A lambda travels by value: a worker started outside pytest cannot import tests.
            pool_sum = lambda: sum(multiprocessing.get_context("fork").Pool(2).map(abs, [-1, -2]))  # noqa: E731
            pooled = client.submit(pool_sum, workers=[kept], pure=False).result(60)
        finally:
            for process in started:
                process.terminate()
                process.wait(timeout=30)
    assert seen == {"plain": "65536", "kept": None}
    assert daemons == {"plain": True, "kept": False}
    assert pooled == 3


def test_the_task_runner_keeps_a_pool_of_nodes_jobs(tmp_path: Path) -> None:
    """A flow's runner: SLURMCluster with the profile's arguments, adapting min = max = nodes."""
    settings = site_settings(tmp_path, "perlmutter-cpu", nodes=3)
    profile = slurm_profile(settings)
    runner = task_runner(settings)
    assert runner.cluster_class == "dask_jobqueue.SLURMCluster"
    assert runner.cluster_kwargs == profile.cluster_kwargs(
        settings, worker_resources(profile, settings)
    )
    assert runner.adapt_kwargs == {"minimum_jobs": 3, "maximum_jobs": 3}
    assert task_runner(settings, "tcp://127.0.0.1:1").address == "tcp://127.0.0.1:1"


def test_walltimes_in_seconds() -> None:
    """``HH:MM:SS`` may pass 24 hours (the cookbook's 48:00:00); ``D-HH:MM:SS`` counts days."""
    assert walltime_seconds("02:00:00") == 7200
    assert walltime_seconds("48:00:00") == 48 * 3600
    assert walltime_seconds("1-12:30:05") == (36 * 60 + 30) * 60 + 5


# -- refused before anything is submitted ---------------------------------------------------------
NOT_A_WALLTIME = "is not a walltime: give HH:MM:SS or D-HH:MM:SS, as in '02:00:00'"
PERLMUTTER_QOS = "regular, debug, realtime, shared"
BAD_SETTINGS: list[tuple[dict[str, Any], str]] = [
    ({"walltime": "2:00"}, f"walltime: '2:00' {NOT_A_WALLTIME}"),
    ({"walltime": "120"}, f"walltime: '120' {NOT_A_WALLTIME}"),
    ({"walltime": "02:75:00"}, f"walltime: '02:75:00' {NOT_A_WALLTIME}"),
    ({"walltime": "1-25:00:00"}, f"walltime: '1-25:00:00' {NOT_A_WALLTIME}"),
    ({"walltime": "00:00:00"}, "walltime: '00:00:00' is zero: give a time above it"),
    ({"walltime": "0-00:00:00"}, "walltime: '0-00:00:00' is zero: give a time above it"),
    ({"bricks_per_node": 0}, "bricks_per_node: Input should be greater than or equal to 1"),
    ({"bricks_per_node": -4}, "bricks_per_node: Input should be greater than or equal to 1"),
    ({"unit_threads": 0}, "unit_threads: Input should be greater than or equal to 1"),
    ({"unit_threads": -1}, "unit_threads: Input should be greater than or equal to 1"),
    ({"nodes": 0}, "nodes: Input should be greater than or equal to 1"),
    (
        {"bricks_per_node": 5},
        "bricks_per_node: 5 bricks × 32 threads (unit_threads) = 160 is more than the 128 cores "
        "of a perlmutter-cpu node: lower bricks_per_node or unit_threads",
    ),
    (
        {"qos": "premium"},
        f"qos: 'premium' is not a QOS of perlmutter-cpu: give one of {PERLMUTTER_QOS}",
    ),
    ({"launcher": "singularity"}, "launcher: unknown container launcher 'singularity'"),
    *(
        (
            {"image": f"legacysurvey/legacypipe:DR10{bad}"},
            f"image: container image 'legacysurvey/legacypipe:DR10{bad}' contains {shown}, "
            "which an image name cannot: give <repo>:<tag>, as in "
            "'legacysurvey/legacypipe:DR11.1.0'",
        )
        for bad, shown in [
            (" 3", "' '"),
            (";rm", "';'"),
            ("$HOME", "'$'"),
            ("`id`", "'`'"),
            ("|cat", "'|'"),
            ("&x", "'&'"),
        ]
    ),
    (
        {"worker_lifetime": "120m"},
        "worker_lifetime: 120m ± 5m (lifetime_stagger) reaches the walltime 02:00:00: give a "
        "worker_lifetime plus lifetime_stagger below it, so workers leave before SLURM ends "
        "their job",
    ),
    ({"worker_lifetime": "116m"}, "worker_lifetime: 116m ± 5m (lifetime_stagger) reaches"),
    (
        {"lifetime_stagger": "110m"},
        "worker_lifetime: 110m ± 110m (lifetime_stagger) reaches the walltime",
    ),
    (
        {"worker_lifetime": "30m", "lifetime_stagger": "30m"},
        "lifetime_stagger: 30m is not below worker_lifetime 30m: a worker could leave at once",
    ),
    (
        {"worker_lifetime": "forever"},
        "worker_lifetime: 'forever' is not a duration with its unit, as in '110m' or '1h'",
    ),
    ({"worker_lifetime": 600}, "worker_lifetime: '600' is not a duration with its unit"),
]
"""Settings over the golden Perlmutter ones and the error after ``<lsdr.yaml>: ``."""


@pytest.mark.parametrize(("changes", "message"), BAD_SETTINGS)
def test_a_bad_site_setting_is_one_line_naming_the_file_and_key(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    """Bad walltime, bricks, threads, QOS, image or lifetime: ``R/lsdr.yaml: key: reason``."""
    with pytest.raises(UsageError) as refused:
        site_settings(tmp_path, "perlmutter-cpu", **changes)
    line = str(refused.value)
    assert line.startswith(f"{tmp_path / 'lsdr.yaml'}: {message}"), line
    assert "\n" not in line


def test_a_conflict_names_the_file_that_set_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key a check refuses is named where it was set: profile file, own file or variable."""
    write(tmp_path / "lsdr.yaml", "cluster: perlmutter-cpu\nwalltime: '02:00:00'\n")
    with pytest.raises(UsageError) as refused:
        load_settings(tmp_path)  # the shipped file's 700m lifetime is too long for 2 hours
    assert str(refused.value).startswith(
        f"{PROFILE_DIR / 'perlmutter-cpu.yaml'}: worker_lifetime: 700m ± 10m (lifetime_stagger) "
        "reaches the walltime 02:00:00"
    )

    own = write(tmp_path / "mine.yaml", "bricks_per_node: 8\n")
    with pytest.raises(UsageError) as refused:
        load_settings(tmp_path, cluster_file=own, worker_lifetime="100m")
    assert str(refused.value).startswith(f"{own}: bricks_per_node: 8 bricks × 32 threads")

    monkeypatch.setenv("LSDR_QOS", "premium")
    with pytest.raises(UsageError) as refused:
        load_settings(tmp_path, worker_lifetime="100m")
    assert str(refused.value).startswith("LSDR_QOS: 'premium' is not a QOS of perlmutter-cpu")


def test_a_bad_site_setting_exits_2_before_anything_runs(
    fresh_release: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``lsdr run`` on perlmutter-cpu with a zero walltime: one line, status 2, nothing written."""
    monkeypatch.setenv("LSDR_CLUSTER", "perlmutter-cpu")
    monkeypatch.setenv("LSDR_WALLTIME", "00:00:00")
    before = tree(fresh_release)
    line = one_error_line(lsdr("run", "discover", "--release-dir", str(fresh_release)))
    assert line == (
        "lsdr: error: LSDR_WALLTIME: '00:00:00' is zero: give a time above it, as in '02:00:00'"
    )
    assert not (fresh_release / "state").exists()
    assert tree(fresh_release) == before


# -- precedence -----------------------------------------------------------------------------------
def test_each_site_file_gives_every_knob_a_valid_value(tmp_path: Path) -> None:
    """With only ``cluster`` set, each site's own file sizes a whole node and passes its checks."""
    for site in SITES:
        write(tmp_path / "lsdr.yaml", f"cluster: {site}\n")
        settings = load_settings(tmp_path)
        profile = slurm_profile(settings)
        assert profile.knobs == SLURM_KNOBS
        assert profile.job_cpus(settings) == profile.site.cores
        assert (settings.account, settings.image, settings.launcher) == (None, None, "shifter")


def test_profile_file_then_config_then_environment_then_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each source beats the one below it for the new knobs, down to the script's directives."""
    write(tmp_path / "lsdr.yaml", "cluster: perlmutter-cpu\nqos: debug\nwalltime: '23:00:00'\n")
    s = load_settings(tmp_path)
    assert (s.qos, s.walltime, s.worker_lifetime, s.bricks_per_node) == (
        "debug",  # lsdr.yaml beats the profile file
        "23:00:00",
        "700m",  # the profile file beats the default
        4,
    )

    own = write(tmp_path / "mine.yaml", "bricks_per_node: 2\nunit_threads: 64\nqos: shared\n")
    write(
        tmp_path / "lsdr.yaml",
        "cluster: perlmutter-cpu\ncluster_file: mine.yaml\nqos: debug\naccount: m1\n",
    )
    s = load_settings(tmp_path)
    assert (s.cluster_file, s.bricks_per_node, s.unit_threads, s.qos, s.account) == (
        own,
        2,  # one's own file beats the profile's
        64,
        "debug",  # lsdr.yaml beats one's own file
        "m1",
    )

    monkeypatch.setenv("LSDR_ACCOUNT", "desi")
    monkeypatch.setenv("LSDR_IMAGE", "legacysurvey/legacypipe:DR10.3.4")
    monkeypatch.setenv("LSDR_NODES", "6")
    s = load_settings(tmp_path)
    assert (s.account, s.image, s.nodes, s.qos) == (
        "desi",
        "legacysurvey/legacypipe:DR10.3.4",
        6,
        "debug",
    )

    s = load_settings(tmp_path, account="m2", qos="regular", walltime="1-00:00:00", image=None)
    assert (s.account, s.qos, s.walltime, s.image) == (
        "m2",
        "regular",
        "1-00:00:00",
        "legacysurvey/legacypipe:DR10.3.4",  # None means not given
    )
    assert slurm_profile(s).directives(s) == [
        "-C cpu",
        "--qos=regular",
        "--account=m2",
        "--image=docker:legacysurvey/legacypipe:DR10.3.4",
    ]


def test_site_settings_passed_to_a_flow_come_back_the_same(tmp_path: Path) -> None:
    """A flow's ``settings`` parameter (a JSON dump) rebuilds the same Settings and script."""
    s = site_settings(tmp_path, "perlmutter-cpu", nodes=2)
    dumped = s.model_dump(mode="json", exclude={"release_dir"})
    assert load_settings(tmp_path, **dumped) == s
