"""Home Assistant MQTT discovery against a real mosquitto: every entity config, its templates on real events, re-announce, forget."""

import json

import jinja2
import pytest

from serd.config import MqttConfig
from serd.events import EmotionChanged, EmotionState, SpeechStarted
from serd.publish.discovery import DeviceIdentity, node_id
from serd.publish.mqtt_pub import MqttPublisher
from tests.support_cli import serd
from tests.support_mqtt import Listener, mosquitto  # noqa: F401

DEVICE = "kitchen"
BASE = "serd/%s" % DEVICE
PREFIX = "homeassistant"
LABELS = ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised")
IDENTITY = DeviceIdentity(LABELS, "serd-emotion", "2.1.0")
COMPONENTS = {"emotion": "sensor", "confidence": "sensor", "arousal": "sensor", "valence": "sensor",
              "speech": "binary_sensor", "emotion_changed": "event"}
REQUIRED = ("name", "unique_id", "state_topic", "availability_topic", "device", "value_template")


def config_topic(object_id):
    return "%s/%s/%s/%s/config" % (PREFIX, COMPONENTS[object_id], node_id(DEVICE), object_id)


@pytest.fixture
def publishers():
    opened = []
    yield opened
    for publisher in opened:
        publisher.close(timeout_s=0.5)


def open_publisher(broker, publishers, **overrides):
    config = MqttConfig(enabled=True, host=broker.host, port=broker.port, **overrides)
    publishers.append(MqttPublisher(config, DEVICE, identity=IDENTITY))
    return publishers[-1]


def configs(listener):
    """Every entity config the listener has seen, by object id."""
    seen = listener.wait_for_all([(config_topic(object_id), None) for object_id in COMPONENTS])
    return {object_id: json.loads(seen[config_topic(object_id), None][1]) for object_id in COMPONENTS}


def render(template, payload):
    """What Home Assistant's value template yields for an MQTT payload (value_json is the parsed JSON)."""
    return jinja2.Environment().from_string(template).render(value_json=json.loads(payload), value=payload)


def emotion(label, confidence, probabilities, kind=EmotionChanged, **extra):
    from serd import affect

    point = affect.coordinates(probabilities)
    valence, arousal = point if point else (None, None)
    return kind(device=DEVICE, stream_time_s=1.0, wall_time_s=1.7e9, segment=1, label=label, confidence=confidence,
                probabilities=probabilities, arousal=arousal, valence=valence, **extra)


def test_every_entity_config_is_retained_with_the_keys_home_assistant_requires(mosquitto, publishers):
    listener = Listener(mosquitto.host, mosquitto.port, [PREFIX + "/#"])
    try:
        open_publisher(mosquitto, publishers)
        found = configs(listener)
    finally:
        listener.close()
    assert len({entity["unique_id"] for entity in found.values()}) == len(COMPONENTS)
    for object_id, entity in found.items():
        missing = [key for key in REQUIRED if key not in entity]
        assert not missing, (object_id, missing)
        assert entity["availability_topic"] == BASE + "/available"
        assert set(entity["device"]) >= {"identifiers", "name", "model", "sw_version"}
        assert entity["device"]["model"] == "serd-emotion 2.1.0"
        assert entity["state_topic"] == (BASE + "/events" if object_id == "emotion_changed" else BASE + "/state")
    assert found["emotion"]["device_class"] == "enum"
    assert found["emotion"]["options"] == list(LABELS) + ["silence", "uncertain"]
    assert found["emotion_changed"]["event_types"] == list(LABELS)
    assert found["speech"]["device_class"] == "sound"


def test_each_value_template_yields_the_right_value_from_real_events(mosquitto, publishers):
    listener = Listener(mosquitto.host, mosquitto.port, [PREFIX + "/#", BASE + "/#"])
    try:
        publisher = open_publisher(mosquitto, publishers)
        found = configs(listener)
        angry = emotion("angry", 0.8, {"angry": 0.8, "sad": 0.2}, previous="neutral")
        publisher.publish(angry)
        state_payload = listener.wait_for(BASE + "/state")[1]
        event_payload = listener.wait_for(BASE + "/events")[1]
        publisher.publish(SpeechStarted(device=DEVICE, stream_time_s=0.5, wall_time_s=1.7e9, segment=1))
        started_payload = listener.wait_for(BASE + "/events")[1]
        publisher.publish(emotion("uncertain", 0.3, {"angry": 0.3, "sad": 0.3, "happy": 0.4}, kind=EmotionState))
        uncertain_payload = listener.wait_for(BASE + "/state")[1]
        publisher.publish(emotion("silence", 1.0, {}, previous="angry"))
        silence_state = listener.wait_for(BASE + "/state")[1]
        silence_event = listener.wait_for(BASE + "/events")[1]
    finally:
        listener.close()
    assert render(found["emotion"]["value_template"], state_payload) == "angry"
    assert float(render(found["confidence"]["value_template"], state_payload)) == 0.8
    assert float(render(found["arousal"]["value_template"], state_payload)) == angry.arousal
    assert float(render(found["valence"]["value_template"], state_payload)) == angry.valence
    assert render(found["speech"]["value_template"], state_payload) == found["speech"]["payload_on"]
    assert json.loads(render(found["emotion_changed"]["value_template"], event_payload)) == {
        "event_type": "angry", "previous": "neutral", "confidence": 0.8}
    assert render(found["emotion_changed"]["value_template"], started_payload) == "", "other events render empty: ignored"
    assert render(found["emotion"]["value_template"], uncertain_payload) == "uncertain"
    assert render(found["speech"]["value_template"], uncertain_payload) == "ON"
    assert render(found["emotion"]["value_template"], silence_state) == "silence"
    assert render(found["speech"]["value_template"], silence_state) == found["speech"]["payload_off"]
    assert render(found["arousal"]["value_template"], silence_state) == "None", "Home Assistant's word for unknown"
    assert render(found["emotion_changed"]["value_template"], silence_event) == "", "silence is not an event type"


