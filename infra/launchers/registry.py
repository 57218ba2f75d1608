"""Container launchers by name: ``none``, ``shifter``, ``podman-hpc``, ``apptainer``, ``docker``.

A worker's settings name its launcher and image; :func:`get_launcher` checks both before any
unit runs, so a typo fails the run at its start with one line naming the value and the fix.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from lsdr.infra.launchers.apptainer import ApptainerLauncher
from lsdr.infra.launchers.base import Launcher
from lsdr.infra.launchers.docker import DockerLauncher
from lsdr.infra.launchers.image import EXAMPLE_IMAGE, parse_image, parse_sif
from lsdr.infra.launchers.none import NoneLauncher
from lsdr.infra.launchers.podman_hpc import PodmanHpcLauncher
from lsdr.infra.launchers.shifter import ShifterLauncher
from lsdr.survey.core.errors import UsageError

DEFAULT_LAUNCHER = "none"
"""The launcher where there is no container: the command runs here."""


def _image(name: str, image: str) -> str:
    """``image`` if given; a container launcher without one is a :class:`UsageError`."""
    if not image:
        raise UsageError(
            f"the {name} launcher needs a container image: give <repo>:<tag>, "
            f"as in {EXAMPLE_IMAGE!r}"
        )
    return image


def _apptainer(image: str) -> ApptainerLauncher:
    """Apptainer of a ``.sif`` file (an absolute path) or of a registry image."""
    reference = _image("apptainer", image)
    if reference.startswith("/") or reference.endswith(".sif"):
        return ApptainerLauncher(parse_sif(reference))
    return ApptainerLauncher(parse_image(reference))


def _docker(image: str) -> DockerLauncher:
    """Docker, as this process's user so the release's files stay the user's."""
    return DockerLauncher(parse_image(_image("docker", image)), user=f"{os.getuid()}:{os.getgid()}")


LAUNCHERS: dict[str, Callable[[str], Launcher]] = {
    "none": lambda _image_unused: NoneLauncher(),
    "shifter": lambda image: ShifterLauncher(parse_image(_image("shifter", image))),
    "podman-hpc": lambda image: PodmanHpcLauncher(parse_image(_image("podman-hpc", image))),
    "apptainer": _apptainer,
    "docker": _docker,
}
"""The known launchers, each by its name with what makes it from an image reference."""


def known_launchers() -> list[str]:
    """The launcher names :func:`get_launcher` accepts."""
    return list(LAUNCHERS)


def get_launcher(name: str, image: str = "") -> Launcher:
    """The launcher called ``name`` for ``image`` (ignored by ``none``); bad values: UsageError."""
    if name not in LAUNCHERS:
        raise UsageError(
            f"unknown container launcher {name!r}: known launchers are "
            f"{', '.join(known_launchers())}"
        )
    return LAUNCHERS[name](image)
