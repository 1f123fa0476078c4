"""The live overview: /api/status on request and pushed as server-sent events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from online.web.deps import LiveDep
from online.web.models import Status

PUSH_INTERVAL_S = 0.5
"""Seconds between two ``status`` events of /api/events."""

router = APIRouter()


@router.get("/api/status", response_model=Status, tags=["monitoring"])
def status(live: LiveDep) -> Status:
    """The live overview (refreshed every second from run control and the builder)."""
    return live.latest


@router.get("/api/events", tags=["monitoring"], response_class=StreamingResponse)
async def events(request: Request, live: LiveDep) -> StreamingResponse:
    """Server-sent events: a ``status`` event (the /api/status document) twice a second."""

    async def stream() -> AsyncIterator[str]:
        while not await request.is_disconnected():
            yield f"event: status\ndata: {live.latest.model_dump_json()}\n\n"
            await asyncio.sleep(PUSH_INTERVAL_S)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
