"""Publishers (ZeroMQ, MQTT, stdout) behind one small interface, and a fan-out over them."""

from __future__ import annotations

import logging
import time
from typing import Iterable

from serd.config import Config, device_id, zmq_endpoint
from serd.events import Event
from serd.publish.base import DropCounter, Publisher, event_json
from serd.publish.mqtt_pub import MqttPublisher
from serd.publish.stdout_pub import StdoutPublisher
from serd.publish.zmq_pub import ZmqPublisher

__all__ = ["Fanout", "MqttPublisher", "Publisher", "StdoutPublisher", "ZmqPublisher", "event_json", "make_publishers"]

log = logging.getLogger(__name__)

MIN_CLOSE_S = 0.1


def make_publishers(config: Config) -> list[Publisher]:
    """The enabled publishers, connected or bound; a bad endpoint or credential raises ConfigError."""
    device = device_id(config)
    publishers: list[Publisher] = []
    try:
        if config.zmq.enabled:
            publishers.append(ZmqPublisher(zmq_endpoint(config), device, config.zmq.high_water_mark))
        if config.mqtt.enabled:
            publishers.append(MqttPublisher(config.mqtt, device))
        if config.stdout.enabled:
            publishers.append(StdoutPublisher())
    except Exception:
        Fanout(publishers).close()
        raise
    return publishers


class Fanout:
    """Publishes every event to all publishers; one failing publisher never stops the others."""

    def __init__(self, publishers: Iterable[Publisher]) -> None:
        self.publishers = list(publishers)
        self._faults = {publisher.name: DropCounter(publisher.name) for publisher in self.publishers}

    def publish(self, event: Event) -> None:
        """Hand the event to each publisher."""
        for publisher in self.publishers:
            try:
                publisher.publish(event)
            except Exception as exc:  # a publisher bug must not stop the pipeline
                self._faults[publisher.name].drop("publish raised %s: %s" % (exc.__class__.__name__, exc))

    def dropped_counts(self) -> dict[str, int]:
        """Dropped events per publisher name (what status events report)."""
        return {p.name: p.dropped + self._faults[p.name].count for p in self.publishers}

    def close(self, timeout_s: float = 2.0) -> None:
        """Close every publisher within one shared deadline."""
        deadline_s = time.monotonic() + timeout_s
        for publisher in self.publishers:
            remaining_s = max(MIN_CLOSE_S, deadline_s - time.monotonic())
            try:
                publisher.close(remaining_s)
            except Exception as exc:  # closing must reach every publisher
                log.warning("%s: close failed: %s", publisher.name, exc)
