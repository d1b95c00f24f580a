"""Receive serd's events in another program: `for event in subscribe("ipc:///run/serd/events"): ...`.

URLs: `ipc://PATH` and `tcp://HOST:PORT` (the daemon's ZeroMQ endpoint), `mqtt://HOST[:PORT]` (a broker
serd publishes to; topics PREFIX/+/events and /state). Both reconnect by themselves when the daemon or
the broker restarts. Messages that are not serd events are skipped with a logged warning.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import time
import uuid
from typing import Any, Iterable, Iterator, NamedTuple

from serd.errors import ConfigError
from serd.events import EmotionState, Event, EventFormatError, from_dict

log = logging.getLogger(__name__)

ZMQ_SCHEMES = ("ipc://", "tcp://")
MQTT_SCHEME = "mqtt://"
TCP_SCHEME = "tcp://"
DEFAULT_MQTT_PORT = 1883
DEFAULT_MQTT_PREFIX = "serd"
MQTT_RECONNECT_MIN_S = 1
MQTT_RECONNECT_MAX_S = 5
MQTT_KEEPALIVE_S = 30
CLIENT_ID_SUFFIX_CHARS = 8
POLL_S = 0.2  # longest wait of one receive while the caller's timeout runs


class Message(NamedTuple):
    """One raw message: where it came from (topic) and its payload (JSON bytes)."""

    source: str
    payload: bytes


class Availability(NamedTuple):
    """MQTT only: a device went online or offline (the daemon's retained availability topic)."""

    device: str
    state: str


def parse_url(url: str) -> tuple[str, str, int]:
    """(kind, address, port): ("zmq", endpoint, 0) or ("mqtt", host, port); ConfigError for anything else."""
    if url.startswith(ZMQ_SCHEMES):
        return "zmq", url, 0
    if url.startswith(MQTT_SCHEME):
        rest = url[len(MQTT_SCHEME):].rstrip("/")
        if rest.startswith("["):  # mqtt://[IPv6]:PORT
            host, _, tail = rest[1:].partition("]")
            port = tail[1:] if tail.startswith(":") else str(DEFAULT_MQTT_PORT)
        else:
            host, _, port = rest.partition(":")
            port = port or str(DEFAULT_MQTT_PORT)
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError("%r is not mqtt://HOST[:PORT]" % url)
        return "mqtt", host, int(port)
    raise ConfigError("%r: an events URL is ipc://PATH, tcp://HOST:PORT or mqtt://HOST[:PORT]" % url)


def resolve_host(host: str, port: int, what: str) -> None:
    """Look the host name up once; a name that does not resolve is a ConfigError naming it."""
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError("cannot resolve host %r of %s: %s" % (host, what, reason)) from None


def check_zmq_host(endpoint: str) -> None:
    """A tcp:// endpoint needs HOST:PORT with a host that resolves; ConfigError (one line) otherwise."""
    if not endpoint.startswith(TCP_SCHEME):
        return
    host, _, port = endpoint[len(TCP_SCHEME):].rpartition(":")
    host = host.rpartition(";")[2].strip("[]")  # tcp://SOURCE;HOST:PORT, tcp://[IPv6]:PORT
    if not host or not port.isdigit():
        raise ConfigError("%r is not tcp://HOST:PORT" % endpoint)
    resolve_host(host, int(port), endpoint)


class ZmqTransport:
    """A SUB socket on every topic of a serd endpoint; ZeroMQ reconnects by itself."""

    def __init__(self, endpoint: str) -> None:
        import zmq

        check_zmq_host(endpoint)
        self.where = endpoint
        self._zmq = zmq
        self._context = zmq.Context()
        self._sock = self._context.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SUBSCRIBE, b"")
        try:
            self._sock.connect(endpoint)
        except zmq.ZMQError as exc:
            self.close()
            raise ConfigError("cannot connect to %s: %s" % (endpoint, exc)) from None

    def get(self, timeout_s: float) -> Message | None:
        """The next message within timeout_s, or None; a message of the wrong shape is skipped with a warning."""
        if not self._sock.poll(max(0, int(timeout_s * 1000))):
            return None
        frames = self._sock.recv_multipart(self._zmq.NOBLOCK)
        if len(frames) != 2:
            log.warning("skipped a message on %s: %d frames, expected [topic, json]", self.where, len(frames))
            return None
        return Message(frames[0].decode("utf-8", "replace"), frames[1])

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()
        self._context.term()


