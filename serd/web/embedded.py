"""serd web inside serd run ([web] listen): the same application in a thread of its own, fed the daemon's events in process."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading

from serd.config import Config
from serd.errors import SerdError
from serd.events import Event
from serd.web.access import parse_listen, required_token
from serd.web.main import require_extra

log = logging.getLogger("serd.web")

IN_PROCESS_FEED = "in process (serd run)"
START_TIMEOUT_S = 60.0  # loading the analysis model and binding
STOP_TIMEOUT_S = 8.0  # above the server's shutdown timeout


class EmbeddedWeb:
    """The web server's event loop in a daemon thread; offer() hands it events from any thread without blocking."""

    def __init__(self, config: Config, keepalive_s: float | None = None) -> None:
        require_extra()
        from serd.web.live import LiveFeed  # the framework-free parts; the framework itself loads in the thread's start

        self._config = config
        self._keepalive_s = keepalive_s
        self.address = parse_listen(config.web.listen)
        self._token = required_token(self.address, config.web.token_file)
        self.feed = LiveFeed(IN_PROCESS_FEED)
        self.feed.state.connected = True
        self.url = ""
        self._started: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="serd-web", daemon=True)

    def start(self) -> str:
        """Load the analysis model, bind and serve; the URL. SerdError (one line) when it cannot."""
        self._thread.start()
        try:
            port = self._started.result(timeout=START_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            raise SerdError("the server did not start within %.0f s" % START_TIMEOUT_S) from None
        self.url = self.address.url(port)
        note = " (the API needs the bearer token of [web] token_file)" if self._token is not None else ""
        log.info("web: serving on %s%s", self.url, note)
        return self.url

    def offer(self, event: Event) -> None:
        """One of the daemon's events, for the live view."""
        self.feed.offer(event)

    def stop(self) -> None:
        """End the event streams, close the server, wait for the thread (bounded)."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stopping.set)
        self._thread.join(STOP_TIMEOUT_S)
        if self._thread.is_alive():
            log.warning("web: the server did not stop within %.0f s", STOP_TIMEOUT_S)

    def _run(self) -> None:
        """The thread: an event loop of its own until stop()."""
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # noqa: BLE001 - handed to start(), which raises it in the daemon's thread
            if not self._started.done():
                self._started.set_exception(exc)
            else:
                log.error("web: the server failed: %s", exc)
        finally:
            loop.close()

    async def _serve(self) -> None:
        """Build the application, bind, say the port, serve until asked to stop."""
        from serd.web.app import make_app
        from serd.web.live_routes import KEEPALIVE_S
        from serd.web.server import start_site
        from serd.web.service import Analyzer

        self._stopping = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        analyzer = Analyzer(self._config, None)
        app = make_app(analyzer, self._token, self.feed, self._keepalive_s or KEEPALIVE_S)
        runner, port = await start_site(app, self.address)
        self._started.set_result(port)
        try:
            await self._stopping.wait()
        finally:
            await runner.cleanup()
