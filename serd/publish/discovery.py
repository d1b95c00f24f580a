"""Home Assistant MQTT discovery: the retained entity configs that make a serd device appear in Home Assistant.

Pure: builds (topic, payload) pairs from serd's own topics; serd.publish.mqtt_pub sends them.
Entities, all of one device whose availability is serd's retained `available` topic (its last will):
an enum sensor of the current emotion (the model's labels, silence and uncertain), numeric sensors of
its confidence, arousal and valence, a binary sensor that is on while someone speaks, and an event
entity fired by every emotion-changed event whose label is one of the model's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from serd import __version__
from serd.events import EmotionChanged, SILENCE_LABEL, UNCERTAIN_LABEL

ORIGIN = {"name": "serd", "sw_version": __version__}
STATUS_SUFFIX = "/status"  # Home Assistant announces "online" on DISCOVERY_PREFIX/status when it (re)starts
HA_ONLINE = "online"
NODE_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class DeviceIdentity:
    """What Home Assistant shows of the device: the model's labels, name and version."""

    labels: tuple[str, ...]
    model_name: str
    model_version: str


def node_id(device: str) -> str:
    """The discovery node id of a device: serd_ and the device id with characters topics' ids cannot hold made _."""
    return "serd_" + NODE_ID_UNSAFE.sub("_", device)


def status_topic(prefix: str) -> str:
    """Where Home Assistant says it is online."""
    return prefix.rstrip("/") + STATUS_SUFFIX


def config_topics(prefix: str, device: str) -> list[str]:
    """The config topic of every entity serd announces for device (what --mqtt-forget clears)."""
    return ["%s/%s/%s/%s/config" % (prefix.rstrip("/"), component, node_id(device), object_id)
            for component, object_id in ENTITIES]


ENTITIES = (  # (component, object id)
    ("sensor", "emotion"), ("sensor", "confidence"), ("sensor", "arousal"), ("sensor", "valence"),
    ("binary_sensor", "speech"), ("event", "emotion_changed"),
)


def _event_template(labels: tuple[str, ...]) -> str:
    """An emotion-changed event with a model label as {"event_type": label, ...}; anything else renders empty (ignored)."""
    return ("{%% if value_json.type == '%s' and value_json.label in %s %%}"
            '{"event_type": "{{ value_json.label }}", "previous": "{{ value_json.previous }}", '
            '"confidence": {{ value_json.confidence }}}'
            "{%% endif %%}" % (EmotionChanged.TYPE, json.dumps(list(labels))))


def discovery_messages(prefix: str, device: str, identity: DeviceIdentity, state_topic: str, events_topic: str,
                       available_topic: str) -> list[tuple[str, str]]:
    """(config topic, JSON payload) of every entity, in ENTITIES order."""
    node = node_id(device)
    common = {
        "availability_topic": available_topic, "payload_available": "online", "payload_not_available": "offline",
        "device": {"identifiers": [node], "name": "serd %s" % device, "manufacturer": "serd",
                   "model": "%s %s" % (identity.model_name, identity.model_version), "sw_version": __version__},
        "origin": ORIGIN,
    }
    specific = {
        "emotion": {"name": "Emotion", "state_topic": state_topic, "value_template": "{{ value_json.label }}",
                    "device_class": "enum", "options": list(identity.labels) + [SILENCE_LABEL, UNCERTAIN_LABEL],
                    "icon": "mdi:emoticon-outline"},
        "confidence": {"name": "Emotion confidence", "state_topic": state_topic, "state_class": "measurement",
                       "value_template": "{{ value_json.confidence }}", "suggested_display_precision": 2},
        "arousal": {"name": "Arousal", "state_topic": state_topic, "state_class": "measurement",
                    "value_template": "{{ value_json.arousal }}", "suggested_display_precision": 2},
        "valence": {"name": "Valence", "state_topic": state_topic, "state_class": "measurement",
                    "value_template": "{{ value_json.valence }}", "suggested_display_precision": 2},
        "speech": {"name": "Speech", "state_topic": state_topic, "device_class": "sound",
                   "value_template": "{{ 'OFF' if value_json.label == '%s' else 'ON' }}" % SILENCE_LABEL,
                   "payload_on": "ON", "payload_off": "OFF"},
        "emotion_changed": {"name": "Emotion change", "state_topic": events_topic, "event_types": list(identity.labels),
                            "value_template": _event_template(identity.labels)},
    }
    messages = []
    for topic, (_component, object_id) in zip(config_topics(prefix, device), ENTITIES):
        payload = dict(specific[object_id], unique_id="%s_%s" % (node, object_id), **common)
        messages.append((topic, json.dumps(payload, sort_keys=True)))
    return messages
