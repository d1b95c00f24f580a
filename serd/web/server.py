"""Running the application on a TCP address until a signal, and saying where on stderr."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import TextIO

from aiohttp import web

from serd.errors import SerdError
from serd.web.access import ListenAddress
from serd.web.app import make_app
from serd.web.live import LiveFeed
from serd.web.service import Analyzer
from serd.web.zmqfeed import ZmqFollower

EXIT_STOPPED, EXIT_INTERRUPTED = 0, 2
SHUTDOWN_TIMEOUT_S = 5.0


def serve(analyzer: Analyzer, token: str | None, address: ListenAddress, notices: TextIO, events_endpoint: str) -> int:
    """Serve, with the live view following the daemon at events_endpoint, until SIGTERM (exit 0) or SIGINT (exit 2)."""
    note = " (the API needs the bearer token of [web] token_file)" if token is not None else ""
    app = make_app(analyzer, token, LiveFeed(events_endpoint))
    app.cleanup_ctx.append(lambda app: _follow(app, events_endpoint))
    return asyncio.run(_serve(app, address, note, notices))


async def _follow(app: web.Application, endpoint: str):
    """While the server runs, a ZeroMQ subscriber feeds its live view."""
    from serd.web.live_routes import FEED

    follower = ZmqFollower(endpoint, app[FEED])
    follower.start()
    yield
    await follower.stop()


async def start_site(app: web.Application, address: ListenAddress) -> tuple[web.AppRunner, int]:
    """Set the application up and bind it; the runner and the port it took. SerdError (one line) when it cannot bind."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        await web.TCPSite(runner, address.host, address.port).start()
    except OSError as exc:
        await runner.cleanup()
        reason = os.strerror(exc.errno) if exc.errno else exc  # asyncio's strerror repeats the address
        raise SerdError("cannot listen on %s:%d: %s" % (address.host, address.port, reason)) from None
    return runner, runner.addresses[0][1]


async def _serve(app: web.Application, address: ListenAddress, note: str, notices: TextIO) -> int:
    """Bind, announce the URL, wait for a signal, close."""
    runner, port = await start_site(app, address)
    notices.write("serd web: %s%s\n" % (address.url(port), note))
    notices.flush()
    received = await _signal_received()
    await runner.cleanup()
    return EXIT_INTERRUPTED if received == signal.SIGINT else EXIT_STOPPED


async def _signal_received() -> int:
    """Wait for SIGINT or SIGTERM; return which came."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[int] = loop.create_future()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, lambda s=signum: received.done() or received.set_result(s))
    try:
        return await received
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
