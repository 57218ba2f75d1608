"""Container launchers: the argv and environment each builds, the checks, a real run.

The golden tests write out by hand what each launcher must produce for runbrick on the
cookbook's brick 1804p325 at NERSC paths; the ``none`` launcher runs a real Python child that
reports what it sees, and ``shifter`` (not installed here) is run for real to fail cleanly.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from pathlib import Path, PurePosixPath

import pytest

from lsdr.infra.launchers import (
    ApptainerLauncher,
    ContainerImage,
    Deadline,
    DockerLauncher,
    LaunchEnvironment,
    Launcher,
    NoneLauncher,
    PodmanHpcLauncher,
    ReferenceCatalogues,
    ShifterLauncher,
    get_launcher,
    known_launchers,
    run_launched,
    sbatch_image_directive,
)
from lsdr.survey.core.errors import MissingDependencyError, UsageError

IMAGE = ContainerImage("legacysurvey/legacypipe", "DR11.1.0")
COSMO = Path("/dvs_ro/cfs/cdirs/cosmo")
RELEASE = Path("/pscratch/sd/l/lsdr/dr11")
UNIT = Path("/pscratch/sd/l/lsdr/dr11/tmp/tractor/1804p325")

ENVIRONMENT = LaunchEnvironment(
    survey_dir=COSMO / "work/legacysurvey/dr11",
    unit_dir=UNIT,
    references=ReferenceCatalogues(
        dust_dir=COSMO / "data/dust/v0_1",
        gaia_cat_dir=COSMO / "data/gaia/dr3/healpix",
        gaia_cat_ver="3",
        gaia_cat_prefix="healpix",
        gaia_cat_scheme="nested",
    ),
    inputs=(COSMO,),
    outputs=(RELEASE,),
)

RUNBRICK = [
    "python",
    "-O",
    "legacypipe/runbrick.py",
    "--brick",
    "1804p325",
    "--skip",
    "--skip-calibs",
    "--threads",
    "8",
    "--checkpoint",
    "/pscratch/sd/l/lsdr/dr11/checkpoints/180/checkpoint-1804p325.pickle",
    "--outdir",
    "/pscratch/sd/l/lsdr/dr11",
]

VARIABLES = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "KMP_AFFINITY": "disabled",
    "MPICH_GNI_FORK_MODE": "FULLCOPY",
    "PYTHONNOUSERSITE": "1",
    "XDG_CACHE_HOME": "/pscratch/sd/l/lsdr/dr11/tmp/tractor/1804p325/cache",
    "XDG_CONFIG_HOME": "/pscratch/sd/l/lsdr/dr11/tmp/tractor/1804p325/config",
    "ASTROPY_CACHE_DIR": "/pscratch/sd/l/lsdr/dr11/tmp/tractor/1804p325/cache/astropy",
    "ASTROPY_CONFIG_DIR": "/pscratch/sd/l/lsdr/dr11/tmp/tractor/1804p325/config/astropy",
    "MPLCONFIGDIR": "/pscratch/sd/l/lsdr/dr11/tmp/tractor/1804p325/matplotlib",
    "LEGACY_SURVEY_DIR": "/dvs_ro/cfs/cdirs/cosmo/work/legacysurvey/dr11",
    "DUST_DIR": "/dvs_ro/cfs/cdirs/cosmo/data/dust/v0_1",
    "GAIA_CAT_DIR": "/dvs_ro/cfs/cdirs/cosmo/data/gaia/dr3/healpix",
    "GAIA_CAT_VER": "3",
    "GAIA_CAT_PREFIX": "healpix",
    "GAIA_CAT_SCHEME": "nested",
}
"""What every launcher gives the command, in this order (-e flags keep it)."""

UNSET = (
    "TYCHO2_KD_DIR",
    "LARGEGALAXIES_CAT",
    "UNWISE_COADDS_DIR",
    "UNWISE_COADDS_TIMERESOLVED_DIR",
    "UNWISE_MODEL_SKY_DIR",
    "SKY_TEMPLATE_DIR",
    "PS1CAT_DIR",
    "GALEX_DIR",
    "BLOB_MASK_DIR",
)
"""The catalogue variables not given, removed from an inherited environment."""

E_OPTIONS = [
    "-e", "OMP_NUM_THREADS=1",
    "-e", "MKL_NUM_THREADS=1",
    "-e", "OPENBLAS_NUM_THREADS=1",
    "-e", "NUMEXPR_NUM_THREADS=1",
    "-e", "KMP_AFFINITY=disabled",
    "-e", "MPICH_GNI_FORK_MODE=FULLCOPY",
    "-e", "PYTHONNOUSERSITE=1",
    "-e", "XDG_CACHE_HOME=/pscratch/sd/l/lsdr/dr11/tmp/tractor/1804p325/cache",
    "-e", "XDG_CONFIG_HOME=/pscratch/sd/l/lsdr/dr11/tmp/tractor/1804p325/config",
    "-e", "ASTROPY_CACHE_DIR=/pscratch/sd/l/lsdr/dr11/tmp/tractor/1804p325/cache/astropy",
    "-e", "ASTROPY_CONFIG_DIR=/pscratch/sd/l/lsdr/dr11/tmp/tractor/1804p325/config/astropy",
    "-e", "MPLCONFIGDIR=/pscratch/sd/l/lsdr/dr11/tmp/tractor/1804p325/matplotlib",
    "-e", "LEGACY_SURVEY_DIR=/dvs_ro/cfs/cdirs/cosmo/work/legacysurvey/dr11",
    "-e", "DUST_DIR=/dvs_ro/cfs/cdirs/cosmo/data/dust/v0_1",
    "-e", "GAIA_CAT_DIR=/dvs_ro/cfs/cdirs/cosmo/data/gaia/dr3/healpix",
    "-e", "GAIA_CAT_VER=3",
    "-e", "GAIA_CAT_PREFIX=healpix",
    "-e", "GAIA_CAT_SCHEME=nested",
]  # fmt: skip
"""podman's and docker's -e options for VARIABLES."""

VOLUMES = [
    "-v", "/dvs_ro/cfs/cdirs/cosmo:/dvs_ro/cfs/cdirs/cosmo:ro",
    "-v", "/pscratch/sd/l/lsdr/dr11:/pscratch/sd/l/lsdr/dr11",
]  # fmt: skip
"""The inputs read-only, the release (which holds the unit's directory) writable, same paths."""


def test_none_golden():
    """It runs the command unchanged, with the unit's variables and the stray ones unset."""
    launch = NoneLauncher().launch(RUNBRICK, ENVIRONMENT)
    assert launch.argv == tuple(RUNBRICK)
    assert dict(launch.environment) == VARIABLES
    assert launch.unset == UNSET


def test_shifter_golden():
    """It prefixes shifter --image=docker:<repo>:<tag> and passes the variables through."""
    launch = ShifterLauncher(IMAGE).launch(RUNBRICK, ENVIRONMENT)
    assert launch.argv == (
        "shifter",
        "--image=docker:legacysurvey/legacypipe:DR11.1.0",
        *RUNBRICK,
    )
    assert dict(launch.environment) == VARIABLES
    assert launch.unset == UNSET


def test_shifter_sbatch_directive():
    """It gives the #SBATCH --image line a Shifter batch script needs."""
    assert (
        sbatch_image_directive(IMAGE) == "#SBATCH --image=docker:legacysurvey/legacypipe:DR11.1.0"
    )


def test_podman_hpc_golden():
    """It runs podman-hpc run --rm with the mounts, -e variables, the image, the command."""
    launch = PodmanHpcLauncher(IMAGE).launch(RUNBRICK, ENVIRONMENT)
    assert launch.argv == (
        "podman-hpc", "run", "--rm",
        *VOLUMES,
        *E_OPTIONS,
        "legacysurvey/legacypipe:DR11.1.0",
        *RUNBRICK,
    )  # fmt: skip
    assert dict(launch.environment) == {}
    assert launch.unset == ()


def test_docker_golden():
    """It runs docker run --rm as the given user with the mounts and -e variables."""
    launch = DockerLauncher(IMAGE, user="1000:1000").launch(RUNBRICK, ENVIRONMENT)
    assert launch.argv == (
        "docker", "run", "--rm", "--user", "1000:1000",
        *VOLUMES,
        *E_OPTIONS,
        "legacysurvey/legacypipe:DR11.1.0",
        *RUNBRICK,
    )  # fmt: skip
    assert dict(launch.environment) == {}


def test_apptainer_golden():
    """It runs apptainer exec --cleanenv with --bind mounts and APPTAINERENV_ variables."""
    binds = [
        "--bind", "/dvs_ro/cfs/cdirs/cosmo:/dvs_ro/cfs/cdirs/cosmo:ro",
        "--bind", "/pscratch/sd/l/lsdr/dr11:/pscratch/sd/l/lsdr/dr11",
    ]  # fmt: skip
    launch = ApptainerLauncher(IMAGE).launch(RUNBRICK, ENVIRONMENT)
    assert launch.argv == (
        "apptainer", "exec", "--cleanenv", *binds,
        "docker://legacysurvey/legacypipe:DR11.1.0",
        *RUNBRICK,
    )  # fmt: skip
    assert dict(launch.environment) == {
        "APPTAINERENV_OMP_NUM_THREADS": "1",
        "APPTAINERENV_MKL_NUM_THREADS": "1",
        "APPTAINERENV_OPENBLAS_NUM_THREADS": "1",
        "APPTAINERENV_NUMEXPR_NUM_THREADS": "1",
        "APPTAINERENV_KMP_AFFINITY": "disabled",
        "APPTAINERENV_MPICH_GNI_FORK_MODE": "FULLCOPY",
        "APPTAINERENV_PYTHONNOUSERSITE": "1",
        "APPTAINERENV_XDG_CACHE_HOME": "/pscratch/sd/l/lsdr/dr11/tmp/tractor/1804p325/cache",
        "APPTAINERENV_XDG_CONFIG_HOME": "/pscratch/sd/l/lsdr/dr11/tmp/tractor/1804p325/config",
        "APPTAINERENV_ASTROPY_CACHE_DIR":
            "/pscratch/sd/l/lsdr/dr11/tmp/tractor/1804p325/cache/astropy",
        "APPTAINERENV_ASTROPY_CONFIG_DIR":
            "/pscratch/sd/l/lsdr/dr11/tmp/tractor/1804p325/config/astropy",
        "APPTAINERENV_MPLCONFIGDIR": "/pscratch/sd/l/lsdr/dr11/tmp/tractor/1804p325/matplotlib",
        "APPTAINERENV_LEGACY_SURVEY_DIR": "/dvs_ro/cfs/cdirs/cosmo/work/legacysurvey/dr11",
        "APPTAINERENV_DUST_DIR": "/dvs_ro/cfs/cdirs/cosmo/data/dust/v0_1",
        "APPTAINERENV_GAIA_CAT_DIR": "/dvs_ro/cfs/cdirs/cosmo/data/gaia/dr3/healpix",
        "APPTAINERENV_GAIA_CAT_VER": "3",
        "APPTAINERENV_GAIA_CAT_PREFIX": "healpix",
        "APPTAINERENV_GAIA_CAT_SCHEME": "nested",
    }  # fmt: skip


def test_apptainer_sif_and_unwise_list():
    """It runs a .sif image, mounts the unit's own directory, and joins unWISE directories."""
    environment = LaunchEnvironment(
        survey_dir=COSMO / "work/legacysurvey/dr11",
        unit_dir=UNIT,
        references=ReferenceCatalogues(
            unwise_coadds_dir=(
                COSMO / "data/unwise/neo11/unwise-coadds/fulldepth",
                COSMO / "data/unwise/allwise/unwise-coadds/fulldepth",
            )
        ),
        inputs=(COSMO,),
    )
    launcher = get_launcher("apptainer", "/global/common/software/lsdr/legacypipe.sif")
    launch = launcher.launch(["python", "-c", "pass"], environment)
    assert launch.argv[3:7] == (
        "--bind", "/dvs_ro/cfs/cdirs/cosmo:/dvs_ro/cfs/cdirs/cosmo:ro",
        "--bind", "/pscratch/sd/l/lsdr/dr11/tmp/tractor/1804p325:"
                  "/pscratch/sd/l/lsdr/dr11/tmp/tractor/1804p325",
    )  # fmt: skip
    assert launch.argv[-4:] == (
        "/global/common/software/lsdr/legacypipe.sif",
        "python",
        "-c",
        "pass",
    )
    assert launch.environment["APPTAINERENV_UNWISE_COADDS_DIR"] == (
        "/dvs_ro/cfs/cdirs/cosmo/data/unwise/neo11/unwise-coadds/fulldepth:"
        "/dvs_ro/cfs/cdirs/cosmo/data/unwise/allwise/unwise-coadds/fulldepth"
    )


def test_registry_names_and_protocol():
    """It knows the five launchers by name, each a Launcher of that name."""
    assert known_launchers() == ["none", "shifter", "podman-hpc", "apptainer", "docker"]
    for name in known_launchers():
        launcher = get_launcher(name, "legacysurvey/legacypipe:DR11.1.0")
        assert isinstance(launcher, Launcher)
        assert launcher.name == name
    docker = get_launcher("docker", "legacysurvey/legacypipe:DR11.1.0")
    assert isinstance(docker, DockerLauncher)
    assert docker.user == f"{os.getuid()}:{os.getgid()}"
    assert get_launcher("apptainer", "/x/l.sif") == ApptainerLauncher(PurePosixPath("/x/l.sif"))


PROBE = """
import json, os, sys
import astropy.config, matplotlib
names = {names!r}
print(json.dumps({{
    "env": {{name: os.environ.get(name) for name in names}},
    "no_user_site": sys.flags.no_user_site,
    "astropy_cache": str(astropy.config.get_cache_dir_path()),
    "astropy_config": str(astropy.config.get_config_dir_path()),
    "mplconfig": matplotlib.get_configdir(),
}}))
"""


def test_none_runs_with_the_unit_environment(tmp_path: Path):
    """It runs a real child that sees one thread, no user site, private caches, the survey."""
    unit = tmp_path / "tmp" / "zeropoints" / "c4d_160116_084245"
    environment = LaunchEnvironment(
        survey_dir=tmp_path / "survey",
        unit_dir=unit,
        references=ReferenceCatalogues(dust_dir=tmp_path / "dust"),
    )
    names = [*VARIABLES, "GALEX_DIR", "LEGACY_SURVEY_DIR"]
    host = {**os.environ, "OMP_NUM_THREADS": "16", "GALEX_DIR": "/stray/galex"}
    log = tmp_path / "logs" / "c4d" / "c4d_160116_084245.log"
    command = [sys.executable, "-c", PROBE.format(names=names)]
    result = run_launched(NoneLauncher(), command, environment, log, host_environment=host)
    assert result.exit_code == 0
    assert result.log == log
    header, report = log.read_text().splitlines()
    assert header.startswith("--- none on ")
    seen = json.loads(report)
    env = seen["env"]
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        assert env[name] == "1"
    assert env["PYTHONNOUSERSITE"] == "1"
    assert seen["no_user_site"] == 1
    assert env["GALEX_DIR"] is None
    assert env["LEGACY_SURVEY_DIR"] == str(tmp_path / "survey")
    assert env["DUST_DIR"] == str(tmp_path / "dust")
    assert seen["astropy_cache"] == str(unit / "cache" / "astropy")
    assert seen["astropy_config"] == str(unit / "config" / "astropy")
    assert seen["mplconfig"] == str(unit / "matplotlib")
    for sub in ("cache/astropy", "config/astropy", "matplotlib"):
        assert (unit / sub).is_dir()


def test_none_forwards_the_exit_code_and_appends_the_log(tmp_path: Path):
    """It returns the command's exit code (3) and appends each run's output to the log."""
    environment = LaunchEnvironment(survey_dir=tmp_path / "survey", unit_dir=tmp_path / "unit")
    log = tmp_path / "logs" / "180" / "1804p325.log"
    code = "import sys; print('out line'); print('err line', file=sys.stderr); sys.exit(3)"
    first = run_launched(NoneLauncher(), [sys.executable, "-c", code], environment, log)
    second = run_launched(NoneLauncher(), [sys.executable, "-c", code], environment, log)
    assert (first.exit_code, second.exit_code) == (3, 3)
    lines = log.read_text().splitlines()
    assert len(lines) == 6
    assert lines[0].startswith("--- none on ") and lines[0].endswith("sys.exit(3)'")
    assert sorted(lines[1:3]) == ["err line", "out line"]
    assert lines[3:] == lines[:3]


def test_missing_shifter_is_an_environment_error(tmp_path: Path):
    """It raises MissingDependencyError naming shifter, which is not installed here."""
    environment = LaunchEnvironment(survey_dir=tmp_path / "survey", unit_dir=tmp_path / "unit")
    log = tmp_path / "logs" / "180" / "1804p325.log"
    launcher = get_launcher("shifter", "legacysurvey/legacypipe:DR11.1.0")
    with pytest.raises(MissingDependencyError) as caught:
        run_launched(launcher, RUNBRICK, environment, log)
    assert caught.value.missing == "shifter"
    assert str(caught.value).startswith("shifter not found on PATH")
    assert not log.exists()
    assert not (tmp_path / "unit").exists()


def test_missing_command_is_an_environment_error(tmp_path: Path):
    """It raises MissingDependencyError naming a command the none launcher cannot find."""
    environment = LaunchEnvironment(survey_dir=tmp_path / "survey", unit_dir=tmp_path / "unit")
    with pytest.raises(MissingDependencyError, match="lsdr-no-such-program not found on PATH"):
        run_launched(NoneLauncher(), ["lsdr-no-such-program"], environment, tmp_path / "unit.log")


@pytest.mark.parametrize(
    ("reference", "says"),
    [
        ("legacysurvey/legacypipe:DR11;rm -rf ~", "contains ';'"),
        ("legacysurvey/legacypipe:DR11 1", "contains ' '"),
        ("legacysurvey/legacypipe:$(id)", "contains '$'"),
        ("legacysurvey/legacypipe:`id`", "contains '`'"),
        (":DR11.1.0", "has an empty repo"),
        ("legacysurvey/legacypipe", "has no tag"),
        ("LegacySurvey/legacypipe:DR11", "has repo 'LegacySurvey/legacypipe'"),
        ("legacysurvey/legacypipe:-x", "has tag '-x'"),
    ],
)
@pytest.mark.parametrize("launcher", ["shifter", "podman-hpc", "apptainer", "docker"])
def test_bad_image_reference(launcher: str, reference: str, says: str):
    """It refuses a bad image reference, naming it and the <repo>:<tag> form."""
    with pytest.raises(UsageError) as caught:
        get_launcher(launcher, reference)
    message = str(caught.value)
    assert f"container image {reference!r} {says}" in message
    assert "give <repo>:<tag>, as in 'legacysurvey/legacypipe:DR11.1.0'" in message


def test_empty_repo_when_made_directly():
    """It refuses an image made with an empty repository."""
    with pytest.raises(
        UsageError, match=re.escape("container image ':DR11.1.0' has an empty repo")
    ):
        ContainerImage("", "DR11.1.0")


@pytest.mark.parametrize("launcher", ["shifter", "podman-hpc", "apptainer", "docker"])
def test_container_launcher_needs_an_image(launcher: str):
    """It refuses a container launcher without an image."""
    with pytest.raises(UsageError, match=f"the {launcher} launcher needs a container image"):
        get_launcher(launcher)


def test_relative_sif_is_refused():
    """It refuses an Apptainer image file given by a relative path."""
    with pytest.raises(
        UsageError, match=re.escape("apptainer image 'legacypipe.sif' is not an absolute")
    ):
        get_launcher("apptainer", "legacypipe.sif")


def test_unknown_launcher():
    """It refuses an unknown launcher name, listing the known ones."""
    with pytest.raises(UsageError) as caught:
        get_launcher("singularity", "legacysurvey/legacypipe:DR11.1.0")
    assert str(caught.value) == (
        "unknown container launcher 'singularity': known launchers are "
        "none, shifter, podman-hpc, apptainer, docker"
    )


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"inputs": (Path("cfs/cosmo"),)}, "mount 'cfs/cosmo' is a relative path"),
        ({"outputs": (Path("dr11"),)}, "mount 'dr11' is a relative path"),
        ({"unit_dir": Path("tmp/1804p325")}, "unit directory 'tmp/1804p325' is a relative path"),
        ({"survey_dir": Path("dr11")}, "LEGACY_SURVEY_DIR 'dr11' is a relative path"),
        ({"inputs": (Path("/cfs/a:b"),)}, "mount '/cfs/a:b' contains ':'"),
    ],
)
def test_bad_paths(changes: dict[str, object], says: str):
    """It refuses a relative path or a bind-splitting character, naming the path."""
    fields: dict[str, object] = {"survey_dir": COSMO / "dr11", "unit_dir": UNIT, **changes}
    with pytest.raises(UsageError) as caught:
        LaunchEnvironment(**fields)  # type: ignore[arg-type]
    assert says in str(caught.value)
    assert "absolute" in str(caught.value) or "mount a directory above it" in str(caught.value)


