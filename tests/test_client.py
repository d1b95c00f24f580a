"""serd.client.subscribe against real daemons: ZeroMQ and MQTT, one iteration across a daemon restart."""

import threading
import time

import pytest

from serd.client import parse_url, subscribe
from serd.config import MqttConfig
from serd.errors import ConfigError
from serd.events import EmotionChanged, Event, SpeechStarted
from serd.publish.mqtt_pub import MqttPublisher
from tests.support_cli import serd
from tests.support_mqtt import mosquitto  # noqa: F401

IDLE_S = 8.0  # the iteration ends after this long without an event
READY_TIMEOUT_S = 10.0


class Consumer:
    """Iterates subscribe(url, ...) in a thread, keeping what it yields."""

    def __init__(self, url, **kwargs):
        self.events: list[Event] = []
        self.finished = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(url, kwargs), daemon=True)
        self.thread.start()

    def _run(self, url, kwargs):
        for event in subscribe(url, timeout_s=IDLE_S, **kwargs):
            self.events.append(event)
        self.finished.set()

    def devices(self, event_type):
        return [e.device for e in self.events if e.type == event_type]

    def wait_for(self, predicate, timeout_s=READY_TIMEOUT_S, poke=None):
        deadline_s = time.monotonic() + timeout_s
        while time.monotonic() < deadline_s:
            if any(predicate(e) for e in list(self.events)):
                return
            if poke is not None:
                poke()
            time.sleep(0.1)
        raise AssertionError("the consumer did not see it within %.0f s (got %r)" % (timeout_s, self.events[-3:]))

    def finish(self):
        assert self.finished.wait(IDLE_S + 30), "the iteration ends once nothing has come for timeout_s"
        return self.events


def test_zmq_subscription_yields_typed_events_of_two_daemons_one_after_the_other(tmp_path, ravdess_clip):
    endpoint = "ipc://%s/events" % tmp_path
    consumer = Consumer(endpoint)
    for device in ("first", "second"):
        run = serd("run", "--source", "file:%s" % ravdess_clip, "--zmq", endpoint, "--device-id", device)
        assert run.returncode == 0, run.stderr.decode()
    events = consumer.finish()
    assert all(isinstance(e, Event) for e in events)
    assert consumer.devices("speech-started")[:1] == ["first"] and "second" in consumer.devices("speech-started")
    changed = [e for e in events if isinstance(e, EmotionChanged)]
    assert {e.device for e in changed} == {"first", "second"} and all(e.label for e in changed)


def test_mqtt_subscription_filters_types_and_survives_a_daemon_restart(mosquitto, ravdess_clip):
    url = "mqtt://%s:%d" % (mosquitto.host, mosquitto.port)
    consumer = Consumer(url, types={"speech-started", "emotion-changed"})
    probe = MqttPublisher(MqttConfig(enabled=True, host=mosquitto.host, port=mosquitto.port, discovery=False), "probe")
    try:  # the consumer is subscribed once it hears the probe
        consumer.wait_for(lambda e: e.device == "probe", poke=lambda: probe.publish(
            SpeechStarted(device="probe", stream_time_s=0.0, wall_time_s=time.time(), segment=1)))
    finally:
        probe.close(timeout_s=1.0)
    for device in ("first", "second"):
        run = serd("run", "--source", "file:%s" % ravdess_clip, "--no-zmq", "--mqtt",
                   "%s:%d" % (mosquitto.host, mosquitto.port), "--device-id", device)
        assert run.returncode == 0, run.stderr.decode()
    events = [e for e in consumer.finish() if e.device != "probe"]
    assert {e.type for e in events} == {"speech-started", "emotion-changed"}, "only the types asked for"
    for device in ("first", "second"):
        assert device in consumer.devices("speech-started") and device in consumer.devices("emotion-changed")


@pytest.mark.parametrize("url, expected", [
    ("ipc:///run/serd/events", ("zmq", "ipc:///run/serd/events", 0)),
    ("tcp://10.0.0.2:5556", ("zmq", "tcp://10.0.0.2:5556", 0)),
    ("mqtt://broker", ("mqtt", "broker", 1883)),
    ("mqtt://broker:8883/", ("mqtt", "broker", 8883)),
    ("mqtt://[::1]:1884", ("mqtt", "::1", 1884)),
])
def test_events_urls(url, expected):
    assert parse_url(url) == expected


@pytest.mark.parametrize("url", ["http://host", "mqtt://", "mqtt://host:0", "mqtt://host:x", "/run/serd/events"])
def test_a_bad_url_is_one_config_error(url):
    with pytest.raises(ConfigError, match="mqtt://HOST"):
        next(subscribe(url, timeout_s=0.1))
