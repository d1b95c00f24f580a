"""MQTT publisher against a real mosquitto: availability, last will, retained state, reconnects, auth."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from serd.config import MqttConfig, load_config
from serd.errors import ConfigError
from serd.events import EmotionChanged, EmotionState, SpeechStarted, Status, from_dict
from serd.publish import Fanout, make_publishers
from serd.publish.mqtt_pub import MqttPublisher
from tests.support_mqtt import Listener, Mosquitto, free_port, mosquitto  # noqa: F401

DEVICE = "kitchen"
BASE = "serd/%s" % DEVICE
NON_BLOCKING_S = 0.05


def changed(label="angry", previous="neutral", confidence=0.82, t=1.0):
    return EmotionChanged(device=DEVICE, stream_time_s=t, wall_time_s=1700000000.0 + t, segment=1, label=label,
                          previous=previous, confidence=confidence, probabilities={label: confidence})


def state(label="angry", confidence=0.8, t=2.0):
    return EmotionState(device=DEVICE, stream_time_s=t, wall_time_s=1700000000.0 + t, segment=1, label=label,
                        confidence=confidence, probabilities={label: confidence})


def started(t=0.5):
    return SpeechStarted(device=DEVICE, stream_time_s=t, wall_time_s=1700000000.0 + t, segment=1)


_opened: list[MqttPublisher] = []


def publisher_for(broker, **overrides):
    config = MqttConfig(enabled=True, host=broker.host, port=broker.port, **overrides)
    _opened.append(MqttPublisher(config, DEVICE))
    return _opened[-1]


@pytest.fixture(autouse=True)
def close_publishers():
    """A failed test must not leave a publisher open: it would make the next one look like a reload."""
    yield
    while _opened:
        _opened.pop().close(timeout_s=0.5)


@pytest.fixture
def listener(mosquitto):
    sub = Listener(mosquitto.host, mosquitto.port, [BASE + "/#"])
    yield sub
    sub.close()


def test_online_retained_events_live_state_retained(mosquitto, listener):
    pub = publisher_for(mosquitto)
    assert listener.wait_for(BASE + "/available", "online")
    pub.publish(started())
    pub.publish(changed())
    topic, payload, retain = listener.wait_for(BASE + "/events")
    assert from_dict(json.loads(payload)) == started() and retain is False
    arrived = set()  # changed() goes to /state and /events: both must be at the broker before the late subscriber comes
    while arrived != {BASE + "/state", BASE + "/events"}:
        topic, payload, _ = listener.messages.get(timeout=5.0)
        if topic in (BASE + "/state", BASE + "/events") and json.loads(payload)["type"] == "emotion-changed":
            arrived.add(topic)
    late = Listener(mosquitto.host, mosquitto.port, [BASE + "/#"])
    seen = {topic: (payload, retain) for topic, payload, retain in late.drain()}
    late.close()
    pub.close()
    assert seen[BASE + "/available"] == ("online", True)
    assert from_dict(json.loads(seen[BASE + "/state"][0])) == changed()
    assert seen[BASE + "/state"][1] is True
    assert BASE + "/events" not in seen, "events must not be retained"


def test_emotion_state_goes_to_state_only_status_to_status_and_events(mosquitto, listener):
    pub = publisher_for(mosquitto)
    listener.wait_for(BASE + "/available", "online")
    pub.publish(state(label="happy", confidence=0.6))
    status = Status(device=DEVICE, stream_time_s=3.0, wall_time_s=1700000003.0, audio_s=3.0, dropped={"zmq": 2})
    pub.publish(status)
    messages = listener.drain()
    pub.close()
    topics = [topic for topic, _, _ in messages]
    assert topics.count(BASE + "/state") == 1
    assert topics.count(BASE + "/status") == 1
    event_payloads = [json.loads(payload) for topic, payload, _ in messages if topic == BASE + "/events"]
    assert [data["type"] for data in event_payloads] == ["status"]
    state_payload = next(payload for topic, payload, _ in messages if topic == BASE + "/state")
    assert from_dict(json.loads(state_payload)).label == "happy"
    assert from_dict(event_payloads[0]) == status


def test_close_publishes_offline_within_timeout(mosquitto, listener):
    pub = publisher_for(mosquitto)
    listener.wait_for(BASE + "/available", "online")
    began_s = time.monotonic()
    pub.close(timeout_s=2.0)
    assert time.monotonic() - began_s < 2.0
    assert listener.wait_for(BASE + "/available", "offline")[2] is False
    late = Listener(mosquitto.host, mosquitto.port, [BASE + "/available"])
    assert late.wait_for(BASE + "/available") == (BASE + "/available", "offline", True)
    late.close()
    pub.publish(started())
    assert pub.dropped == 1


def test_a_replaced_publisher_leaves_the_device_online(mosquitto, listener):
    old = publisher_for(mosquitto)
    listener.wait_for(BASE + "/available", "online")
    new = publisher_for(mosquitto, qos=0)
    listener.wait_for(BASE + "/available", "online")
    old.close()
    new.publish(started())
    listener.wait_for(BASE + "/events")
    late = Listener(mosquitto.host, mosquitto.port, [BASE + "/available"])
    assert late.wait_for(BASE + "/available") == (BASE + "/available", "online", True)
    late.close()
    new.close()
    listener.wait_for(BASE + "/available", "offline")


CHILD = """
import sys, time
from serd.config import MqttConfig
from serd.publish.mqtt_pub import MqttPublisher
pub = MqttPublisher(MqttConfig(enabled=True, host=sys.argv[1], port=int(sys.argv[2])), sys.argv[3])
time.sleep(60)
"""


def test_last_will_offline_when_the_process_dies(mosquitto, listener):
    child = subprocess.Popen([sys.executable, "-c", CHILD, mosquitto.host, str(mosquitto.port), DEVICE])
    try:
        listener.wait_for(BASE + "/available", "online", timeout_s=10.0)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    listener.wait_for(BASE + "/available", "offline")
    late = Listener(mosquitto.host, mosquitto.port, [BASE + "/available"])
    assert late.wait_for(BASE + "/available") == (BASE + "/available", "offline", True)
    late.close()


def test_reconnects_after_broker_restart_and_republishes_state(mosquitto):
    pub = publisher_for(mosquitto, qos=1)
    first = Listener(mosquitto.host, mosquitto.port, [BASE + "/#"])
    first.wait_for(BASE + "/available", "online")
    pub.publish(changed())
    first.wait_for(BASE + "/state")
    first.close()
    mosquitto.stop()
    began_s = time.monotonic()
    pub.publish(started(t=5.0))
    pub.publish(changed(label="sad", previous="angry", t=6.0))
    assert time.monotonic() - began_s < 2 * NON_BLOCKING_S
    mosquitto.start()
    after = Listener(mosquitto.host, mosquitto.port, [BASE + "/#"])
    after.wait_for(BASE + "/available", "online", timeout_s=5.0)
    state_payload = after.wait_for(BASE + "/state", timeout_s=2.0)[1]
    # QoS 1 is at least once: the first event may come again (its PUBACK lost with the broker); the new ones come in order
    queued = [(event["type"], event["stream_time_s"]) for event in
              (json.loads(payload) for topic, payload, _ in after.drain(0.5) if topic == BASE + "/events")]
    after.close()
    pub.close()
    assert from_dict(json.loads(state_payload)).label == "sad"
    assert [entry for entry in queued if entry != ("emotion-changed", 1.0)][:2] == [("speech-started", 5.0), ("emotion-changed", 6.0)]
    assert pub.dropped == 0


def test_a_subscriber_arriving_after_a_reconnect_still_gets_the_retained_state(mosquitto):
    pub = publisher_for(mosquitto, qos=1)
    probe = Listener(mosquitto.host, mosquitto.port, [BASE + "/state"])
    pub.publish(changed(label="sad", previous="neutral"))
    probe.wait_for(BASE + "/state")
    probe.close()
    mosquitto.stop()  # persistence off: the broker forgets the retained state
    mosquitto.start()
    watcher = Listener(mosquitto.host, mosquitto.port, [BASE + "/available"])
    watcher.wait_for(BASE + "/available", "online", timeout_s=10.0)  # the publisher is back and has re-published
    watcher.close()
    late = Listener(mosquitto.host, mosquitto.port, [BASE + "/state"])
    topic, payload, retained = late.wait_for(BASE + "/state", timeout_s=2.0)
    late.close()
    assert retained is True, "a subscriber arriving later gets the state from the broker's retained copy"
    assert from_dict(json.loads(payload)).label == "sad"


def test_publish_while_broker_down_never_blocks_and_counts(tmp_path):
    config = MqttConfig(enabled=True, host="127.0.0.1", port=free_port(), qos=1)
    pub = MqttPublisher(config, DEVICE, max_queued=5)
    durations_s = []
    for index in range(8):
        began_s = time.monotonic()
        pub.publish(started(t=float(index)))
        durations_s.append(time.monotonic() - began_s)
    assert max(durations_s) < NON_BLOCKING_S
    assert pub.dropped == 3
    began_s = time.monotonic()
    pub.close(timeout_s=1.0)
    assert time.monotonic() - began_s < 1.5
    assert pub.dropped == 8, "the five still queued at exit never reached a broker: they count as dropped"


def test_qos0_while_broker_down_counts_every_event_never_sent():
    config = MqttConfig(enabled=True, host="127.0.0.1", port=free_port(), qos=0)
    pub = MqttPublisher(config, DEVICE)
    for index in range(4):
        pub.publish(started(t=float(index)))
    pub.close(timeout_s=1.0)
    assert pub.dropped == 4


def test_qos0_events_before_the_broker_is_up_arrive_in_order(tmp_path):
    broker = Mosquitto(tmp_path)
    pub = publisher_for(broker, qos=0)
    for index in range(3):
        pub.publish(started(t=float(index)))
    broker.start()
    try:
        sub = Listener(broker.host, broker.port, [BASE + "/#"])
        sub.wait_for(BASE + "/available", "online", timeout_s=5.0)
        times = [json.loads(payload)["stream_time_s"] for topic, payload, _ in sub.drain(0.5)
                 if topic == BASE + "/events"]
        sub.close()
        pub.close()
    finally:
        broker.stop()
    assert times == [0.0, 1.0, 2.0]
    assert pub.dropped == 0


@pytest.fixture
def secured_broker(tmp_path):
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "serd", "s3cret word"], check=True)
    os.chmod(passwords, 0o600)
    broker = Mosquitto(tmp_path, ["allow_anonymous false", "password_file %s" % passwords])
    broker.start()
    yield broker
    broker.stop()


def test_username_and_password_file(secured_broker, tmp_path):
    secret = tmp_path / "mqtt-password"
    secret.write_text("s3cret word\n")
    sub = Listener(secured_broker.host, secured_broker.port, [BASE + "/#"], "serd", "s3cret word")
    wrong = tmp_path / "wrong-password"
    wrong.write_text("nope\n")
    intruder = publisher_for(secured_broker, username="serd", password_file=str(wrong))
    pub = publisher_for(secured_broker, username="serd", password_file=str(secret))
    sub.wait_for(BASE + "/available", "online")
    pub.publish(started())
    assert json.loads(sub.wait_for(BASE + "/events")[1])["type"] == "speech-started"
    intruder.close(timeout_s=0.5)
    pub.close()
    seen = [payload for topic, payload, _ in sub.drain(0.3) if topic == BASE + "/available"]
    sub.close()
    assert seen == ["offline"], "only the authenticated publisher may speak"


def test_unreadable_password_file_is_a_config_error(tmp_path):
    config = MqttConfig(enabled=True, username="serd", password_file=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="password_file"):
        MqttPublisher(config, DEVICE)


@pytest.mark.parametrize("device", ["", "a+b", "a#"])
def test_device_that_breaks_topics_is_a_config_error(device):
    with pytest.raises(ConfigError, match="device_id"):
        MqttPublisher(MqttConfig(enabled=True), device)


def make_certificates(directory):
    """A CA and a server certificate for 127.0.0.1, made with openssl."""
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
        "-subj", "/CN=serd test CA", "-keyout", "ca.key", "-out", "ca.crt")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", "san.ext", "-out", "server.crt")


def test_tls_with_ca_file(tmp_path):
    make_certificates(tmp_path)
    broker = Mosquitto(tmp_path, ["cafile %s/ca.crt" % tmp_path, "certfile %s/server.crt" % tmp_path,
                                  "keyfile %s/server.key" % tmp_path])
    broker.start()
    try:
        sub = Listener(broker.host, broker.port, [BASE + "/#"], ca_file=str(tmp_path / "ca.crt"))
        pub = publisher_for(broker, tls=True, ca_file=str(tmp_path / "ca.crt"))
        sub.wait_for(BASE + "/available", "online")
        pub.publish(started())
        assert json.loads(sub.wait_for(BASE + "/events")[1])["type"] == "speech-started"
        pub.close()
        sub.close()
    finally:
        broker.stop()


def test_tls_with_missing_ca_file_is_a_config_error(tmp_path):
    config = MqttConfig(enabled=True, tls=True, ca_file=str(tmp_path / "none.crt"))
    with pytest.raises(ConfigError, match="tls"):
        MqttPublisher(config, DEVICE)


def test_several_sources_have_a_connection_each_carrying_only_their_own_events(mosquitto):  # noqa: F811
    config = load_config(overrides={"zmq": {"enabled": "no"}, "source.cabin": {}, "source.rear": {},
                                    "mqtt": {"enabled": "yes", "host": mosquitto.host, "port": str(mosquitto.port)}})
    listener = Listener(mosquitto.host, mosquitto.port, ["serd/#"])
    fanout = Fanout(make_publishers(config))
    try:
        assert [p.device for p in fanout.publishers] == ["cabin", "rear"]
        listener.wait_for_all([("serd/%s/available" % device, "online") for device in ("cabin", "rear")])
        fanout.publish(dataclasses.replace(started(), device="rear"))
        fanout.publish(dataclasses.replace(changed(), device="cabin"))
        messages = listener.drain(0.5)
        fanout.close()
        offline = listener.drain(0.5)
    finally:
        listener.close()
    events = [(topic, json.loads(body)["device"]) for topic, body, _ in messages if topic.endswith("/events")]
    assert sorted(events) == [("serd/cabin/events", "cabin"), ("serd/rear/events", "rear")]
    states = [(topic, json.loads(body)["device"]) for topic, body, _ in messages if topic.endswith("/state")]
    assert states == [("serd/cabin/state", "cabin")], "no emotion of cabin reaches rear"
    assert {(topic, body) for topic, body, _ in offline} >= {("serd/cabin/available", "offline"), ("serd/rear/available", "offline")}
    assert fanout.dropped_counts("rear") == {"mqtt": 0} and fanout.reconnect_counts() == {"mqtt": 0}
