"""The live view's model: the daemon's current state and a queue per Server-Sent Events client. No framework imports."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from serd.events import EmotionChanged, EmotionState, Event, SILENCE_LABEL, SpeechEnded, SpeechStarted, Status, from_dict
from serd.publish.base import event_json

log = logging.getLogger("serd.web")

RECENT_S = 300.0  # emotion and speech events /api/state repeats, so that a page opened now draws the last minutes
RECENT_EVENTS_MAX = 2000  # and at most this many (an emotion-state every 2 s of speech makes 150 in 5 min)
CLIENT_QUEUE_EVENTS = 256  # events waiting for one slow SSE client; beyond them it misses events, the others do not
PENDING_EVENTS_MAX = 1024  # events offered but not yet taken by the server's loop; beyond them the live view skips them
RECENT_TYPES = (SpeechStarted.TYPE, SpeechEnded.TYPE, EmotionChanged.TYPE, EmotionState.TYPE)
CLOSED = None  # what a client's queue holds when the server is shutting down
FEED_EVENT = "feed"  # the SSE event name of the feed's connection news (plain `message` events are serd's events)
KEEPALIVE_FRAME = b": keep-alive\n\n"  # an SSE comment: keeps proxies and idle timeouts from closing a quiet stream


def sse_frame(data: str, event_name: str | None = None) -> bytes:
    """One Server-Sent Events message: an optional event name, then the data line (JSON holds no newline)."""
    head = "event: %s\n" % event_name if event_name else ""
    return ("%sdata: %s\n\n" % (head, data)).encode("utf-8")


class LiveState:
    """What GET /api/state says: the current emotion, speech on/off, the last status, and the last minutes."""

    def __init__(self, feed: str, recent_s: float = RECENT_S) -> None:
        self.feed = feed
        self.connected: bool | None = None  # whether the feed's transport is connected (None: it does not tell)
        self.emotion: dict[str, Any] | None = None
        self.speech = False
        self.segment: int | None = None
        self.status: dict[str, Any] | None = None
        self.events_received = 0
        self._recent_s = recent_s
        self._recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECENT_EVENTS_MAX)

    def apply(self, event: Event, wire: dict[str, Any]) -> None:
        """Take one event (typed, and its wire dict as clients get it) into the state."""
        self.events_received += 1
        if isinstance(event, (EmotionChanged, EmotionState)):
            self.emotion = wire
            self.speech = event.label != SILENCE_LABEL
        elif isinstance(event, SpeechStarted):
            self.speech, self.segment = True, event.segment
        elif isinstance(event, SpeechEnded):
            self.speech = False
        elif isinstance(event, Status):
            self.status = wire
            if event.state in ("starting", "stopping"):  # a daemon (re)starting or going has no open speech
                self.speech = False
        if event.type in RECENT_TYPES:
            self._recent.append(wire)
        self._forget(event.wall_time_s - self._recent_s)

    def _forget(self, before_wall_s: float) -> None:
        """Drop recent events older than before_wall_s."""
        while self._recent and self._recent[0]["wall_time_s"] < before_wall_s:
            self._recent.popleft()

    def to_dict(self) -> dict[str, Any]:
        """The JSON answer of GET /api/state (recent: by the server's clock, also when no event came for a while)."""
        now_s = time.time()
        self._forget(now_s - self._recent_s)
        emotion = self.emotion or {}
        return {"feed": self.feed, "connected": self.connected, "label": emotion.get("label"), "confidence": emotion.get("confidence"),
                "emotion": self.emotion, "speech": self.speech, "segment": self.segment if self.speech else None,
                "status": self.status, "events_received": self.events_received, "recent_s": self._recent_s,
                "recent": list(self._recent), "server_time_s": round(now_s, 3)}


class LiveFeed:
    """Events in (from any thread), the state and every SSE client's queue out (in the server's event loop)."""

    def __init__(self, feed: str) -> None:
        self.state = LiveState(feed)
        self.skipped = 0  # events the live view did not take: not JSON, or the server's loop fell PENDING_EVENTS_MAX behind
        self._clients: set[asyncio.Queue] = set()
        self._lagging: set[asyncio.Queue] = set()  # clients whose queue was full at the last event
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._pending: list[tuple[Event, dict[str, Any], str]] = []  # offered from another thread, not yet delivered
        self._keepalive: asyncio.TimerHandle | None = None

    def attach(self, loop: asyncio.AbstractEventLoop, keepalive_s: float | None = None) -> None:
        """The loop the server runs in (call it there); events offered before it are dropped (no client can be
        waiting). With keepalive_s, every client gets a keep-alive comment that often."""
        with self._lock:
            self._loop = loop
        if keepalive_s:
            self._keepalive = loop.call_later(keepalive_s, self._send_keepalive, keepalive_s)

    def offer(self, event: Event) -> None:
        """A typed event from any thread (the daemon's, in process); never blocks. The text is the one every
        publisher sends; events offered together wake the server's loop once."""
        try:
            text = event_json(event)
        except ValueError:
            self.skipped += 1
            return
        with self._lock:
            loop = self._loop
            if loop is None or loop.is_closed():
                return
            if len(self._pending) >= PENDING_EVENTS_MAX:
                self.skipped += 1
                return
            self._pending.append((event, event.to_dict(), text))
            wake = len(self._pending) == 1
        if wake:
            with contextlib.suppress(RuntimeError):  # the loop closed in between: the server is gone
                loop.call_soon_threadsafe(self._deliver_pending)

    def _deliver_pending(self) -> None:
        """In the loop: every event offered since the last wake-up, in order."""
        with self._lock:
            pending, self._pending = self._pending, []
        for event, wire, text in pending:
            self.deliver(event, wire, text)

    def offer_wire(self, data: Any) -> None:
        """A wire dict received in the loop's thread (the ZeroMQ feed); EventFormatError if it is no serd event."""
        self.deliver(from_dict(data), data)

    def deliver(self, event: Event, wire: dict[str, Any], text: str | None = None) -> None:
        """In the loop: update the state and queue the event's JSON (text, when already encoded) for every client."""
        self.state.apply(event, wire)
        self._broadcast(sse_frame(text if text is not None else json.dumps(wire, allow_nan=False)), event.type)

    def set_connected(self, connected: bool) -> None:
        """In the loop: the feed's transport connected or lost its peer; clients hear it as a `feed` event."""
        self.state.connected = connected
        news = {"feed": self.state.feed, "connected": connected}
        self._broadcast(sse_frame(json.dumps(news), FEED_EVENT), FEED_EVENT)

    def _broadcast(self, frame: bytes, what: str) -> None:
        """Queue one SSE frame for every client; a client whose queue is full misses it."""
        for queue in self._clients:
            if queue.full():
                if queue not in self._lagging:  # once per spell, not once per event
                    self._lagging.add(queue)
                    log.warning("web: an events client reads too slowly: it misses events (from a %s) until it catches up", what)
                continue
            self._lagging.discard(queue)
            queue.put_nowait(frame)

    @contextlib.contextmanager
    def subscription(self) -> Iterator[asyncio.Queue]:
        """In the loop: a queue of SSE frames for one client while the block runs."""
        queue: asyncio.Queue = asyncio.Queue(CLIENT_QUEUE_EVENTS)
        self._clients.add(queue)
        try:
            yield queue
        finally:
            self._clients.discard(queue)
            self._lagging.discard(queue)

    @property
    def clients(self) -> int:
        """SSE clients connected now."""
        return len(self._clients)

    def _send_keepalive(self, interval_s: float) -> None:
        """In the loop: a keep-alive comment to every client with room for it, then again in interval_s."""
        for queue in self._clients:
            if not queue.full():
                queue.put_nowait(KEEPALIVE_FRAME)
        self._keepalive = asyncio.get_running_loop().call_later(interval_s, self._send_keepalive, interval_s)

    def close_clients(self) -> None:
        """In the loop, at shutdown: stop the keep-alives and tell every SSE client's handler to end its stream."""
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        for queue in self._clients:
            if queue.full():  # make room for the sentinel: the client is going anyway
                queue.get_nowait()
            queue.put_nowait(CLOSED)
