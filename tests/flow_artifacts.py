"""The artifacts a flow run left on the session's Prefect server (read through its API)."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID


def flow_run_artifacts(flow_run_id: UUID | None) -> list[Any]:
    """Every artifact of one flow run, as the Prefect client returns them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                )
            )

    return asyncio.run(read())
