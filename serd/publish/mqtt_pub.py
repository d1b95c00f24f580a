"""MQTT 5 publisher: retained availability (with a last will), retained state and status, events."""

from __future__ import annotations

import collections
import logging
import ssl
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from serd.config import MqttConfig
from serd.errors import ConfigError, SerdError
from serd.events import EmotionChanged, EmotionState, Event, Status
import serd.publish.discovery as discovery
from serd.publish.base import DropCounter, event_json
from serd.publish.discovery import DeviceIdentity

log = logging.getLogger(__name__)

MAX_QUEUED_MESSAGES = 1000
CONTROL_HEADROOM = 8  # room in paho's queue for availability and retained re-publishes beyond the events
RECONNECT_MIN_S = 1
ONLINE = "online"
OFFLINE = "offline"
STATE_TYPES = (EmotionChanged.TYPE, EmotionState.TYPE)
NOT_ON_EVENTS_TOPIC = (EmotionState.TYPE,)
TOPIC_WILDCARDS = ("+", "#")
CLIENT_ID_SUFFIX_CHARS = 8
PENDING_POLL_S = 0.01  # how often close() looks whether queued events have reached the broker
FORGET_TIMEOUT_S = 5.0  # serd run --mqtt-forget waits this long for the broker

# (broker address, availability topic) of the publishers open in this process, to tell a reload from a stop
_live_here: collections.Counter[tuple[str, str]] = collections.Counter()
_live_here_lock = threading.Lock()


class MqttTopics:
    """PREFIX/DEVICE/{available,state,events,status}."""

    def __init__(self, prefix: str, device: str) -> None:
        for key, value in (("[mqtt] topic_prefix", prefix), ("[daemon] device_id", device)):
            if not value or any(mark in value for mark in TOPIC_WILDCARDS):
                raise ConfigError("%s: %r cannot be used in an MQTT topic" % (key, value))
        base = "%s/%s" % (prefix.strip("/"), device)
        self.available = base + "/available"
        self.state = base + "/state"
        self.events = base + "/events"
        self.status = base + "/status"


