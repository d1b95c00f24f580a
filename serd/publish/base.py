"""The publisher interface, the wire encoding and drop accounting shared by every publisher."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Protocol, runtime_checkable

from serd.events import Event

log = logging.getLogger(__name__)

DROP_LOG_INTERVAL_S = 60.0


@runtime_checkable
class Publisher(Protocol):
    """Sends events somewhere; never blocks and never raises for transport trouble."""

    name: str

    @property
    def dropped(self) -> int:
        """Events lost so far (queue full, transport down, output closed)."""

    def publish(self, event: Event) -> None:
        """Hand one event to the transport, or count it as dropped."""

    def close(self, timeout_s: float = 2.0) -> None:
        """Flush what can be flushed within timeout_s, then release the transport."""


_last_encoded: tuple[Event | None, str] = (None, "")  # the event most recently encoded, and its text


def event_json(event: Event) -> str:
    """The JSON text of an event, as every transport carries it; ValueError for a non-finite number (not JSON),
    which the publishers count as a dropped event. Events are immutable and the fan-out hands the same one to
    every publisher in turn, so the text of the latest event is kept and encoded once."""
    global _last_encoded
    last, text = _last_encoded
    if last is not event:
        text = json.dumps(event.to_dict(), allow_nan=False)
        _last_encoded = (event, text)
    return text


class DropCounter:
    """Counts dropped events and logs at most once per interval per cause."""

    def __init__(self, publisher_name: str, log_interval_s: float = DROP_LOG_INTERVAL_S) -> None:
        self._publisher_name = publisher_name
        self._log_interval_s = log_interval_s
        self._lock = threading.Lock()
        self._count = 0
        self._last_logged_s: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    @property
    def count(self) -> int:
        """Drops so far."""
        return self._count

    def drop(self, cause: str, events: int = 1) -> None:
        """Count events lost for one cause; log it unless this cause was logged recently."""
        with self._lock:
            self._count += events
            self._unlogged[cause] = self._unlogged.get(cause, 0) + events
            if not self._due(cause):
                return
            lost = self._unlogged.pop(cause)
        log.warning("%s: dropped %d event(s): %s (total %d)", self._publisher_name, lost, cause, self._count)

    def note(self, cause: str) -> None:
        """Log transport trouble that loses nothing yet, at most once per interval."""
        with self._lock:
            due = self._due(cause)
        if due:
            log.warning("%s: %s", self._publisher_name, cause)

    def _due(self, cause: str) -> bool:
        """True (and remember now) when this cause was not logged within the interval; lock held."""
        now_s = time.monotonic()
        last_s = self._last_logged_s.get(cause)
        if last_s is not None and now_s - last_s < self._log_interval_s:
            return False
        self._last_logged_s[cause] = now_s
        return True
