"""The tail-like console monitor: one line per event from a ZeroMQ endpoint or an MQTT broker."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import TextIO

from serd import client
from serd.bar import LABEL_WIDTH, confidence_bar
from serd.errors import ConfigError
from serd.events import EmotionChanged, EmotionState, Event, EventFormatError, SpeechEnded, SpeechStarted, Status
from serd.events import from_dict
from serd.publish.stdout_pub import silence_broken_stream

log = logging.getLogger(__name__)

POLL_MS = 200
QUIET_NOTICE_S = 5.0  # after this long without an event, say that none has arrived
TYPE_WIDTH = 15
DEFAULT_MQTT_PREFIX = client.DEFAULT_MQTT_PREFIX


def clock(wall_time_s: float) -> str:
    """Local time as HH:MM:SS.mmm."""
    millis = int(wall_time_s * 1000) % 1000
    return "%s.%03d" % (time.strftime("%H:%M:%S", time.localtime(wall_time_s)), millis)


def describe(event: Event) -> str:
    """The type-specific part of a monitor line."""
    if isinstance(event, (EmotionChanged, EmotionState)):
        text = "%-*s %4.2f %s" % (LABEL_WIDTH, event.label, event.confidence, confidence_bar(event.confidence))
        if event.arousal is not None and event.valence is not None:
            text += "  arousal %+.2f valence %+.2f" % (event.arousal, event.valence)
        if isinstance(event, EmotionChanged):
            text += " (was %s)" % event.previous
        return text
    if isinstance(event, SpeechStarted):
        return "segment %s" % event.segment
    if isinstance(event, SpeechEnded):
        return "segment %s  %.2f s" % (event.segment, event.duration_s)
    if isinstance(event, Status):
        return _describe_status(event)
    return ""


def _describe_status(event: Status) -> str:
    """State and counters of a status event."""
    dropped = " ".join("%s=%d" % item for item in sorted(event.dropped.items())) or "none"
    text = "%s  audio %.1f s  overruns %d  lost %d samples  dropped %s" % (
        event.state, event.audio_s, event.overruns, event.lost_samples, dropped)
    return text + ("  (%s)" % event.message if event.message else "")


def format_line(event: Event) -> str:
    """One monitor line: local time, device, event type, details."""
    line = "%s  %s  %-*s %s" % (clock(event.wall_time_s), event.device, TYPE_WIDTH, event.type, describe(event))
    return line.rstrip()


class Printer:
    """Turns raw payloads into lines on `out`; bad or foreign payloads become one-line warnings."""

    def __init__(self, out: TextIO, as_json: bool, stop: threading.Event) -> None:
        self.as_json = as_json
        self._out = out
        self._stop = stop
        self._lock = threading.Lock()
        self.events = 0  # events printed so far

    def payload(self, source: str, data: bytes) -> None:
        """Print one event payload (JSON bytes), or warn and skip it."""
        try:
            text = data.decode("utf-8")
            event = from_dict(json.loads(text))
            line = text if self.as_json else format_line(event)
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("skipped a message on %s: %s", source, _reason(exc))
            return
        self.events += 1
        self.line(line)

    def line(self, text: str) -> None:
        """Write one line and flush; a closed output (e.g. `| head`) stops the monitor."""
        with self._lock:
            try:
                self._out.write(text + "\n")
                self._out.flush()
            except (BrokenPipeError, ValueError):
                silence_broken_stream(self._out)
                self._stop.set()


def _reason(exc: Exception) -> str:
    """A short reason for a skipped message."""
    if isinstance(exc, EventFormatError):
        return str(exc)
    if isinstance(exc, (UnicodeDecodeError, json.JSONDecodeError)):
        return "not JSON text"
    return "malformed event (%s)" % exc


def run_monitor(zmq_endpoint: str | None, mqtt_host: str | None, mqtt_port: int, as_json: bool,
                out: TextIO, stop: threading.Event, mqtt_prefix: str = DEFAULT_MQTT_PREFIX,
                notices: TextIO | None = None, quiet_notice_s: float = QUIET_NOTICE_S) -> int:
    """Print events until `stop` is set (MQTT when mqtt_host is given, else ZeroMQ); returns 0.

    notices (the console's stderr) hears where the monitor waits and, once, that no event came
    within quiet_notice_s. A host name that does not resolve is a ConfigError, not a silent wait."""
    if mqtt_host:
        url = "%s[%s]:%d" % (client.MQTT_SCHEME, mqtt_host, mqtt_port) if ":" in mqtt_host else "%s%s:%d" % (
            client.MQTT_SCHEME, mqtt_host, mqtt_port)
    elif zmq_endpoint:
        url = zmq_endpoint
    else:
        raise ConfigError("monitor: give a ZeroMQ endpoint or an MQTT host")
    try:
        transport = client.open_transport(url, mqtt_prefix)
    except ConfigError as exc:
        raise ConfigError("monitor: %s" % exc) from None
    printer = Printer(out, as_json, stop)
    patience = Patience(notices, transport.where, quiet_notice_s)
    try:
        while not stop.is_set():
            item = transport.get(POLL_MS / 1000)
            if isinstance(item, client.Message):
                printer.payload(item.source, item.payload)
            elif isinstance(item, client.Availability) and not as_json:  # not an event: not shown with --json
                printer.line("%s  %s  %-*s %s" % (clock(time.time()), item.device, TYPE_WIDTH, "available", item.state))
            patience.check(printer)
    finally:
        transport.close()
    return 0


class Patience:
    """Tells the console where the monitor waits, and once that nothing has arrived after quiet_s."""

    def __init__(self, notices: TextIO | None, where: str, quiet_s: float) -> None:
        self._notices = notices
        self._where = where
        self._quiet_s = quiet_s
        self._deadline_s = time.monotonic() + quiet_s
        self._said_quiet = False
        self._say("serd monitor: waiting for events on %s (Ctrl-C to stop)" % where)

    def check(self, printer: Printer) -> None:
        """Call while waiting: after quiet_s without an event, say so (once)."""
        if self._said_quiet or printer.events or time.monotonic() < self._deadline_s:
            return
        self._said_quiet = True
        self._say("serd monitor: no events yet after %.0f s on %s; is `serd run` publishing there?" % (self._quiet_s, self._where))

    def _say(self, text: str) -> None:
        """One line on the notices stream, if there is one."""
        if self._notices is not None:
            self._notices.write(text + "\n")
            self._notices.flush()