class MqttTransport:
    """Events, state and availability of every device under a topic prefix; paho reconnects with backoff."""

    def __init__(self, host: str, port: int, prefix: str = DEFAULT_MQTT_PREFIX) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        resolve_host(host, port, "MQTT broker %s:%d" % (host, port))
        self._prefix = prefix.strip("/")
        self.where = "MQTT broker %s:%d (topics %s/+/...)" % (host, port, self._prefix)
        self._address = "%s:%d" % (host, port)
        self._queue: queue.Queue[Message | Availability] = queue.Queue()
        self._warned_unreachable = False
        client_id = "serd-client-%s" % uuid.uuid4().hex[:CLIENT_ID_SUFFIX_CHARS]
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self._client.reconnect_delay_set(MQTT_RECONNECT_MIN_S, MQTT_RECONNECT_MAX_S)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.connect_async(host, port, keepalive=MQTT_KEEPALIVE_S)
        self._client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        """(Re)subscribe to events, state and availability of every device."""
        if reason.is_failure:
            log.warning("broker %s refused the connection: %s", self._address, reason)
            return
        self._warned_unreachable = False
        client.subscribe([("%s/+/%s" % (self._prefix, leaf), 0) for leaf in ("events", "state", "available")])

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        """Warn once per outage; paho keeps retrying."""
        if not self._warned_unreachable:
            log.warning("cannot reach broker %s, retrying", self._address)
            self._warned_unreachable = True

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        """Say the connection was lost; paho reconnects with backoff."""
        if reason.is_failure:
            log.warning("lost broker %s (%s), reconnecting", self._address, reason)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        """Events as they come; state when retained (the current one) or periodic; availability changes."""
        leaf = message.topic.rsplit("/", 1)[-1]
        if leaf == "available":
            self._queue.put(Availability(message.topic.split("/")[-2], message.payload.decode("utf-8", "replace")))
        elif leaf == "events" or (leaf == "state" and (message.retain or _is_state_event(message.payload))):
            self._queue.put(Message(message.topic, message.payload))

    def get(self, timeout_s: float) -> Message | Availability | None:
        """The next message within timeout_s, or None."""
        try:
            return self._queue.get(timeout=max(0.0, timeout_s))
        except queue.Empty:
            return None

    def close(self) -> None:
        """Disconnect."""
        self._client.disconnect()
        self._client.loop_stop()


def _is_state_event(payload: bytes) -> bool:
    """True for an emotion-state payload (those are not on the events topic)."""
    try:
        return json.loads(payload).get("type") == EmotionState.TYPE
    except (ValueError, AttributeError):
        return True


def open_transport(url: str, mqtt_prefix: str = DEFAULT_MQTT_PREFIX) -> ZmqTransport | MqttTransport:
    """The transport of an events URL (see the module's docstring)."""
    kind, address, port = parse_url(url)
    if kind == "zmq":
        return ZmqTransport(address)
    return MqttTransport(address, port, mqtt_prefix)


def decode(message: Message) -> Event:
    """The typed event of a message; EventFormatError (a ValueError) when it is not one."""
    try:
        return from_dict(json.loads(message.payload.decode("utf-8")))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise EventFormatError("not JSON text") from None


def subscribe(url: str, types: Iterable[str] | None = None, timeout_s: float | None = None,
              mqtt_prefix: str = DEFAULT_MQTT_PREFIX) -> Iterator[Event]:
    """Yield serd's events from url as typed events (serd.events), only those of `types` when given
    (e.g. {"emotion-changed"}); the iteration ends once no event has come for timeout_s (None: never)."""
    wanted = set(types) if types is not None else None
    transport = open_transport(url, mqtt_prefix)
    try:
        last_s = time.monotonic()
        while timeout_s is None or time.monotonic() - last_s < timeout_s:
            wait_s = POLL_S if timeout_s is None else min(POLL_S, max(0.0, timeout_s - (time.monotonic() - last_s)))
            item = transport.get(wait_s)
            if not isinstance(item, Message):
                continue
            try:
                event = decode(item)
            except EventFormatError as exc:
                log.warning("skipped a message on %s: %s", item.source, exc)
                continue
            if wanted is None or event.type in wanted:
                last_s = time.monotonic()
                yield event
    finally:
        transport.close()