def test_configs_are_sent_again_when_home_assistant_comes_online(mosquitto, publishers):
    announced = Listener(mosquitto.host, mosquitto.port, [PREFIX + "/+/+/+/config"])
    try:
        open_publisher(mosquitto, publishers)
        configs(announced)  # the broker holds every config once the first announce has gone through
    finally:
        announced.close()
    listener = Listener(mosquitto.host, mosquitto.port, [PREFIX + "/+/+/+/config"])
    try:
        held = listener.wait_for_all([(config_topic(object_id), None) for object_id in COMPONENTS])
        assert all(retained for *_rest, retained in held.values())
        listener.drain()
        listener.client.publish(PREFIX + "/status", "online", qos=1).wait_for_publish(5)
        fresh = list(listener.wait_for_all([(config_topic(object_id), None) for object_id in COMPONENTS]).values())
    finally:
        listener.close()
    assert [retained for *_rest, retained in fresh] == [False] * len(COMPONENTS), "live re-announce, not the retained copy"


def test_discovery_off_announces_nothing(mosquitto, publishers):
    listener = Listener(mosquitto.host, mosquitto.port, [PREFIX + "/#", BASE + "/available"])
    try:
        open_publisher(mosquitto, publishers, discovery=False)
        listener.wait_for(BASE + "/available", "online")
        assert [m for m in listener.drain(0.5) if m[0].startswith(PREFIX)] == []
    finally:
        listener.close()


def test_mqtt_forget_removes_every_entity_config(mosquitto, publishers):
    publisher = open_publisher(mosquitto, publishers)
    probe = Listener(mosquitto.host, mosquitto.port, [config_topic("emotion")])
    probe.wait_for(config_topic("emotion"))
    probe.close()
    publisher.close(timeout_s=1.0)
    publishers.clear()
    result = serd("run", "--mqtt", "%s:%d" % (mosquitto.host, mosquitto.port), "--device-id", DEVICE, "--mqtt-forget")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().startswith("removed 6 Home Assistant entities of device kitchen")
    after = Listener(mosquitto.host, mosquitto.port, [PREFIX + "/#"])
    try:
        assert [m for m in after.drain(0.5) if m[1]] == [], "no retained config is left"
    finally:
        after.close()


def test_mqtt_forget_without_a_broker_is_one_line():
    from tests.support_mqtt import free_port

    result = serd("run", "--mqtt", "127.0.0.1:%d" % free_port(), "--device-id", DEVICE, "--mqtt-forget")
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "cannot connect to MQTT broker 127.0.0.1" in lines[0]


def test_mqtt_forget_removes_the_entities_of_every_source(tmp_path, mosquitto, publishers):  # noqa: F811
    for device in ("cabin", "rear"):
        publishers.append(MqttPublisher(MqttConfig(enabled=True, host=mosquitto.host, port=mosquitto.port), device,
                                        identity=IDENTITY))
    for device in ("cabin", "rear"):
        probe = Listener(mosquitto.host, mosquitto.port, ["%s/sensor/%s/emotion/config" % (PREFIX, node_id(device))])
        probe.wait_for("%s/sensor/%s/emotion/config" % (PREFIX, node_id(device)))
        probe.close()
    for publisher in publishers:
        publisher.close(timeout_s=1.0)
    publishers.clear()
    config = tmp_path / "serd.conf"
    config.write_text("[source.cabin]\n[source.rear]\n")
    result = serd("run", "--config", config, "--mqtt", "%s:%d" % (mosquitto.host, mosquitto.port), "--mqtt-forget", text=True)
    assert result.returncode == 0, result.stderr
    assert [line.split(" from ")[0] for line in result.stdout.splitlines()] == [
        "removed 6 Home Assistant entities of device cabin", "removed 6 Home Assistant entities of device rear"]
    after = Listener(mosquitto.host, mosquitto.port, [PREFIX + "/#"])
    try:
        assert [m for m in after.drain(0.5) if m[1]] == [], "no retained config of either device is left"
    finally:
        after.close()


def test_node_ids_turn_what_a_discovery_topic_cannot_hold_into_underscores():
    assert node_id("kitchen.left mic/2+#") == "serd_kitchen_left_mic_2__"
    assert node_id("Car-1_rear") == "serd_Car-1_rear", "letters, digits, - and _ are kept"


def test_a_discovery_prefix_with_a_trailing_slash_gives_the_same_topics():
    from serd.publish.discovery import config_topics, status_topic

    assert config_topics(PREFIX + "/", DEVICE) == config_topics(PREFIX, DEVICE) == [config_topic(o) for o in COMPONENTS]
    assert status_topic(PREFIX + "/") == status_topic(PREFIX) == "homeassistant/status"


def test_numeric_sensors_are_measurements_shown_with_two_decimals():
    from serd.publish.discovery import discovery_messages

    messages = discovery_messages(PREFIX, DEVICE, IDENTITY, BASE + "/state", BASE + "/events", BASE + "/available")
    found = {topic.split("/")[-2]: json.loads(payload) for topic, payload in messages}
    assert [topic for topic, _ in messages] == [config_topic(o) for o in COMPONENTS]
    for object_id in ("confidence", "arousal", "valence"):
        assert found[object_id]["state_class"] == "measurement" and found[object_id]["suggested_display_precision"] == 2
    assert found["emotion"]["unique_id"] == "serd_kitchen_emotion" and found["emotion"]["origin"]["name"] == "serd"
