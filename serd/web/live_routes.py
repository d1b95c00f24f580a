"""The live view's routes: the /live page, GET /api/state and GET /api/events (Server-Sent Events)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from aiohttp import web

from serd.web.live import CLOSED, LiveFeed

STATIC_DIR = Path(__file__).resolve().parent / "static"
RETRY_MS = 2000  # how long an EventSource waits before it reconnects
KEEPALIVE_S = 15.0  # a comment line this often keeps proxies and idle timeouts from closing a quiet stream
FEED = web.AppKey("feed", LiveFeed)
KEEPALIVE = web.AppKey("keepalive_s", float)
SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
KEEPALIVE_FRAME = b": keep-alive\n\n"


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
    """Events offered from other threads go to this loop."""
    app[FEED].attach(asyncio.get_running_loop())


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
    feed, keepalive_s = request.app[FEED], request.app[KEEPALIVE]
    response = web.StreamResponse(headers=SSE_HEADERS)
    await response.prepare(request)
    await response.write(b"retry: %d\n: serd events\n\n" % RETRY_MS)
    with feed.subscription() as queue, contextlib.suppress(ConnectionResetError):  # the client went: its stream ends
        while (frame := await _next_frame(queue, keepalive_s)) is not CLOSED:
            await response.write(frame)
    return response


async def _next_frame(queue: asyncio.Queue, keepalive_s: float) -> bytes | None:
    """The next queued frame, a keep-alive comment after keepalive_s without one, or CLOSED."""
    try:
        return await asyncio.wait_for(queue.get(), keepalive_s)
    except asyncio.TimeoutError:
        return KEEPALIVE_FRAME