def test_relative_catalogue_path():
    """It refuses a reference catalogue given by a relative path, naming its variable."""
    with pytest.raises(UsageError, match="DUST_DIR 'dust/v0_1' is a relative path"):
        ReferenceCatalogues(dust_dir=Path("dust/v0_1"))


def test_survey_dir_outside_the_mounts():
    """It refuses a container launch whose survey directory no mount shows."""
    environment = LaunchEnvironment(survey_dir=Path("/global/cfs/dr11"), unit_dir=UNIT)
    with pytest.raises(UsageError) as caught:
        PodmanHpcLauncher(IMAGE).launch(RUNBRICK, environment)
    assert str(caught.value) == (
        "LEGACY_SURVEY_DIR '/global/cfs/dr11' is under no mount of the podman-hpc launcher: "
        "add it, or a directory above it, to the inputs"
    )


def test_command_string_is_refused():
    """It refuses a command given as one shell string."""
    with pytest.raises(UsageError, match="is a string: give an argument list"):
        NoneLauncher().launch("python runbrick.py --brick 1804p325", ENVIRONMENT)


@pytest.mark.parametrize(
    ("reference", "repo", "tag"),
    [
        ("legacysurvey/legacypipe:DR11.1.0", "legacysurvey/legacypipe", "DR11.1.0"),
        ("registry.nersc.gov/desi/legacypipe:DR11", "registry.nersc.gov/desi/legacypipe", "DR11"),
        ("localhost:5000/legacypipe:dev_1", "localhost:5000/legacypipe", "dev_1"),
    ],
)
def test_image_references_accepted(reference: str, repo: str, tag: str):
    """It splits a reference, with or without a registry host and port, into repo and tag."""
    assert get_launcher("podman-hpc", reference) == PodmanHpcLauncher(ContainerImage(repo, tag))


