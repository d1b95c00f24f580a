"""The live view fed from a daemon's ZeroMQ endpoint: a SUB socket in the server's event loop (ZeroMQ reconnects by itself)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from serd.errors import ConfigError
from serd.events import EventFormatError
from serd.web.live import LiveFeed

log = logging.getLogger("serd.web")

FRAMES = 2  # [topic, JSON], as serd's ZeroMQ publisher sends them
LINK_EVENTS = zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED


class ZmqFollower:
    """Subscribes to every event on an endpoint and hands them to the live feed; says when the daemon comes and goes."""

    def __init__(self, endpoint: str, feed: LiveFeed) -> None:
        self.endpoint = endpoint
        self._feed = feed
        self._context: zmq.asyncio.Context | None = None
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        """In the loop: connect (a malformed endpoint is a one-line ConfigError) and start reading."""
        context = zmq.asyncio.Context()
        sock = context.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        link = sock.get_monitor_socket(LINK_EVENTS)
        try:
            sock.connect(self.endpoint)
        except zmq.ZMQError as exc:
            link.close(linger=0)
            sock.close(linger=0)
            context.term()
            raise ConfigError("--events %s: cannot connect: %s" % (self.endpoint, exc)) from None
        self._context = context
        self._feed.set_connected(False)
        self._tasks = [asyncio.create_task(self._read(sock)), asyncio.create_task(self._watch(link))]
        log.info("web: following events on %s", self.endpoint)

    async def _read(self, sock: zmq.asyncio.Socket) -> None:
        """Hand every message to the feed; skip (with a warning) what is not a serd event."""
        try:
            while True:
                self._message(await sock.recv_multipart())
        finally:
            sock.close(linger=0)

    def _message(self, frames: list[bytes]) -> None:
        """Check the [topic, JSON] shape and the event, then deliver it."""
        if len(frames) != FRAMES:
            log.warning("web: skipped a message on %s: %d frames, expected [topic, json]", self.endpoint, len(frames))
            return
        try:
            self._feed.offer_wire(json.loads(frames[1].decode("utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError):
            log.warning("web: skipped a message on %s: not JSON text", self.endpoint)
        except EventFormatError as exc:
            log.warning("web: skipped a message on %s: %s", self.endpoint, exc)
        except (TypeError, ValueError, KeyError) as exc:
            log.warning("web: skipped a message on %s: malformed event (%s)", self.endpoint, exc)

    async def _watch(self, link: zmq.asyncio.Socket) -> None:
        """Follow the socket's connects and disconnects (a daemon starting, stopping, restarting)."""
        try:
            while True:
                event = parse_monitor_message(await link.recv_multipart())["event"]
                connected = event == zmq.EVENT_CONNECTED
                log.info("web: %s %s", "connected to" if connected else "lost", self.endpoint)
                self._feed.set_connected(connected)
        finally:
            link.close(linger=0)

    async def stop(self) -> None:
        """Stop reading and close the sockets."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._context is not None:
            self._context.term()
            self._context = None
