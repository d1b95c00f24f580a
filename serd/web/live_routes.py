"""The live view's routes: the /live page, GET /api/state and GET /api/events (Server-Sent Events)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from aiohttp import web

from serd.web.live import CLOSED, LiveFeed

STATIC_DIR = Path(__file__).resolve().parent / "static"
RETRY_MS = 2000  # how long an EventSource waits before it reconnects
KEEPALIVE_S = 15.0  # a comment line this often (live.KEEPALIVE_FRAME) keeps a quiet stream open
FEED = web.AppKey("feed", LiveFeed)
KEEPALIVE = web.AppKey("keepalive_s", float)
SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def add_live_routes(app: web.Application, feed: LiveFeed, keepalive_s: float = KEEPALIVE_S) -> None:
    """The live routes on app, fed by feed; at shutdown every events stream ends."""
    app[FEED] = feed
    app[KEEPALIVE] = keepalive_s
    app.router.add_get("/live", live_page)
    app.router.add_get("/api/state", state)
    app.router.add_get("/api/events", events)
    app.on_startup.append(_attach)
    app.on_shutdown.append(_close_streams)


async def _attach(app: web.Application) -> None:
    """Events offered from other threads go to this loop, which also sends the keep-alives."""
    app[FEED].attach(asyncio.get_running_loop(), app[KEEPALIVE])


async def _close_streams(app: web.Application) -> None:
    """End every SSE stream, so that shutting down does not wait for them."""
    app[FEED].close_clients()


async def live_page(request: web.Request) -> web.FileResponse:
    """The live page."""
    return web.FileResponse(STATIC_DIR / "live.html")


async def state(request: web.Request) -> web.Response:
    """The current emotion, speech on/off, the last status and the last minutes' emotion and speech events."""
    return web.json_response(request.app[FEED].state.to_dict())


async def events(request: web.Request) -> web.StreamResponse:
    """Every event as it arrives, one JSON object per SSE message; a retry field, then keep-alive comments."""
    feed = request.app[FEED]
    response = web.StreamResponse(headers=SSE_HEADERS)
    await response.prepare(request)
    await response.write(b"retry: %d\n: serd events\n\n" % RETRY_MS)
    with feed.subscription() as queue, contextlib.suppress(ConnectionResetError):  # the client went: its stream ends
        while (frame := await queue.get()) is not CLOSED:
            await response.write(frame)
    return response
