"""Point this process (and the Dask workers it starts) at the release's Prefect server.

Order: an explicit ``prefect_api_url`` setting, else an inherited ``PREFECT_API_URL``, else the
release's own server, started if it is not running (``lsdr server up`` does the same).  Never
an ephemeral server: each would cost ~8 s and lose the runs when the process ends.
"""

from __future__ import annotations

import os

from lsdr.infra.settings import Settings
from lsdr.survey.core.layout import ReleaseLayout


def connect_prefect(settings: Settings) -> str:
    """Set ``PREFECT_API_URL`` (and friends) in this process's environment; return the URL.

    Must run before Prefect reads its settings; Dask workers started afterwards inherit it.
    """
    if settings.prefect_api_url:
        url = settings.prefect_api_url
        os.environ["PREFECT_API_URL"] = url
    elif os.environ.get("PREFECT_API_URL"):
        url = os.environ["PREFECT_API_URL"]
    else:
        from lsdr.infra.prefect_server import client_environment, start_server

        info = start_server(ReleaseLayout(settings.release_dir).state_dir)
        os.environ.update(client_environment(info))
        url = info.url
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The client's own telemetry: offline, it only prints a first-run notice on a terminal.
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_ENABLED", "false")
    return url
