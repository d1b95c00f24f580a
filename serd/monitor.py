"""The tail-like console monitor: one line per event from a ZeroMQ endpoint or an MQTT broker."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid
from typing import Any, TextIO

import paho.mqtt.client as mqtt
import zmq
from paho.mqtt.enums import CallbackAPIVersion

from serd.bar import LABEL_WIDTH, confidence_bar
from serd.errors import ConfigError
from serd.events import EmotionChanged, EmotionState, Event, EventFormatError, SpeechEnded, SpeechStarted, Status
from serd.events import from_dict
from serd.publish.stdout_pub import silence_broken_stream

log = logging.getLogger(__name__)

POLL_MS = 200
QUIET_NOTICE_S = 5.0  # after this long without an event, say that none has arrived
TCP_SCHEME = "tcp://"
TYPE_WIDTH = 15
MQTT_RECONNECT_MIN_S = 1
MQTT_RECONNECT_MAX_S = 5
MQTT_KEEPALIVE_S = 30
DEFAULT_MQTT_PREFIX = "serd"
CLIENT_ID_SUFFIX_CHARS = 8


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
    printer = Printer(out, as_json, stop)
    if mqtt_host:
        resolve_host(mqtt_host, mqtt_port, "MQTT broker %s:%d" % (mqtt_host, mqtt_port))
        where = "MQTT broker %s:%d (topics %s/+/...)" % (mqtt_host, mqtt_port, mqtt_prefix.strip("/"))
        patience = Patience(notices, where, quiet_notice_s)
        _run_mqtt(mqtt_host, mqtt_port, mqtt_prefix, printer, stop, patience)
    elif zmq_endpoint:
        check_zmq_host(zmq_endpoint)
        _run_zmq(zmq_endpoint, printer, stop, Patience(notices, zmq_endpoint, quiet_notice_s))
    else:
        raise ConfigError("monitor: give a ZeroMQ endpoint or an MQTT host")
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


def check_zmq_host(endpoint: str) -> None:
    """A tcp:// endpoint needs HOST:PORT with a host that resolves; ConfigError (one line) otherwise."""
    if not endpoint.startswith(TCP_SCHEME):
        return
    host, _, port = endpoint[len(TCP_SCHEME):].rpartition(":")
    host = host.rpartition(";")[2].strip("[]")  # tcp://SOURCE;HOST:PORT, tcp://[IPv6]:PORT
    if not host or not port.isdigit():
        raise ConfigError("monitor: %r is not tcp://HOST:PORT" % endpoint)
    resolve_host(host, int(port), endpoint)


def resolve_host(host: str, port: int, what: str) -> None:
    """Look the host name up once; a name that does not resolve is a ConfigError naming it."""
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError("monitor: cannot resolve host %r of %s: %s" % (host, what, reason)) from None


def _run_zmq(endpoint: str, printer: Printer, stop: threading.Event, patience: Patience) -> None:
    """Subscribe to everything on the endpoint; ZeroMQ reconnects by itself when the daemon restarts."""
    context = zmq.Context()
    sock = context.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    try:
        sock.connect(endpoint)
    except zmq.ZMQError as exc:
        sock.close()
        context.term()
        raise ConfigError("monitor: cannot connect to %s: %s" % (endpoint, exc)) from None
    try:
        while not stop.is_set():
            if sock.poll(POLL_MS):
                _zmq_message(sock.recv_multipart(zmq.NOBLOCK), endpoint, printer)
            patience.check(printer)
    finally:
        sock.close()
        context.term()


def _zmq_message(frames: list[bytes], endpoint: str, printer: Printer) -> None:
    """Check the [topic, JSON] shape, then print."""
    if len(frames) != 2:
        log.warning("skipped a message on %s: %d frames, expected [topic, json]", endpoint, len(frames))
        return
    topic = frames[0].decode("utf-8", "replace")
    printer.payload(topic, frames[1])


class _MqttTail:
    """paho callbacks of the MQTT monitor: subscribe on every connect, route messages by topic."""

    def __init__(self, prefix: str, printer: Printer, address: str) -> None:
        self._prefix = prefix.strip("/")
        self._printer = printer
        self._address = address
        self._warned_unreachable = False

    def on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        """(Re)subscribe to events, state and availability of every device."""
        if reason.is_failure:
            log.warning("broker %s refused the connection: %s", self._address, reason)
            return
        self._warned_unreachable = False
        client.subscribe([("%s/+/%s" % (self._prefix, leaf), 0) for leaf in ("events", "state", "available")])

    def on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        """Warn once per outage; paho keeps retrying."""
        if not self._warned_unreachable:
            log.warning("cannot reach broker %s, retrying", self._address)
            self._warned_unreachable = True

    def on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        """Say the connection was lost; paho reconnects with backoff."""
        if reason.is_failure:
            log.warning("lost broker %s (%s), reconnecting", self._address, reason)

    def on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        """Events print as they come; state prints when retained (the current one) or periodic."""
        leaf = message.topic.rsplit("/", 1)[-1]
        if leaf == "available":
            self._availability(message)
        elif leaf == "events" or (leaf == "state" and (message.retain or _is_state_event(message.payload))):
            self._printer.payload(message.topic, message.payload)

    def _availability(self, message: mqtt.MQTTMessage) -> None:
        """A device went online or offline (not shown with --json: it is not an event)."""
        if self._printer.as_json:
            return
        device = message.topic.split("/")[-2]
        state = message.payload.decode("utf-8", "replace")
        self._printer.line("%s  %s  %-*s %s" % (clock(time.time()), device, TYPE_WIDTH, "available", state))


def _is_state_event(payload: bytes) -> bool:
    """True for an emotion-state payload (those are not on the events topic)."""
    try:
        return json.loads(payload).get("type") == EmotionState.TYPE
    except (ValueError, AttributeError):
        return True


def _run_mqtt(host: str, port: int, prefix: str, printer: Printer, stop: threading.Event, patience: Patience) -> None:
    """Connect in paho's thread (retrying with backoff) and print until stopped."""
    tail = _MqttTail(prefix, printer, "%s:%d" % (host, port))
    client_id = "serd-monitor-%s" % uuid.uuid4().hex[:CLIENT_ID_SUFFIX_CHARS]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.reconnect_delay_set(MQTT_RECONNECT_MIN_S, MQTT_RECONNECT_MAX_S)
    client.on_connect = tail.on_connect
    client.on_connect_fail = tail.on_connect_fail
    client.on_disconnect = tail.on_disconnect
    client.on_message = tail.on_message
    client.connect_async(host, port, keepalive=MQTT_KEEPALIVE_S)
    client.loop_start()
    try:
        while not stop.wait(POLL_MS / 1000):
            patience.check(printer)
    finally:
        client.disconnect()
        client.loop_stop()
