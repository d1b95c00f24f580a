"""Events: wire form, round trip, schema checks; the documented shape matches the code."""

import json
from pathlib import Path

import pytest

from serd import events
from serd.events import EVENT_TYPES, EmotionChanged, EventFormatError, SpeechEnded, Status, from_dict

DOCS = Path(__file__).resolve().parent.parent / "docs" / "events.md"


def test_emotion_changed_wire_form():
    event = EmotionChanged(device="robot", stream_time_s=2.5, wall_time_s=1.7e9, segment=3, label="angry",
                           previous="silence", confidence=0.8, probabilities={"angry": 0.8, "sad": 0.2},
                           arousal=0.499, valence=-0.712)
    data = json.loads(json.dumps(event.to_dict()))
    assert data == {"schema": 1, "type": "emotion-changed", "device": "robot", "stream_time_s": 2.5,
                    "wall_time_s": 1.7e9, "segment": 3, "label": "angry", "previous": "silence",
                    "confidence": 0.8, "probabilities": {"angry": 0.8, "sad": 0.2}, "arousal": 0.499, "valence": -0.712}
    assert from_dict(data) == event


@pytest.mark.parametrize("cls", list(EVENT_TYPES.values()))
def test_every_type_round_trips(cls):
    event = cls(device="d", stream_time_s=1.0, wall_time_s=2.0)
    assert from_dict(event.to_dict()) == event
    assert event.to_dict()["type"] == cls.TYPE


def test_status_carries_counters():
    status = Status(device="d", stream_time_s=0.0, wall_time_s=0.0, overruns=2, dropped={"zmq": 5})
    assert status.to_dict()["dropped"] == {"zmq": 5}


@pytest.mark.parametrize(
    "data, reason",
    [
        ({"schema": 2, "type": "speech-ended"}, "unsupported schema"),
        ({"schema": 1, "type": "weather"}, "unknown event type"),
        ({"schema": 1, "type": "speech-ended"}, "bad speech-ended"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_wire_dicts_are_rejected(data, reason):
    with pytest.raises(EventFormatError, match=reason):
        from_dict(data)


def test_events_of_the_schema_before_arousal_and_valence_still_read():
    data = EmotionChanged(device="d", stream_time_s=1.0, wall_time_s=2.0, label="sad", confidence=0.6,
                          probabilities={"sad": 0.6, "angry": 0.4}).to_dict()
    del data["arousal"], data["valence"]
    event = from_dict(data)
    assert (event.label, event.arousal, event.valence) == ("sad", None, None)


def test_unknown_fields_are_ignored_for_forward_compatibility():
    data = SpeechEnded(device="d", stream_time_s=1.0, wall_time_s=2.0, duration_s=0.5).to_dict()
    data["future_field"] = 1
    assert from_dict(data).duration_s == 0.5


def test_docs_name_every_event_type_and_field():
    text = DOCS.read_text(encoding="utf-8")
    for cls in EVENT_TYPES.values():
        assert "`%s`" % cls.TYPE in text
        for name in cls(device="d", stream_time_s=0.0, wall_time_s=0.0).to_dict():
            assert "`%s`" % name in text, "%s: field %s undocumented" % (cls.TYPE, name)
    assert "schema" in text and str(events.SCHEMA_VERSION) in text