class MqttPublisher:
    """Publishes to a broker from paho's network thread; a missing broker never blocks the caller."""

    name = "mqtt"

    def __init__(self, config: MqttConfig, device: str, max_queued: int = MAX_QUEUED_MESSAGES,
                 identity: DeviceIdentity | None = None) -> None:
        self.device = device  # the one device whose events it carries (the fan-out routes them)
        self.topics = MqttTopics(config.topic_prefix, device)
        self._discovery: list[tuple[str, str]] = []  # Home Assistant entity configs, sent retained on every connect
        self._ha_status = discovery.status_topic(config.discovery_prefix)
        if config.discovery and identity is not None:
            self._discovery = discovery.discovery_messages(config.discovery_prefix, device, identity, self.topics.state,
                                                           self.topics.events, self.topics.available)
        self._qos = config.qos
        self._address = "%s:%d" % (config.host, config.port)
        self._max_queued = max_queued
        self._drops = DropCounter(self.name)
        self._lock = threading.Lock()
        self._pending: collections.deque[tuple[mqtt.MQTTMessageInfo, bool]] = collections.deque()
        self._backlog: collections.deque[tuple[str, str, bool]] = collections.deque()  # QoS 0 while offline
        self._retained: dict[str, str] = {}
        self._closed = False
        self._connects = 0
        self._client = self._make_client(config, device)
        self._liveness_key = (self._address, self.topics.available)
        with _live_here_lock:
            _live_here[self._liveness_key] += 1
        self._client.connect_async(config.host, config.port, keepalive=config.keepalive_s)
        self._client.loop_start()

    @property
    def reconnects(self) -> int:
        """Connections to the broker after the first (each one after a loss)."""
        return max(0, self._connects - 1)

    @property
    def dropped(self) -> int:
        """Events not handed to the broker (queue full, connection lost mid-send, publisher closed)."""
        return self._drops.count

    def _make_client(self, config: MqttConfig, device: str) -> mqtt.Client:
        """A paho client with will, credentials, TLS, backoff and a bounded queue configured."""
        client_id = "serd-%s-%s" % (device, uuid.uuid4().hex[:CLIENT_ID_SUFFIX_CHARS])
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        client.will_set(self.topics.available, OFFLINE, qos=self._qos, retain=True)
        _set_credentials(client, config)
        if config.tls:
            _set_tls(client, config)
        client.reconnect_delay_set(RECONNECT_MIN_S, config.reconnect_max_s)
        client.max_queued_messages_set(self._max_queued + CONTROL_HEADROOM)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_message = self._on_message
        return client

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        """Announce availability, restore the retained state the broker may have lost, send the backlog."""
        if reason.is_failure:
            self._drops.note("broker refused the connection: %s" % reason)
            return
        log.info("mqtt: connected to broker %s", self._address)
        self._connects += 1
        client.publish(self.topics.available, ONLINE, qos=self._qos, retain=True)
        if self._discovery:
            self._announce(client)
            client.subscribe(self._ha_status, qos=self._qos)
        with self._lock:
            for topic, payload in self._retained.items():
                client.publish(topic, payload, qos=self._qos, retain=True)
            while self._backlog:
                topic, payload, counted = self._backlog.popleft()
                self._pending.append((client.publish(topic, payload, qos=self._qos), counted))

    def _announce(self, client: mqtt.Client) -> None:
        """Send the Home Assistant entity configs (retained)."""
        for topic, payload in self._discovery:
            client.publish(topic, payload, qos=self._qos, retain=True)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        """Home Assistant came online (it may have lost its entities): announce them again."""
        if message.topic == self._ha_status and message.payload == discovery.HA_ONLINE.encode():
            log.info("mqtt: Home Assistant is online, announcing the device again")
            self._announce(client)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        """Note a lost connection; paho reconnects with backoff."""
        if not self._closed:
            self._drops.note("disconnected from broker %s (%s), reconnecting" % (self._address, reason))

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        """A connection attempt failed; paho retries with backoff."""
        self._drops.note("cannot connect to broker %s, retrying" % self._address)

    def publish(self, event: Event) -> None:
        """Queue the event for its topics; retained topics hold only the latest and go out on connect."""
        if self._closed:
            self._drops.drop("publisher closed")
            return
        payload = event_json(event)
        retained_topic = self._retained_topic(event)
        if retained_topic is not None:
            with self._lock:
                self._retained[retained_topic] = payload
            if self._client.is_connected():
                self._send(retained_topic, payload, retain=True, counted=False)
        if event.type not in NOT_ON_EVENTS_TOPIC:
            self._send(self.topics.events, payload, retain=False, counted=True)

    def _retained_topic(self, event: Event) -> str | None:
        """The retained topic this event updates, if any."""
        if event.type in STATE_TYPES:
            return self.topics.state
        if event.type == Status.TYPE:
            return self.topics.status
        return None

    def _send(self, topic: str, payload: str, retain: bool, counted: bool) -> None:
        """Hand one message to paho unless the outgoing queue is full; count lost events when `counted`.

        paho queues QoS 1/2 messages while the broker is away; QoS 0 events wait in a backlog of ours
        (same bound) and go out on connect, so a reload or a broker restart does not lose them.
        Retained messages are not queued: the latest goes out on connect anyway.
        """
        with self._lock:
            if self._queue_full():
                self._lost(counted, "outgoing queue full (%d messages)" % self._max_queued)
                return
            info = self._client.publish(topic, payload, qos=self._qos, retain=retain)
            if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and self._qos > 0:
                info.rc = MQTTErrorCode.MQTT_ERR_SUCCESS  # queued: paho sends it once connected
            if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
                self._lost(counted, "outgoing queue full (%d messages)" % self._max_queued)
            elif info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
                if not retain:
                    self._backlog.append((topic, payload, counted))
            else:
                self._pending.append((info, counted))

    def _lost(self, counted: bool, cause: str) -> None:
        """Count a lost event; retained messages are not counted (they go out again on connect)."""
        if counted:
            self._drops.drop(cause)

    def _queue_full(self) -> bool:
        """Forget finished messages (counting QoS 0 ones a lost connection took); True if still full."""
        while self._pending and _finished(self._pending[0][0]):
            self._settle(*self._pending.popleft())
        if len(self._pending) >= self._max_queued:
            finished = [entry for entry in self._pending if _finished(entry[0])]
            finished_ids = {id(entry) for entry in finished}
            self._pending = collections.deque(entry for entry in self._pending if id(entry) not in finished_ids)
            for entry in finished:
                self._settle(*entry)
        return len(self._pending) + len(self._backlog) >= self._max_queued

    def _settle(self, info: mqtt.MQTTMessageInfo, counted: bool) -> None:
        """Count a finished message as lost if paho gave up on it."""
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._lost(counted, "connection lost before sending (%s)" % mqtt.error_string(info.rc))

    def _wait_pending(self, deadline_s: float) -> None:
        """Give queued events until deadline_s to reach the broker (QoS 0 sent, QoS 1/2 acknowledged)."""
        while time.monotonic() < deadline_s:
            with self._lock:
                if all(_finished(info) for info, _ in self._pending):
                    return
            time.sleep(PENDING_POLL_S)

    def close(self, timeout_s: float = 2.0) -> None:
        """Let queued events reach the broker, publish available=offline (retained), all within timeout_s, then
        disconnect; events still queued then are lost and counted as dropped.

        When a replacement publisher for the same device is already open (a reload), the device stays
        online: no offline message, and the clean disconnect suppresses the last will.
        """
        if self._closed:
            return
        self._closed = True
        deadline_s = time.monotonic() + timeout_s
        with _live_here_lock:
            _live_here[self._liveness_key] -= 1
            replaced = _live_here[self._liveness_key] > 0
            if not replaced:
                del _live_here[self._liveness_key]
        if self._client.is_connected():
            self._wait_pending(deadline_s)
            if not replaced:
                info = self._client.publish(self.topics.available, OFFLINE, qos=self._qos, retain=True)
                _wait_published(info, max(0.0, deadline_s - time.monotonic()))
        self._client.disconnect()
        with self._lock:
            for _, _, counted in self._backlog:
                self._lost(counted, "closed before the broker connected")
            self._backlog.clear()
            for info, counted in self._pending:  # still in paho's queue (or unacknowledged) at exit: lost, so counted
                if not _finished(info) or info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    self._lost(counted, "closed before the broker took it")
            self._pending.clear()
        stopper = threading.Thread(target=self._client.loop_stop, name="serd-mqtt-stop", daemon=True)
        stopper.start()
        stopper.join(max(0.0, deadline_s - time.monotonic()))
        if stopper.is_alive():
            log.warning("mqtt: network thread did not stop within %.1f s", timeout_s)


