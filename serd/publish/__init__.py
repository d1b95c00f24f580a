"""Publishers (ZeroMQ, MQTT, stdout) behind one small interface, and a fan-out over them."""

from __future__ import annotations

import logging
import time
from typing import Iterable

from serd.config import Config, channels, zmq_endpoint
from serd.events import Event
from serd.publish.base import DropCounter, Publisher, event_json
from serd.publish.discovery import DeviceIdentity
from serd.publish.mqtt_pub import MqttPublisher
from serd.publish.stdout_pub import StdoutPublisher
from serd.publish.zmq_pub import ZmqPublisher

__all__ = ["DeviceIdentity", "Fanout", "MqttPublisher", "Publisher", "StdoutPublisher", "ZmqPublisher", "event_json", "make_publishers"]

log = logging.getLogger(__name__)

MIN_CLOSE_S = 0.1


def make_publishers(config: Config, running_zmq: ZmqPublisher | None = None,
                    identity: DeviceIdentity | None = None) -> list[Publisher]:
    """The enabled publishers, connected or bound; a bad endpoint or credential raises ConfigError.

    running_zmq, a ZeroMQ publisher already bound to the configured endpoint, is kept (its subscribers
    stay connected) and takes the new device id and settings; it is never closed here. identity (the
    model's labels, name and version) lets the MQTT publisher announce the device to Home Assistant.

    One ZeroMQ socket and one stdout serve every source (each event names its device); MQTT gets a
    connection per source's device, since availability is a connection's last will."""
    devices = [settings.device_id for settings in channels(config)]
    publishers: list[Publisher] = []
    try:
        if config.zmq.enabled:
            publishers.append(_zmq_publisher(config, ", ".join(devices), running_zmq))
        if config.mqtt.enabled:
            publishers.extend(MqttPublisher(config.mqtt, device, identity=identity) for device in devices)
        if config.stdout.enabled:
            publishers.append(StdoutPublisher())
    except Exception:
        Fanout(publishers).close(keep=running_zmq)
        raise
    return publishers


def _zmq_publisher(config: Config, device: str, running: ZmqPublisher | None) -> ZmqPublisher:
    """The running ZeroMQ publisher if it is bound to the configured endpoint, else a newly bound one."""
    settings = config.zmq
    if running is not None and running.endpoint == zmq_endpoint(config):
        running.retarget(settings.high_water_mark, settings.connect_wait_ms)
        return running
    return ZmqPublisher(zmq_endpoint(config), device, settings.high_water_mark, connect_wait_ms=settings.connect_wait_ms)


def serves(publisher: Publisher, device: str | None) -> bool:
    """Whether publisher carries device's events: one of a device (MQTT) only its own; None = any device."""
    own = getattr(publisher, "device", None)
    return device is None or own is None or own == device


class Fanout:
    """Publishes every event to the publishers that carry its device; one failing publisher never stops the others."""

    def __init__(self, publishers: Iterable[Publisher]) -> None:
        self.publishers = list(publishers)
        self._faults = {id(publisher): DropCounter(publisher.name) for publisher in self.publishers}

    def publish(self, event: Event) -> None:
        """Hand the event to each publisher of its device."""
        for publisher in self.publishers:
            if not serves(publisher, event.device):
                continue
            try:
                publisher.publish(event)
            except Exception as exc:  # a publisher bug must not stop the pipeline
                self._faults[id(publisher)].drop("publish raised %s: %s" % (exc.__class__.__name__, exc))

    def wait_for_subscribers(self) -> None:
        """Let subscribers that waited for a ZeroMQ bind join before events flow (bounded: [zmq] connect_wait_ms)."""
        for publisher in self.publishers:
            if isinstance(publisher, ZmqPublisher):
                publisher.wait_for_subscribers()

    def zmq_publisher(self, endpoint: str) -> ZmqPublisher | None:
        """The ZeroMQ publisher bound to endpoint, if there is one (a reload keeps it)."""
        return next((p for p in self.publishers if isinstance(p, ZmqPublisher) and p.endpoint == endpoint), None)

    def reconnect_counts(self) -> dict[str, int]:
        """Reconnections per publisher name that reconnects (MQTT: summed over the devices' connections)."""
        counts: dict[str, int] = {}
        for p in self.publishers:
            if hasattr(p, "reconnects"):
                counts[p.name] = counts.get(p.name, 0) + p.reconnects
        return counts

    def dropped_counts(self, device: str | None = None) -> dict[str, int]:
        """Dropped events per publisher name (what status events report): of the publishers carrying device's
        events, or summed over all of them (None)."""
        counts: dict[str, int] = {}
        for p in self.publishers:
            if serves(p, device):
                counts[p.name] = counts.get(p.name, 0) + p.dropped + self._faults[id(p)].count
        return counts

    def close(self, timeout_s: float = 2.0, keep: Publisher | None = None) -> None:
        """Close every publisher but `keep` (one a reload goes on using) within one shared deadline."""
        deadline_s = time.monotonic() + timeout_s
        for publisher in self.publishers:
            if publisher is keep:
                continue
            remaining_s = max(MIN_CLOSE_S, deadline_s - time.monotonic())
            try:
                publisher.close(remaining_s)
            except Exception as exc:  # closing must reach every publisher
                log.warning("%s: close failed: %s", publisher.name, exc)