def test_deadline_signals_the_command_and_says_it_timed_out(tmp_path: Path):
    """A command past its deadline gets the signal (here SIGUSR1, caught), then ends itself."""
    environment = LaunchEnvironment(survey_dir=tmp_path, unit_dir=tmp_path / "unit")
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGUSR1, lambda *a: (print('got SIGUSR1', flush=True), "
        "sys.exit(0)))\n"
        "print('Running stage fitblobs', flush=True)\n"
        "time.sleep(60)\n"
    )
    log = tmp_path / "unit.log"
    deadline = Deadline(0.5, signal.SIGUSR1, grace=30, after="Running stage fitblobs")
    result = run_launched(
        NoneLauncher(), [sys.executable, "-c", code], environment, log, deadline=deadline
    )
    assert result.timed_out and result.exit_code == 0
    assert "got SIGUSR1" in log.read_text()


def test_deadline_waits_for_its_marker(tmp_path: Path):
    """Before the marker appears the clock does not run: a quick command is never signalled."""
    environment = LaunchEnvironment(survey_dir=tmp_path, unit_dir=tmp_path / "unit")
    code = "import time; time.sleep(1.0); print('done', flush=True)"
    deadline = Deadline(0.1, signal.SIGKILL, grace=5, after="never printed")
    result = run_launched(
        NoneLauncher(),
        [sys.executable, "-c", code],
        environment,
        tmp_path / "u.log",
        deadline=deadline,
    )
    assert not result.timed_out and result.exit_code == 0


def test_memory_limit_is_the_commands_own(tmp_path: Path):
    """``memory_limit_mb``: allocating past it raises MemoryError in the command itself."""
    environment = LaunchEnvironment(survey_dir=tmp_path, unit_dir=tmp_path / "unit")
    code = (
        "import sys\ntry:\n    b = bytearray(2 * 1024**3)\nexcept MemoryError:\n    sys.exit(7)\n"
    )
    log = tmp_path / "m.log"
    limited = run_launched(
        NoneLauncher(), [sys.executable, "-c", code], environment, log, memory_limit_mb=500
    )
    assert limited.exit_code == 7
    free = run_launched(NoneLauncher(), [sys.executable, "-c", "print(1)"], environment, log)
    assert free.exit_code == 0