def forget_discovery(config: MqttConfig, device: str, timeout_s: float = FORGET_TIMEOUT_S) -> list[str]:
    """Clear this device's Home Assistant entity configs (empty retained payloads, which make Home Assistant
    remove the entities); returns the topics cleared; SerdError if the broker cannot be reached in timeout_s."""
    MqttTopics(config.topic_prefix, device)  # the same checks of prefix and device as a publisher's
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="serd-forget-%s" % uuid.uuid4().hex[:CLIENT_ID_SUFFIX_CHARS],
                         protocol=mqtt.MQTTv5)
    _set_credentials(client, config)
    if config.tls:
        _set_tls(client, config)
    address = "%s:%d" % (config.host, config.port)
    try:
        client.connect(config.host, config.port, keepalive=config.keepalive_s)
    except (OSError, ValueError) as exc:
        raise SerdError("cannot connect to MQTT broker %s: %s" % (address, getattr(exc, "strerror", None) or exc)) from None
    client.loop_start()
    try:
        topics = discovery.config_topics(config.discovery_prefix, device)
        infos = [client.publish(topic, b"", qos=max(config.qos, 1), retain=True) for topic in topics]
        deadline_s = time.monotonic() + timeout_s
        for info in infos:
            info.wait_for_publish(max(0.0, deadline_s - time.monotonic()))
            if not info.is_published():
                raise SerdError("MQTT broker %s did not take the cleared entity configs within %.0f s" % (address, timeout_s))
        return topics
    finally:
        client.disconnect()
        client.loop_stop()


def _finished(info: mqtt.MQTTMessageInfo) -> bool:
    """True once paho has sent (QoS 0) or the broker acknowledged (QoS 1/2) the message, or given up."""
    try:
        return info.is_published()
    except (ValueError, RuntimeError):
        return True


def _wait_published(info: mqtt.MQTTMessageInfo, timeout_s: float) -> None:
    """Wait for one message, bounded; a failure is logged, not raised."""
    try:
        info.wait_for_publish(timeout_s)
    except (ValueError, RuntimeError) as exc:
        log.warning("mqtt: could not publish availability: %s", exc)


def _set_credentials(client: mqtt.Client, config: MqttConfig) -> None:
    """User name from the config, password from password_file (trailing newline removed)."""
    password = None
    if config.password_file:
        try:
            with open(config.password_file, encoding="utf-8") as handle:
                password = handle.read().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise ConfigError("[mqtt] password_file: %s: cannot read: %s" % (config.password_file, reason)) from None
    if config.username or password is not None:
        client.username_pw_set(config.username or None, password)


def _set_tls(client: mqtt.Client, config: MqttConfig) -> None:
    """TLS with the configured CA (or the system store) and optional client certificate."""
    try:
        client.tls_set(
            ca_certs=config.ca_file or None,
            certfile=config.cert_file or None,
            keyfile=config.key_file or None,
        )
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigError("[mqtt] tls: cannot load ca_file/cert_file/key_file: %s" % exc) from None
